"""A test kit for the engine in one process: a real redis-server, the real Engine with the real entries
(manual: only operator commands) and reconciler, and a PaperExchange on the same Redis (or another database
of it), on a clock the test moves.

Intents stay in the outbox (no RQ hand-off) and nothing executes them unless the test does: `fill_entry`
plays the worker and the venue for an entry, as tests/test_reconciler.py's World does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import redis

from config.settings import Settings
from exchanges import sync as exchange_loop
from exchanges.base import Order, OrderRequest, OrderSide, OrderState
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from statemachines import stepper
from statemachines.intents import IntentAction, client_order_id
from statemachines.position import Position
from statemachines.store import PositionStore
from tests.clock import Clock
from workers.engine import Engine
from workers.entries import StrategyEntries
from workers.reconciler import Reconciler

PREFIX = "ek"
BTC = "BTC-USDT-SWAP"


def settings(**sections: Any) -> Settings:
    """Manual entries, one symbol, no cooldowns in the way; `sections` override (e.g. risk={...})."""
    base: dict[str, Any] = {
        "redis": {"prefix": PREFIX},
        "engine": {"entries": "manual"},
        "risk": {"min_order_interval_s": 0},
        "symbols": {BTC: {}},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@dataclass
class Kit:
    client: redis.Redis
    clock: Clock
    settings: Settings
    paper: PaperExchange
    store: PositionStore

    def engine(self, *, wall: Any = None, background_io: bool = False, exchange: Any = None,
               entries: StrategyEntries | None = None) -> Engine:  # fmt: skip
        """A freshly started engine process: nothing in memory, everything from Redis and the venue.
        `background_io`: its exchange reads on their own thread, as in production; `exchange`: the venue
        as the engine's reads see it (the paper venue itself by default)."""
        venue = exchange or self.paper
        entries = entries or StrategyEntries(self.settings, self.client)
        engine = Engine(self.settings, self.client, symbols=[BTC], entries=entries, clock="wall",
                        wall=wall or self.clock, hand_off_to_rq=False, background_io=background_io,
                        reconciler=Reconciler(venue))  # fmt: skip
        engine.io.add("account", 5.0, lambda _: entries.read_account(venue), entries.use_account)
        return engine

    def run(self, coro: Any) -> Any:
        return exchange_loop.run(coro)

    def quote(self, px: float) -> None:
        self.run(self.paper.on_quote(BTC, D(repr(px)), D(repr(px)), self.clock()))

    def tick(self, px: float, ts: float | None = None) -> None:
        """A feed tick (and the venue's quote at the same price)."""
        self.quote(px)
        fields = {"px": repr(px), "ts": repr(self.clock() if ts is None else ts)}
        self.client.xadd(self.store.keys.ticks(BTC), fields)

    def order(self, cl_ord_id: str, side: str, size: str, *, reduce_only: bool = False) -> Order:
        """An order straight at the venue, as a worker would have sent it."""
        req = OrderRequest(BTC, cl_ord_id, OrderSide(side), D(size), reduce_only=reduce_only)
        return self.run(self.paper.place_order(req))

    def positions(self) -> list[Position]:
        return self.store.load_symbol(BTC)

    def fill_entry(self, engine: Engine, pos: Position) -> Position:
        """What the worker and the venue do with the entry intent, then the engine settles the fill."""
        side = OrderSide.BUY if pos.side.value == "long" else OrderSide.SELL
        cid = client_order_id(pos.id, IntentAction.OPEN, 1)
        order = self.run(self.paper.place_order(OrderRequest(BTC, cid, side, pos.entry_size)))
        assert order.state is OrderState.FILLED
        live = engine.book[BTC][pos.id]
        stepper.entry_filled(engine.pm, live, price=order.avg_px or D(0), size=order.filled, atr=None,
                             cfg=engine.cfg[BTC], now=engine.now(), fee=order.fee)  # fmt: skip
        return live


def make_kit(client: redis.Redis, venue_client: redis.Redis | None = None, **sections: Any) -> Kit:
    """`venue_client`: the venue on another Redis database (emptying the bot's leaves it whole)."""
    clock = Clock()
    paper = PaperExchange(venue_client or client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"),
                          maker_fee=D("0.0002"), prefix=PREFIX, clock=clock, default_lever=5)  # fmt: skip
    kit = Kit(client, clock, settings(**sections), paper, PositionStore(client, PREFIX))
    kit.quote(50_000.0)
    return kit

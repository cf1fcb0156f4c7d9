"""Entries: the strategy's signals and the operator's `scalper open`, through the risk gates, into new
positions. A new position and its entry intent are written by one Lua script (the outbox), so the entry
order is sent exactly when the position exists. The balance and instruments the gates use are read by the
engine's exchange I/O thread (`read_account`), never on the tick path."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import redis

from config.settings import Settings
from exchanges import sync as exchange_loop
from exchanges.base import Exchange, Instrument
from indicators.symbol import SymbolIndicators
from statemachines import risk
from statemachines.intents import open_intent
from statemachines.position import Position, Side, new_position_id
from statemachines.strategy import ExitHints, Strategy
from workers.protection import earlier_stops
from workers.riskstate import RiskSnapshot, RiskState
from workers.strategies import GuardedStrategy, load_strategy

if TYPE_CHECKING:
    from workers.engine import Engine

log = logging.getLogger("scalper.entries")


class ManualOnly:
    """No automatic entries: positions are opened only by `scalper open` (SCALPER_ENGINE__ENTRIES=manual)."""

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> None:
        return None


class RiskMemory(Protocol):
    """The account's risk memory the gates read and every close updates: Redis live
    (workers/riskstate.py), memory in a backtest (backtest/memory.py)."""

    def snapshot(self, symbol: str, now: float) -> RiskSnapshot: ...
    def record_close(self, symbol: str, realized_pnl: Decimal, ts: float, *, position_id: str) -> bool: ...
    def record_order(self, ts: float) -> None: ...


class StrategyEntries:
    def __init__(self, settings: Settings, client: redis.Redis | None = None,
                 strategy: Strategy | None = None, balance_every_s: float = 5.0,
                 riskstate: RiskMemory | None = None) -> None:  # fmt: skip
        self.settings = settings
        if strategy is None:  # the setting's strategy (engine.strategy), as live, paper and backtest take it
            manual = settings.engine.entries == "manual"
            strategy = ManualOnly() if manual else load_strategy(settings)  # type: ignore[assignment]
        self.strategy = strategy
        # Every call into the strategy goes through here: one that raises quarantines it on that symbol.
        self.guarded = GuardedStrategy(strategy)  # type: ignore[arg-type]
        if riskstate is None:
            if client is None:
                raise ValueError("the risk memory needs Redis, or give one (riskstate=)")
            riskstate = RiskState.from_settings(client, settings)
        self.riskstate: RiskMemory = riskstate
        self.new_id: Callable[[float], str] = new_position_id  # a backtest's are sequential (reproducible)
        self.instruments: dict[str, Instrument] = {}
        self.available = Decimal(0)  # delivered by the exchange I/O thread (read_account)
        self.balance_every_s = balance_every_s
        self.refusals: Counter[str] = Counter()
        self.entered = 0

    def read_account(self, exchange: Exchange) -> tuple[dict[str, Instrument], Decimal]:
        """The exchange I/O thread's job (workers/exchange_io.py): instruments (read once, then kept) and the
        available balance. Never on the tick path: `enter` uses what the last read delivered."""
        instruments = self.instruments or {
            i.inst_id: i for i in exchange_loop.run(exchange.instruments(), 10)
        }
        balances = exchange_loop.run(exchange.balance(), 10)
        return instruments, sum((b.available for b in balances if b.ccy == "USDT"), Decimal(0))

    def use_account(self, read: tuple[dict[str, Instrument], Decimal]) -> None:
        """The engine thread takes the read's result."""
        self.instruments, self.available = read

    def exit_hints(self, indicators: Callable[[str], SymbolIndicators | None],
                   on_quarantine: Callable[[str, str], None]) -> ExitHints | None:  # fmt: skip
        """The strategy's exit hints for the exit guards (None: it gives none), shown the indicators
        `indicators(symbol)` finds; a quarantine is told to `on_quarantine(symbol, why)`."""
        self.guarded.on_quarantine = on_quarantine
        return self.guarded.bind(indicators) if self.guarded.gives_hints else None

    def forget(self, symbol: str) -> None:
        self.guarded.forget(symbol)

    def on_tick(self, engine: Engine, symbol: str, ind: SymbolIndicators, now: float) -> None:
        # The strategy's guard, at its one call site (this runs on every tick of every symbol, live and in a
        # backtest): a strategy that raises, or returns something else than a signal, is quarantined.
        guarded = self.guarded
        if symbol in guarded.quarantined:
            return
        try:
            signal = guarded.on_tick(symbol, ind, now)
        except Exception as err:
            guarded.raised(symbol, err)
            return
        if signal is None:
            return
        entry = guarded.checked(symbol, signal)
        if entry is not None and not engine.symbol_quarantined(symbol):
            self.enter(engine, symbol, entry.side, entry.reason, now)

    def open(self, engine: Engine, symbol: str, side: Side, reason: str, now: float,
             position_id: str) -> Position | risk.Refusal:  # fmt: skip
        """The operator's entry: the same gates; the position takes the command's id."""
        return self.enter(engine, symbol, side, reason, now, position_id=position_id)

    def on_closed(self, engine: Engine, pos: Position, now: float) -> None:
        # Fees are negative when charged (OKX), so PnL net of fees is their sum.
        self.riskstate.record_close(pos.symbol, pos.realized_pnl + pos.fees, now, position_id=pos.id)

    def enter(self, engine: Engine, symbol: str, side: Side, reason: str, now: float,
              position_id: str = "") -> Position | risk.Refusal:  # fmt: skip
        """A new position in opening with its entry order's intent, or the refusal that stopped it."""
        inst = self.instruments.get(symbol)
        ind = engine.ind[symbol]
        if inst is None or not ind.price:
            self.refusals["no_instrument_or_price"] += 1
            why = "no instrument data" if inst is None else "no price yet"
            return risk.Refusal("no_instrument_or_price", f"{symbol}: {why}")
        cfg = engine.cfg[symbol]
        price = Decimal(repr(ind.price))
        size = risk.position_size(self.available, price, inst, cfg.risk)
        live = engine.live_positions()
        snap = self.riskstate.snapshot(symbol, now)
        ctx = risk.EntryContext(
            now=now, symbol=symbol, side=side, price=price, price_ts=ind.price_ts, size=size, instrument=inst,
            balance_available=self.available, open_positions=len(live),
            open_positions_symbol=sum(1 for p in live if p.symbol == symbol),
            open_notional=sum((p.size * p.entry_price * self.instruments[p.symbol].ct_val for p in live
                               if p.symbol in self.instruments), Decimal(0)),
            daily_pnl=snap.daily_pnl, loss_streak=snap.loss_streak, cooldown_until=snap.cooldown_until,
            last_order_ts=snap.last_order_ts, exchange_state_known=engine.exchange_settled,
            panic=engine.panic,
            stop_distance_pct=risk.stop_distance_pct(side, ind.price, ind.atr, cfg.exits),
            liq_price=risk.estimate_liq_price(side, price, cfg.risk.leverage),
            fee_rate=self.settings.exchange.taker_fee,
            earlier_stops=earlier_stops(snap.stops, (p.id for p in live)),
        )  # fmt: skip
        refusal = risk.check_entry(ctx, cfg.risk)
        if refusal is not None:
            self.refusals[refusal.code] += 1
            log.info("entry %s %s refused: %s", symbol, side.value, refusal)
            return refusal
        pos = Position(id=position_id or self.new_id(now), symbol=symbol, side=side, state_since=now,
                       entry_size=size, wall_since=engine.wall(), leverage=cfg.risk.leverage,
                       entry_attempt=1)  # fmt: skip
        engine.store.create(
            pos, reason=reason, price=ind.price, ts=now, intent=open_intent(pos, size).to_fields()
        )
        engine.adopt(pos)
        self.riskstate.record_order(now)
        self.entered += 1
        log.info("entry %s %s %s: %s", symbol, side.value, size, reason)
        return pos

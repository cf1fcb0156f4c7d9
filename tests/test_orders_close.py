"""The close job (workers/orders.py): the exchange position is asked for as the job starts, while the stored
position loads, and the close is sized from that answer; a skipped job leaves no read pending, and an
exchange that cannot be read fails the job instead of meaning "flat". Real redis-server, paper exchange."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal as D
from typing import Any

import pytest

from exchanges import sync as exchange_loop
from exchanges.base import Exchange, ExchangePosition, ExchangeUnavailable, Order, OrderRequest
from exchanges.paper import DEFAULT_INSTRUMENTS
from statemachines.intents import IntentAction, OrderIntent
from statemachines.position import Position
from statemachines.snapshot import Action
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.test_reconciler import World, make_world
from workers.events import EventBus
from workers.orders import WorkerContext, execute

pytestmark = pytest.mark.redis


class Recording:
    """The paper exchange, logging when a positions read is asked for, answered, and an order sent."""

    def __init__(self, inner: Exchange, log: list[str], fail_reads: bool = False) -> None:
        self.inner, self.log, self.fail_reads = inner, log, fail_reads

    async def positions(self) -> list[ExchangePosition]:
        self.log.append("positions asked")
        await asyncio.sleep(0)  # as PaperClient: the request is out, the answer is read on the next turn
        if self.fail_reads:
            raise ExchangeUnavailable("paper venue did not answer positions")
        self.log.append("positions answered")
        return await self.inner.positions()

    async def place_order(self, req: OrderRequest) -> Order:
        self.log.append(f"place {req.side.value} {req.size} reduce_only={req.reduce_only}")
        return await self.inner.place_order(req)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LoggingStore(PositionStore):
    log: list[str]

    def load(self, position_id: str, symbol: str | None = None) -> Position:
        self.log.append("position loaded")
        return super().load(position_id, symbol)


def _closing(w: World) -> tuple[Position, OrderIntent]:
    pos = w.opened("long", "2")
    w.decide(pos, Action.CLOSE, "stop_loss")
    intent = next(i for i in w.outbox() if i.action is IntentAction.CLOSE)
    return pos, intent


def _ctx(w: World, log: list[str], **kw: Any) -> WorkerContext:
    store = LoggingStore(w.client, w.settings.redis.prefix)
    store.log = log
    ex: Any = Recording(w.paper, log, **kw)
    insts = {i.inst_id: i for i in DEFAULT_INSTRUMENTS}
    return WorkerContext(
        w.settings, w.client, store, ex, EventBus(w.client, store.keys), exchange_loop.loop(), insts
    )


def test_the_close_reads_the_exchange_while_the_position_loads_and_is_sized_from_it(
    real_redis: RealRedis,
) -> None:
    w = make_world(real_redis.client)
    _, intent = _closing(w)
    log: list[str] = []
    done = w.run(execute(_ctx(w, log), intent))
    assert log == [
        "positions asked",
        "position loaded",
        "positions answered",
        "place sell 2 reduce_only=True",
    ]
    assert done.startswith("placed: filled")
    assert w.exchange_size() == 0


def test_a_superseded_close_skips_and_leaves_no_read_pending(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    _, intent = _closing(w)
    stale = replace(intent, attempt=2)  # a later attempt is current: this one is superseded
    log: list[str] = []
    done = w.run(execute(_ctx(w, log), stale))
    assert done.startswith("skip")
    assert not [m for m in log if m.startswith("place")]
    assert w.run(_pending_tasks()) == 0
    assert w.exchange_size() == D(2)


def test_an_unreadable_exchange_fails_the_close_and_is_never_flat(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos, intent = _closing(w)
    log: list[str] = []
    events_before = w.client.xlen(w.store.keys.events(pos.symbol))
    with pytest.raises(ExchangeUnavailable):
        w.run(execute(_ctx(w, log, fail_reads=True), intent))
    assert not [m for m in log if m.startswith("place")]
    assert w.client.xlen(w.store.keys.events(pos.symbol)) == events_before  # no "flat" published
    assert w.exchange_size() == D(2)


async def _pending_tasks() -> int:
    await asyncio.sleep(0)
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()])

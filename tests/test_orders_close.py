"""The close job (workers/orders.py): a full close is the venue's close-position, sized by the venue from
what it holds as the order executes, so nothing is read before the send; a superseded close sends nothing;
a close that runs again after it filled finds nothing to close and places no second order; an unknown
outcome is queried by client id, and when the query cannot tell either the job fails (RQ retries it) and
nothing is taken for "flat". Real redis-server, paper exchange."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from typing import Any

import pytest
from rq import Queue

from exchanges import sync as exchange_loop
from exchanges.base import (
    Exchange,
    ExchangePosition,
    ExchangeUnavailable,
    Order,
    OrderRequest,
    OrderSide,
    StopOrder,
)
from exchanges.paper import DEFAULT_INSTRUMENTS
from statemachines.intents import IntentAction, OrderIntent, client_order_id
from statemachines.position import Position
from statemachines.snapshot import Action
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.test_reconciler import BTC, ETH, World, make_world
from workers import orders
from workers.events import EventBus
from workers.orders import WorkerContext, execute
from workers.relay import JOB

pytestmark = pytest.mark.redis


class Recording:
    """The paper exchange, logging every read and order request the job makes."""

    def __init__(self, inner: Exchange, log: list[str]) -> None:
        self.inner, self.log = inner, log

    async def positions(self) -> list[ExchangePosition]:
        self.log.append("positions read")
        return await self.inner.positions()

    async def place_order(self, req: OrderRequest) -> Order:
        self.log.append(f"place {req.side.value} {req.size} reduce_only={req.reduce_only}")
        return await self.inner.place_order(req)

    async def close_position(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None = None
    ) -> Order:
        self.log.append(f"close-position {side.value} {cl_ord_id}")
        return await self.inner.close_position(inst_id, cl_ord_id, side, td_mode, pos_side)

    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        self.log.append(f"query {cl_ord_id}")
        return await self.inner.get_order(inst_id, cl_ord_id)

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


def _ctx(w: World, log: list[str]) -> WorkerContext:
    store = LoggingStore(w.client, w.settings.redis.prefix)
    store.log = log
    ex: Any = Recording(w.paper, log)
    insts = {i.inst_id: i for i in DEFAULT_INSTRUMENTS}
    return WorkerContext(
        w.settings, w.client, store, ex, EventBus(w.client, store.keys), exchange_loop.loop(), insts
    )


def _events(w: World, pos: Position) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()}
            for _, f in w.client.xrange(w.store.keys.events(pos.symbol))]  # fmt: skip


def test_the_close_is_sized_by_the_venue_with_no_read_before_the_send(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos, intent = _closing(w)
    w.place("manual1", "buy", "1")  # the exchange now holds 3, the bot 2: the venue closes what it holds
    log: list[str] = []
    done = w.run(execute(_ctx(w, log), intent))
    assert log == ["position loaded", f"close-position sell {intent.cl_ord_id}"]
    assert done == "placed: filled 3/3"
    assert w.exchange_size() == 0
    order = w.order(intent.cl_ord_id)
    assert order is not None and order.reduce_only and order.side is OrderSide.SELL
    published = [e for e in _events(w, pos) if e.get("kind") == "order"]
    assert [(e["cl_ord_id"], e["state"]) for e in published] == [(intent.cl_ord_id, "filled")]


def test_a_superseded_close_sends_nothing(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    _, intent = _closing(w)
    stale = replace(intent, attempt=2)  # a later attempt is current: this one is superseded
    log: list[str] = []
    done = w.run(execute(_ctx(w, log), stale))
    assert done.startswith("skip")
    assert log == ["position loaded"]
    assert w.exchange_size() == D(2)


def test_a_close_run_again_after_it_filled_places_no_second_order(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos, intent = _closing(w)
    log: list[str] = []
    assert w.run(execute(_ctx(w, log), intent)).startswith("placed: filled")
    served = w.paper.state.recent_orders(pos.symbol)
    again = w.run(execute(_ctx(w, log), intent))  # the job ran again (a worker died before finishing)
    assert again == "flat: exchange says nothing to close"
    assert w.paper.state.recent_orders(pos.symbol) == served  # no second order for the client id
    flat = [e for e in _events(w, pos) if e.get("kind") == "position"]
    assert flat and flat[-1]["size"] == "0"


def test_an_unknown_outcome_is_queried_and_found_not_resent(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    _, intent = _closing(w)
    w.paper.inject("timeout", op="close_position")  # executed, but the answer is lost
    log: list[str] = []
    done = w.run(execute(_ctx(w, log), intent))
    assert log == ["position loaded", f"close-position sell {intent.cl_ord_id}", f"query {intent.cl_ord_id}"]
    assert done == "placed: filled 2/2"
    assert w.exchange_size() == 0


def test_an_unknown_outcome_the_query_cannot_settle_fails_the_job_and_is_never_flat(
    real_redis: RealRedis,
) -> None:
    w = make_world(real_redis.client)
    pos, intent = _closing(w)
    w.paper.inject("timeout", op="close_position", executed=False)  # lost on its way
    w.paper.inject("read_fail", op="get_order")  # and the venue cannot be asked about it
    events_before = w.client.xlen(w.store.keys.events(pos.symbol))
    with pytest.raises(ExchangeUnavailable):
        w.run(execute(_ctx(w, []), intent))
    assert w.client.xlen(w.store.keys.events(pos.symbol)) == events_before  # no "flat" published
    assert w.exchange_size() == D(2)
    # RQ's retry runs the job again: the query now answers "never seen", so the close is sent once.
    log: list[str] = []
    assert w.run(execute(_ctx(w, log), intent)) == "placed: filled 2/2"
    assert log == ["position loaded", f"close-position sell {intent.cl_ord_id}"]
    assert w.exchange_size() == 0


def test_an_unprotect_whose_stop_went_meanwhile_is_done_not_retried(real_redis: RealRedis) -> None:
    """The stop is live when the job reads the stops, and gone when it cancels it (the reconciler cancelled
    it as an orphan in between): the job's purpose holds, so it succeeds instead of queueing a retry."""
    w = make_world(real_redis.client)
    pos = w.opened("long", "2", protect=True)
    stop_id = client_order_id(pos.id, IntentAction.PROTECT, 1)
    intent = OrderIntent(IntentAction.UNPROTECT, pos.id, pos.symbol, "long", stop_id, 1)
    ctx = _ctx(w, [])
    real_stops = w.paper.stops

    async def stops_then_cancelled_by_someone_else() -> list[StopOrder]:
        seen = await real_stops()
        await w.paper.cancel_stop(pos.symbol, stop_id)  # the race, made certain
        return seen

    ctx.exchange.stops = stops_then_cancelled_by_someone_else  # type: ignore[method-assign]
    assert any(s.algo_cl_ord_id == stop_id and s.state == "live" for s in w.run(real_stops()))
    assert w.run(execute(ctx, intent)) == "protective stop already gone"
    assert not [s for s in w.run(real_stops()) if s.algo_cl_ord_id == stop_id and s.state == "live"]


def test_a_position_read_with_the_job_s_bookkeeping_is_not_loaded_again(real_redis: RealRedis) -> None:
    """OrderWorker reads the position with the job's bookkeeping (`preload`); the job then decides on that
    read: here it says the close is superseded, so nothing is loaded and nothing sent."""
    w = make_world(real_redis.client)
    pos, intent = _closing(w)
    key = w.store.keys.pos(pos.symbol, pos.id)
    job = Queue("orders", connection=w.client).enqueue(JOB, intent.to_fields(), job_id="close-x")
    assert orders.preload(w.settings.redis.prefix)(job) == [key]
    other = Queue("orders", connection=w.client).enqueue("builtins.len", "x", job_id="other-x")
    assert orders.preload(w.settings.redis.prefix)(other) == []
    raw = w.client.hgetall(key)
    log: list[str] = []
    stale = {**raw, b"close_attempt": b"2"}  # as read when the job started: a later attempt is current
    assert w.run(execute(_ctx(w, log), intent, stale)).startswith("skip")
    assert log == []
    assert w.run(execute(_ctx(w, log), intent, raw)) == "placed: filled 2/2"
    assert log == [f"close-position sell {intent.cl_ord_id}"]  # decided on the preloaded hash alone


# --- the entry job: its leverage at the exchange first ---


def _entry(w: World, pos: Position) -> OrderIntent:
    return next(i for i in w.outbox(pos.symbol) if i.action is IntentAction.OPEN and i.position_id == pos.id)


def test_an_entry_sets_its_leverage_at_the_exchange_before_its_order(real_redis: RealRedis) -> None:
    """Found by an outside read of the code: nothing ever set the leverage at the exchange, so an OKX
    account at another leverage took entries sized and gated for `risk.leverage` (its margin and its
    liquidation distance other than the risk gates checked). The entry job sets it first, once per symbol,
    margin mode and side in a worker process."""
    w = make_world(real_redis.client)
    log: list[str] = []
    ctx = _ctx(w, log)
    levers: list[tuple[str, int, str]] = []
    real_set = w.paper.set_leverage

    async def recording(inst_id: str, lever: int, mgn_mode: str, pos_side: str | None = None) -> None:
        levers.append((inst_id, lever, mgn_mode))
        await real_set(inst_id, lever, mgn_mode, pos_side)

    w.paper.set_leverage = recording  # type: ignore[method-assign]
    first, second = w.opening("long", "1"), w.opening("long", "1", inst=ETH)
    for pos in (first, second):
        assert w.run(execute(ctx, _entry(w, pos))).startswith("placed: filled")
    assert levers == [(BTC, first.leverage, "isolated"), (ETH, second.leverage, "isolated")]
    assert w.paper.state.lever(BTC, "net") == first.leverage
    third = w.opening("long", "1")  # BTC again: set already by this process
    w.run(execute(ctx, _entry(w, third)))
    assert len(levers) == 2


def test_an_entry_whose_leverage_the_exchange_refuses_is_not_sent(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    ctx = _ctx(w, [])
    pos = w.opening("long", "1")
    pos.leverage = 500  # beyond the instrument's maximum: the venue refuses it
    w.client.hset(w.store.keys.pos(BTC, pos.id), "leverage", "500")
    intent = _entry(w, pos)
    assert w.run(execute(ctx, intent)).startswith("refused: leverage 500x not set")
    assert w.order(intent.cl_ord_id) is None  # no entry order at the exchange
    assert _events(w, pos)[-1]["state"] == "canceled"  # the engine hears the entry is refused

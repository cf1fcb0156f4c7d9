"""The order workers' job: carry out one order intent, idempotently.

An entry or a harvest first asks the exchange for its own client order id; only if the exchange has never
seen it does it send anything. A full close is the venue's close-position (whatever is held, at market):
run again after it filled it finds nothing to close, and while it is pending the same client id is refused.
A send whose outcome is unknown (timeout) is queried by client order id before anything else happens; if
the query cannot tell either, the job fails and RQ retries it later, which starts again with the query. So
a job can run any number of times and the exchange sees at most one order per id. Whatever the job learns
about its order is published to the engine's event stream.

A protective stop belongs to its position (workers/protection.py): it is recorded before it is sent, and
only while its position is live; once placed, the position is read again, and a stop that landed after its
position closed is cancelled at once. The job that cancels a closed position's stop, finding none while its
placement may still land, fails and is retried (RQ) until the stop is known placed (and is cancelled) or
known never placed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job

from config.settings import Settings, load_settings
from exchanges import sync as exchange_loop
from exchanges.base import (
    DuplicateClientId,
    Exchange,
    ExchangeError,
    ExchangePosition,
    Instrument,
    NothingToClose,
    Order,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
)
from exchanges.okx import counts as okx_counts
from statemachines import counters
from statemachines.intents import IntentAction, OrderIntent
from statemachines.keys import Keys
from statemachines.lifecycle import State
from statemachines.position import Position
from statemachines.store import PositionNotFound, PositionStore
from workers.events import EventBus, position_fields
from workers.protection import StopOutcomePending, StopRecord, retire
from workers.relay import JOB

log = logging.getLogger("scalper.worker")


@dataclass
class WorkerContext:
    settings: Settings
    client: redis.Redis
    store: PositionStore
    exchange: Exchange
    bus: EventBus
    loop: asyncio.AbstractEventLoop
    instruments: dict[str, Instrument]
    wall: Callable[[], float] = field(default=time.time)  # as the engine's: when a stop request was sent
    # (symbol, margin mode, posSide, leverage) this process has set at the exchange: an entry sets it first
    levers: set[tuple[str, str, str, int]] = field(default_factory=set)
    # The current job's order: when it was sent and when the exchange answered (epoch seconds, /metrics)
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def stops(self) -> StopRecord:
        return StopRecord(self.client, self.store.keys)


_CTX: WorkerContext | None = None


def context() -> WorkerContext:
    """One per worker process: built on the first job, reused after (no connection set-up per job)."""
    global _CTX
    if _CTX is None:
        from scalper.connect import exchange_client, redis_client

        settings = load_settings()
        client = redis_client(settings)
        loop = exchange_loop.loop()
        exchange = exchange_client(settings, client)
        store = PositionStore(client, settings.redis.prefix)
        instruments = {i.inst_id: i for i in loop.run_until_complete(exchange.instruments())}
        _CTX = WorkerContext(
            settings, client, store, exchange, EventBus(client, store.keys), loop, instruments
        )
    return _CTX


def run_intent(fields: dict[str, str]) -> str:
    """The RQ job. Returns what it did, for `rq info` and the job's result."""
    ctx = context()
    intent = OrderIntent.from_fields(fields)
    job = get_current_job()
    preloaded = getattr(job, "preloaded", {}).get(ctx.store.keys.pos(intent.symbol, intent.position_id))
    ctx.timing = {}
    result = "error"
    try:
        done = ctx.loop.run_until_complete(execute(ctx, intent, preloaded))
        word = done.split(":", 1)[0]
        result = word if word in RESULTS else "done"
        return done
    except OutcomeUnknown:
        result = "unknown"
        raise
    except StopOutcomePending:
        result = "pending"
        raise
    finally:
        enqueued = getattr(job, "enqueued_at", None)
        count(ctx, intent.action.value, result, enqueued.timestamp() if enqueued else None)


# The results of a job as /metrics counts them: the first word of what `execute` returns, when it is one of
# these; "done" for a protective stop's job; "unknown" (an unknown outcome, retried), "pending" (a stop's
# placement may still land, retried), "error" (anything else the job raised).
RESULTS = frozenset({"placed", "exists", "refused", "flat", "skip"})


def count(ctx: WorkerContext, action: str, result: str, decided: float | None) -> None:
    """The job's counters (statemachines/counters.py): orders by action and result, the order's latency
    (decision → sent → acknowledged; the decision is the job's enqueue, in the engine's transition), the
    client's rate-limit replies. One round trip, after the order is sent and its outcome published: it
    never delays an order. Redis refusing it costs the counts, never the job."""
    keys, timing = ctx.store.keys, ctx.timing
    pipe = ctx.client.pipeline(transaction=False)
    pipe.hincrby(keys.metric("orders"), f"{action}|{result}", 1)
    latency = keys.metric("order-latency")
    sent, acked = timing.get("sent"), timing.get("acked")
    if sent is not None and decided is not None:
        counters.observe(pipe, latency, "decision_to_sent", sent - decided)
    if sent is not None and acked is not None:
        counters.observe(pipe, latency, "sent_to_acknowledged", acked - sent)
        if decided is not None:
            counters.observe(pipe, latency, "decision_to_acknowledged", acked - decided)
    okx_counts.write_pending(pipe, keys)
    try:
        pipe.execute()
    except redis.RedisError as err:
        log.warning("order metrics not written (%s)", type(err).__name__)


def preload(prefix: str) -> Callable[[Job], list[str]]:
    """OrderWorker's `preload` for these jobs: the intent's position, read with the job's bookkeeping."""
    keys = Keys(prefix)

    def position_key(job: Job) -> list[str]:
        if job.func_name != JOB or not job.args or not isinstance(job.args[0], dict):
            return []
        fields = job.args[0]
        try:
            return [keys.pos(fields["symbol"], fields["position_id"])]
        except (KeyError, ValueError):
            return []  # a malformed intent: the job itself reports it

    return position_key


async def execute(
    ctx: WorkerContext, intent: OrderIntent, preloaded: Mapping[Any, Any] | None = None
) -> str:
    """`preloaded`: the position's hash as read when the job started (OrderWorker), else it is loaded."""
    try:
        if preloaded:
            pos = Position.from_hash(preloaded)
        else:
            pos = ctx.store.load(intent.position_id, intent.symbol)
    except PositionNotFound:
        return f"skip: no position {intent.position_id}"
    ex = ctx.exchange
    action = intent.action
    if action is IntentAction.PROTECT:  # after the entry fills, and again after a harvest or a resync
        return await _protect(ctx, intent, pos)
    if action is IntentAction.UNPROTECT:
        return await _unprotect(ctx, intent)
    # Superseded intents do nothing: the position moved on (a later attempt, or it is over).
    wanted = {IntentAction.OPEN: State.OPENING, IntentAction.CLOSE: State.CLOSING,
              IntentAction.HARVEST: State.HARVESTING}[action]  # fmt: skip
    if pos.state != wanted or (action is IntentAction.CLOSE and pos.close_attempt != intent.attempt):
        return f"skip: position is {pos.state} (attempt {pos.close_attempt})"
    if action is IntentAction.CLOSE:
        # The venue sizes the close from its own position as it executes (OKX close-position): no read
        # before the send, and nothing can change the position between a read and the order. Run again
        # after it filled, it finds nothing to close; while it is pending, the exchange refuses the same
        # client id (a duplicate, answered by querying it).
        side = OrderSide(intent.order_side)
        td_mode = ctx.settings.exchange.td_mode
        return await _send(ctx, intent, side, lambda: ex.close_position(
            intent.symbol, intent.cl_ord_id, side, td_mode, _pos_side(ctx, intent)))  # fmt: skip
    # An entry or a harvest repeated would double it: ask for the client order id first.
    existing = await ex.get_order(intent.symbol, intent.cl_ord_id)
    if existing is not None:
        ctx.bus.publish_order(existing, "worker")
        return f"exists: {existing.state.value}"
    inst = ctx.instruments[intent.symbol]
    if action is IntentAction.OPEN:
        refused = await _set_leverage(ctx, intent, pos.leverage)
        if refused:
            return refused
        size = inst.round_size(intent.size)
    else:  # a harvest: a fraction of what the exchange holds, read just before sending
        held = await _held(ex, intent)
        if held is None:
            # Nothing to reduce: the position is already flat at the exchange.
            _publish_flat(ctx, intent)
            return "flat: nothing to close"
        size = inst.round_size(held * Decimal(repr(intent.fraction)))
        if size <= 0:
            return "skip: harvest below the minimum size"
    req = OrderRequest(
        inst_id=intent.symbol, cl_ord_id=intent.cl_ord_id, side=OrderSide(intent.order_side), size=size,
        ord_type=OrderType.MARKET, reduce_only=action is IntentAction.HARVEST,
        pos_side=_pos_side(ctx, intent), td_mode=ctx.settings.exchange.td_mode,
    )  # fmt: skip
    return await _send(ctx, intent, req.side, lambda: ex.place_order(req))


async def _set_leverage(ctx: WorkerContext, intent: OrderIntent, lever: int) -> str:
    """The entry's leverage at the exchange, set before its first order (the sizing, the margin and the
    liquidation distance the risk gates checked all assume it); once per symbol, mode and side in this
    process. "" when set; otherwise the entry is reported refused: it is not sent at another leverage. A
    leverage the exchange cannot change now (OKX refuses while a position or order of the instrument is
    open at another one) refuses the entry the same way; an unknown outcome fails the job (RQ retries)."""
    td_mode, pos_side = ctx.settings.exchange.td_mode, _pos_side(ctx, intent)
    key = (intent.symbol, td_mode, pos_side or "net", lever)
    if key in ctx.levers:
        return ""
    try:
        await ctx.exchange.set_leverage(intent.symbol, lever, td_mode, pos_side)
    except ExchangeError as err:  # refused (unavailable or unknown are not: they fail the job, RQ retries)
        log.warning("%s %s: leverage %dx not set (%s): the entry is not sent", intent.symbol,
                    intent.cl_ord_id, lever, err)  # fmt: skip
        ctx.bus.publish_order(_refused(intent, OrderSide(intent.order_side)), "worker")
        return f"refused: leverage {lever}x not set: {err}"
    ctx.levers.add(key)
    return ""


async def _send(
    ctx: WorkerContext, intent: OrderIntent, side: OrderSide, send: Callable[[], Awaitable[Order]]
) -> str:
    """Send the order and publish what became of it. An unknown outcome or a duplicate id is answered by
    querying the client order id; still unknown, the job fails and RQ retries it (querying first)."""
    ex = ctx.exchange
    ctx.timing["sent"] = time.time()
    try:
        order = await send()
        ctx.timing["acked"] = time.time()
    except OutcomeUnknown:
        found = await ex.get_order(intent.symbol, intent.cl_ord_id)
        if found is None:
            raise  # still unknown: RQ retries the job, which queries again before any resend
        order = found
    except NothingToClose:
        _publish_flat(ctx, intent)
        return "flat: exchange says nothing to close"
    except DuplicateClientId:
        found = await ex.get_order(intent.symbol, intent.cl_ord_id)
        if found is None:
            raise
        order = found
    except ExchangeError as err:
        # Refused outright (lot size, margin, ...): report a cancelled order so the engine settles.
        log.warning("%s %s refused: %s", intent.action.value, intent.cl_ord_id, err)
        ctx.bus.publish_order(_refused(intent, side), "worker")
        return f"refused: {err}"
    if order.state is OrderState.LIVE and order.filled == 0:
        # Acknowledged but not yet reported filled (a market order, or OKX's bare close-position answer):
        # the exchange's push will follow; ask now all the same.
        latest = await ex.get_order(intent.symbol, intent.cl_ord_id)
        order = latest or order
    ctx.bus.publish_order(order, "worker")
    return f"placed: {order.state.value} {order.filled}/{order.size}"


async def _held(ex: Exchange, intent: OrderIntent) -> Decimal | None:
    for p in await ex.positions():
        if p.inst_id == intent.symbol and p.side == intent.side and p.size > 0:
            return p.size
    return None


def _pos_side(ctx: WorkerContext, intent: OrderIntent) -> str | None:
    return intent.side if ctx.settings.exchange.pos_mode == "long_short" else None


def _publish_flat(ctx: WorkerContext, intent: OrderIntent) -> None:
    flat = ExchangePosition(inst_id=intent.symbol, pos_side="net", side=intent.side, size=Decimal(0),
                            avg_px=Decimal(0))  # fmt: skip
    ctx.bus.publish(intent.symbol, position_fields(flat, snapshot=False, source="worker"))


def _refused(intent: OrderIntent, side: OrderSide) -> Order:
    reduce_only = intent.action is not IntentAction.OPEN
    return Order(inst_id=intent.symbol, cl_ord_id=intent.cl_ord_id, ord_id="", side=side,
                 state=OrderState.CANCELED, size=Decimal(0), reduce_only=reduce_only)  # fmt: skip


async def _protect(ctx: WorkerContext, intent: OrderIntent, pos: Position) -> str:
    """Place the position's protective stop, or, when it is live already, size it to what the position
    holds now (after a partial close it would cover more than is held). Recorded before it is sent, and only
    while its position is live; once placed, the position is read again (`_unless_over`)."""
    ex, stops, symbol, stop_id = ctx.exchange, ctx.stops, intent.symbol, intent.cl_ord_id
    if pos.state == State.CLOSED or pos.size <= 0:
        # Over before its stop was placed; an earlier run of this job may have sent it all the same.
        done = await retire(ex, stops, symbol, stop_id, ctx.wall())
        return f"skip: position is {pos.state}" if done == "no protective stop" else done
    inst = ctx.instruments[symbol]
    live = [s for s in await ex.stops() if s.algo_cl_ord_id == stop_id and s.state == "live"]
    if live:
        stops.placed(symbol, stop_id)
        held = inst.round_size(pos.size)
        if held <= 0 or live[0].size == held:
            return await _unless_over(ctx, intent, "exists: protective stop")
        try:
            await ex.resize_stop(symbol, stop_id, held)
        except OrderNotFound:  # triggered or cancelled since the read: the reconciler settles what it did
            return "protective stop gone"
        return await _unless_over(ctx, intent, f"protective stop resized to {held}")
    if (earlier := await ex.find_stop(symbol, stop_id)) is not None:
        # Placed by an earlier run of this job and gone since (triggered, or cancelled): never sent twice.
        # A triggered stop flattened the position, which the reconciler settles.
        stops.placed(symbol, stop_id)
        log.warning("%s %s: protective stop %s is %s: not placed again", symbol, intent.position_id,
                    stop_id, earlier.state)  # fmt: skip
        return f"skip: protective stop {earlier.state}"
    if not stops.announce(symbol, stop_id, intent.position_id, ctx.wall()):
        # Closed since the job loaded it: nothing sent by this run.
        done = await retire(ex, stops, symbol, stop_id, ctx.wall())
        return "skip: position is closed" if done == "no protective stop" else done
    trigger = inst.round_price(Decimal(repr(intent.stop_px)))
    try:
        await ex.place_stop(symbol, stop_id, OrderSide(intent.order_side), trigger, pos.size,
                            _pos_side(ctx, intent))  # fmt: skip
    except OutcomeUnknown:
        if not any(s.algo_cl_ord_id == stop_id for s in await ex.stops()):
            stops.unanswered(symbol, stop_id, ctx.wall())  # until it lands or LAND_S passes: unknown
            raise
    except DuplicateClientId:
        pass  # an earlier request for it landed meanwhile: it is there
    stops.placed(symbol, stop_id)
    return await _unless_over(ctx, intent, f"protective stop at {trigger}")


async def _unless_over(ctx: WorkerContext, intent: OrderIntent, placed: str) -> str:
    """The stop is at the exchange: if its position closed meanwhile (its unprotect job may have looked
    before the stop was there), it is cancelled now rather than left to close the symbol's next position."""
    pos = ctx.store.load(intent.position_id, intent.symbol)
    if pos.state != State.CLOSED:
        return placed
    done = await retire(ctx.exchange, ctx.stops, intent.symbol, intent.cl_ord_id, ctx.wall())
    return f"{placed}, after its position closed: {done}"


async def _unprotect(ctx: WorkerContext, intent: OrderIntent) -> str:
    """Raises StopOutcomePending (RQ retries the job) while the stop's placement may still land."""
    return await retire(ctx.exchange, ctx.stops, intent.symbol, intent.cl_ord_id, ctx.wall())

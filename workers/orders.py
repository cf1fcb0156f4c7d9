"""The order workers' job: carry out one order intent, idempotently.

Every job first asks the exchange for its own client order id; only if the exchange has never seen it does
it send anything. A send whose outcome is unknown (timeout) is queried by client order id before anything
else happens; if the query cannot tell either, the job fails and RQ retries it later, which starts again
with the query. So a job can run any number of times and the exchange sees at most one order per id.
Whatever the job learns about its order is published to the engine's event stream.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import redis

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
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
)
from statemachines.intents import IntentAction, OrderIntent
from statemachines.lifecycle import State
from statemachines.store import PositionNotFound, PositionStore
from workers.events import EventBus, position_fields

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
    return ctx.loop.run_until_complete(execute(ctx, intent))


async def execute(ctx: WorkerContext, intent: OrderIntent) -> str:
    # A close is sized from the exchange's position: ask for it first, so the exchange reads it while the
    # stored position loads. It is still read after the job started, and before the close is sent.
    reading = (
        asyncio.ensure_future(_held(ctx.exchange, intent)) if intent.action is IntentAction.CLOSE else None
    )
    try:
        return await _execute(ctx, intent, reading)
    finally:
        if reading is not None:  # not needed after all (a skip), or failed with the job: never left pending
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


async def _execute(
    ctx: WorkerContext, intent: OrderIntent, reading: asyncio.Future[Decimal | None] | None
) -> str:
    if reading is not None:
        await asyncio.sleep(0)  # the read leaves now
    try:
        pos = ctx.store.load(intent.position_id, intent.symbol)
    except PositionNotFound:
        return f"skip: no position {intent.position_id}"
    ex = ctx.exchange
    action = intent.action
    if action is IntentAction.PROTECT:
        if pos.state == State.CLOSED or pos.size <= 0:
            return f"skip: position is {pos.state}"  # it closed before its stop could be placed
        return await _protect(ctx, intent, pos.size)
    if action is IntentAction.UNPROTECT:
        return await _unprotect(ctx, intent)
    # Superseded intents do nothing: the position moved on (a later attempt, or it is over).
    wanted = {IntentAction.OPEN: State.OPENING, IntentAction.CLOSE: State.CLOSING,
              IntentAction.HARVEST: State.HARVESTING}[action]  # fmt: skip
    if pos.state != wanted or (action is IntentAction.CLOSE and pos.close_attempt != intent.attempt):
        return f"skip: position is {pos.state} (attempt {pos.close_attempt})"
    # An entry or a harvest repeated would double it: ask for the client order id first. A close needs no
    # such look-up: it is reduce-only and sized from the exchange's position read just before sending, so
    # after a first close filled it finds nothing to close, and while the first is pending the exchange
    # refuses the same client id (a duplicate, answered by querying it).
    if action is not IntentAction.CLOSE:
        existing = await ex.get_order(intent.symbol, intent.cl_ord_id)
        if existing is not None:
            ctx.bus.publish_order(existing, "worker")
            return f"exists: {existing.state.value}"
    inst = ctx.instruments[intent.symbol]
    reduce_only = action is not IntentAction.OPEN
    if action is IntentAction.OPEN:
        size = inst.round_size(intent.size)
    else:
        held = await (reading if reading is not None else _held(ex, intent))
        if held is None:
            # Nothing to reduce: the position is already flat at the exchange.
            _publish_flat(ctx, intent)
            return "flat: nothing to close"
        size = (
            held if action is IntentAction.CLOSE else inst.round_size(held * Decimal(repr(intent.fraction)))
        )
        if size <= 0:
            return "skip: harvest below the minimum size"
    req = OrderRequest(
        inst_id=intent.symbol, cl_ord_id=intent.cl_ord_id, side=OrderSide(intent.order_side), size=size,
        ord_type=OrderType.MARKET, reduce_only=reduce_only, pos_side=_pos_side(ctx, intent),
        td_mode=ctx.settings.exchange.td_mode,
    )  # fmt: skip
    try:
        order = await ex.place_order(req)
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
        log.warning("%s %s refused: %s", action.value, intent.cl_ord_id, err)
        ctx.bus.publish_order(_refused(req), "worker")
        return f"refused: {err}"
    if order.state is OrderState.LIVE and order.filled == 0:
        # A market order acknowledged but not yet reported filled: the exchange's push will follow.
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


def _refused(req: OrderRequest) -> Order:
    return Order(inst_id=req.inst_id, cl_ord_id=req.cl_ord_id, ord_id="", side=req.side,
                 state=OrderState.CANCELED, size=req.size, reduce_only=req.reduce_only)  # fmt: skip


async def _protect(ctx: WorkerContext, intent: OrderIntent, size: Decimal) -> str:
    ex = ctx.exchange
    if any(s.algo_cl_ord_id == intent.cl_ord_id and s.state == "live" for s in await ex.stops()):
        return "exists: protective stop"
    inst = ctx.instruments[intent.symbol]
    trigger = inst.round_price(Decimal(repr(intent.stop_px)))
    try:
        await ex.place_stop(intent.symbol, intent.cl_ord_id, OrderSide(intent.order_side), trigger, size,
                            _pos_side(ctx, intent))  # fmt: skip
    except OutcomeUnknown:
        if not any(s.algo_cl_ord_id == intent.cl_ord_id for s in await ex.stops()):
            raise
    return f"protective stop at {trigger}"


async def _unprotect(ctx: WorkerContext, intent: OrderIntent) -> str:
    ex = ctx.exchange
    if not any(s.algo_cl_ord_id == intent.cl_ord_id and s.state == "live" for s in await ex.stops()):
        return "no live protective stop"
    await ex.cancel_stop(intent.symbol, intent.cl_ord_id)
    return "protective stop cancelled"

"""Protective stops as OKX conditional algo orders: reduce-only, market on trigger (slOrdPx "-1").

  place    POST /api/v5/trade/order-algo   ordType conditional, slTriggerPx, slOrdPx -1, algoClOrdId
  move     POST /api/v5/trade/amend-algos  newSlTriggerPx (by algoClOrdId)
  resize   POST /api/v5/trade/amend-algos  newSz (by algoClOrdId): the same stop, for what is held now
  cancel   POST /api/v5/trade/cancel-algos [{instId, algoClOrdId}]
  lookup   GET  /api/v5/trade/order-algo?algoClOrdId=   (any state)
  pending  GET  /api/v5/trade/orders-algo-pending?ordType=conditional
Placing follows the same unknown-outcome rule as orders: look it up by algoClOrdId, never place it twice.
A stop is placed in the margin mode (tdMode) of the position it protects: at OKX a position is per margin
mode, and a stop in another mode finds nothing to close when it triggers (the adapter reads the mode).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from exchanges.base import (
    DuplicateClientId,
    ExchangeUnavailable,
    Instrument,
    LotSizeError,
    OrderNotFound,
    OrderSide,
    OutcomeUnknown,
    StopOrder,
)  # fmt: skip
from exchanges.okx.convert import to_stop
from exchanges.okx.ratelimit import Kind
from exchanges.okx.records import AlgoOrderRec, OrderAck
from exchanges.okx.rest import OkxRest
from exchanges.okx.wire import DecodeError, dec_str

log = logging.getLogger(__name__)


def _trigger(inst: Instrument, side: OrderSide, px: Decimal) -> Decimal:
    """To the tick, towards the market: a sell stop (protecting a long) rounds up, a buy stop down."""
    if px <= 0:
        raise ValueError("trigger price must be positive")
    return inst.round_price(px, ROUND_UP if side is OrderSide.SELL else ROUND_DOWN)


async def place(
    rest: OkxRest,
    inst: Instrument,
    algo_cl_ord_id: str,
    side: OrderSide,
    trigger_px: Decimal,
    size: Decimal,
    td_mode: str,
    pos_side: str | None,
    queries: int,
    query_delay: float,
) -> StopOrder:
    sz = inst.round_size(size)
    if sz <= 0:
        raise LotSizeError("51020", f"stop size {size} below minSz {inst.min_sz}")
    trigger = _trigger(inst, side, trigger_px)
    body: dict[str, Any] = {
        "instId": inst.inst_id,
        "tdMode": td_mode,
        "side": side.value,
        "ordType": "conditional",
        "sz": dec_str(sz),
        "slTriggerPx": dec_str(trigger),
        "slOrdPx": "-1",  # market order on trigger
        "slTriggerPxType": "last",
        "algoClOrdId": algo_cl_ord_id,
    }
    if pos_side is not None:
        body["posSide"] = pos_side  # long/short mode: closing is implied by side + posSide
    else:
        body["reduceOnly"] = True
    try:
        acks = await rest.post(
            "/api/v5/trade/order-algo", OrderAck, body, kind=Kind.ALGO, inst_id=inst.inst_id
        )
    except (OutcomeUnknown, DuplicateClientId) as e:
        for i in range(max(1, queries)):
            if i:
                await asyncio.sleep(query_delay)
            try:
                found = await lookup(rest, inst.inst_id, algo_cl_ord_id)
            except ExchangeUnavailable:
                continue
            if found is not None:
                log.info("okx stop %s found after %s", algo_cl_ord_id, type(e).__name__)
                return found
        if isinstance(e, OutcomeUnknown):
            raise OutcomeUnknown(f"stop {algo_cl_ord_id}: outcome unknown ({e}); not found yet") from e
        raise
    return StopOrder(
        inst_id=inst.inst_id,
        algo_cl_ord_id=algo_cl_ord_id,
        algo_id=acks[0].algo_id,
        side=side,
        trigger_px=trigger,
        size=sz,
        pos_side=pos_side or "net",
    )


async def move(rest: OkxRest, inst: Instrument, stop: StopOrder, trigger_px: Decimal) -> StopOrder:
    trigger = _trigger(inst, stop.side, trigger_px)
    body = {
        "instId": inst.inst_id,
        "algoClOrdId": stop.algo_cl_ord_id,
        "newSlTriggerPx": dec_str(trigger),
        "newSlOrdPx": "-1",
    }
    await rest.post("/api/v5/trade/amend-algos", OrderAck, body, kind=Kind.ALGO, inst_id=inst.inst_id)
    return replace(stop, trigger_px=trigger)


async def resize(rest: OkxRest, inst: Instrument, stop: StopOrder, size: Decimal) -> StopOrder:
    """The stop's size amended in place (its algoClOrdId stays). Amending to a size it already has changes
    nothing, so after an unknown outcome the caller may read the stop and send it again."""
    sz = inst.round_size(size)
    if sz <= 0:
        raise LotSizeError("51020", f"stop size {size} below minSz {inst.min_sz}")
    body = {"instId": inst.inst_id, "algoClOrdId": stop.algo_cl_ord_id, "newSz": dec_str(sz)}
    await rest.post("/api/v5/trade/amend-algos", OrderAck, body, kind=Kind.ALGO, inst_id=inst.inst_id)
    return replace(stop, size=sz)


async def cancel(rest: OkxRest, inst_id: str, algo_cl_ord_id: str) -> None:
    body = [{"instId": inst_id, "algoClOrdId": algo_cl_ord_id}]
    await rest.post("/api/v5/trade/cancel-algos", OrderAck, body, kind=Kind.ALGO, inst_id=inst_id)


async def lookup(rest: OkxRest, inst_id: str, algo_cl_ord_id: str) -> StopOrder | None:
    """The stop in any state, None when OKX says there is none."""
    try:
        recs = await rest.get(
            "/api/v5/trade/order-algo",
            AlgoOrderRec,
            {"algoClOrdId": algo_cl_ord_id},
            kind=Kind.ALGO,
            inst_id=inst_id,
        )
    except OrderNotFound:
        return None
    stops = _stops(recs)
    return stops[0] if stops else None


async def pending(rest: OkxRest, inst_type: str) -> list[StopOrder]:
    recs = await rest.get(
        "/api/v5/trade/orders-algo-pending",
        AlgoOrderRec,
        {"ordType": "conditional", "instType": inst_type},
        kind=Kind.ALGO,
    )
    return _stops(recs)


def _stops(recs: list[AlgoOrderRec]) -> list[StopOrder]:
    out = []
    for rec in recs:
        try:
            out.append(to_stop(rec))
        except DecodeError as e:
            log.warning("okx algo record skipped: %s", e)
    return out

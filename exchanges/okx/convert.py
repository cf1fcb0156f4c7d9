"""OKX records -> the venue-neutral types of `exchanges.base`, market-data Ticks, and request bodies.

Conversions raise `DecodeError` for a record we cannot represent (unknown order state, zero lot size...),
so a caller handles one error type for "the venue said something we do not understand".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchanges.base import (
    Balance,
    ExchangePosition,
    Instrument,
    Order,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    StopOrder,
)
from exchanges.okx.messages import Push
from exchanges.okx.records import (
    AccountRec,
    AlgoOrderRec,
    InstrumentRec,
    OrderRec,
    PositionRec,
    Ticker,
    Trade,
)
from exchanges.okx.wire import DecodeError, dec_str

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Tick:
    """One price observation for the strategy: floats are fine here (signals, not money)."""

    inst_id: str
    price: float
    bid: float | None
    ask: float | None
    ts: float  # seconds since the epoch, from OKX's ms `ts`


def _f(v: Decimal | None) -> float | None:
    return None if v is None else float(v)


def tick_from_ticker(t: Ticker) -> Tick | None:
    """None when the instrument has not traded yet (last == "")."""
    if t.last is None:
        return None
    return Tick(t.inst_id, float(t.last), _f(t.bid_px), _f(t.ask_px), t.ts / 1000.0)


def tick_from_trade(t: Trade) -> Tick:
    return Tick(t.inst_id, float(t.px), None, None, t.ts / 1000.0)


def ticks(push: Push[Any]) -> list[Tick]:
    """Ticks of a tickers or trades push (one per trade); [] for any other channel."""
    out: list[Tick] = []
    for rec in push.data:
        if isinstance(rec, Ticker):
            tick = tick_from_ticker(rec)
            if tick is not None:
                out.append(tick)
        elif isinstance(rec, Trade):
            out.append(tick_from_trade(rec))
    return out


def to_instrument(rec: InstrumentRec) -> Instrument:
    """SPOT records (no ctVal) become contracts of 1 base unit with ct_type "spot"."""
    ct_val = rec.ct_val if rec.ct_val is not None else Decimal(1)
    if rec.lot_sz <= 0 or rec.tick_sz <= 0 or ct_val <= 0 or rec.min_sz < 0:
        raise DecodeError("instrument", f"{rec.inst_id}: non-positive lotSz/tickSz/ctVal")
    return Instrument(
        inst_id=rec.inst_id,
        ct_val=ct_val,
        lot_sz=rec.lot_sz,
        min_sz=rec.min_sz,
        tick_sz=rec.tick_sz,
        max_lever=int(rec.lever) if rec.lever is not None and rec.lever >= 1 else 1,
        settle_ccy=rec.settle_ccy or rec.quote_ccy,
        ct_type=rec.ct_type or rec.inst_type.lower(),
    )


def to_balances(rec: AccountRec) -> list[Balance]:
    """One Balance per currency; available = availEq, else availBal (mode-dependent), else 0."""
    out = []
    for d in rec.details:
        avail = d.avail_eq if d.avail_eq is not None else d.avail_bal
        out.append(Balance(ccy=d.ccy, equity=d.eq, available=avail if avail is not None else _ZERO))
    return out


def to_position(rec: PositionRec) -> ExchangePosition:
    """net mode: the sign of `pos` is the direction (a flat record has size 0 and side "long");
    long_short mode: `posSide` is the direction. `size` is always abs(pos), in contracts."""
    pos_side = rec.pos_side or "net"
    if pos_side == "net":
        side = "short" if rec.pos < 0 else "long"
    elif pos_side in ("long", "short"):
        side = pos_side
    else:
        raise DecodeError("position", f"unknown posSide {pos_side[:20]!r}")
    return ExchangePosition(
        inst_id=rec.inst_id,
        pos_side=pos_side,
        side=side,
        size=abs(rec.pos),
        avg_px=rec.avg_px if rec.avg_px is not None else _ZERO,
        mgn_mode=rec.mgn_mode or "isolated",
        lever=rec.lever if rec.lever is not None else Decimal(1),
        mark_px=rec.mark_px,
        liq_px=rec.liq_px,
        margin_ratio=rec.mgn_ratio,
        upl=rec.upl if rec.upl is not None else _ZERO,
        realized_pnl=rec.realized_pnl if rec.realized_pnl is not None else _ZERO,
        fee=rec.fee if rec.fee is not None else _ZERO,
        u_time_ms=rec.u_time,
    )


_STATES = {s.value: s for s in OrderState}
_SIDES = {s.value: s for s in OrderSide}
# Everything that rests at a price is LIMIT; market and optimal_limit_ioc (market with a price guard) MARKET.
_MARKET_TYPES = frozenset({"market", "optimal_limit_ioc"})


def to_order(rec: OrderRec) -> Order:
    state = _STATES.get(rec.state)
    side = _SIDES.get(rec.side)
    if state is None or side is None:
        raise DecodeError("order", f"unknown state/side {rec.state[:20]!r}/{rec.side[:8]!r}")
    return Order(
        inst_id=rec.inst_id,
        cl_ord_id=rec.cl_ord_id,
        ord_id=rec.ord_id,
        side=side,
        state=state,
        size=rec.sz,
        filled=rec.acc_fill_sz,
        avg_px=rec.avg_px if rec.avg_px else None,  # "0"/"" before the first fill
        ord_type=OrderType.MARKET if rec.ord_type in _MARKET_TYPES else OrderType.LIMIT,
        price=rec.px,
        reduce_only=rec.reduce_only,
        pos_side=rec.pos_side or "net",
        fee=rec.fee if rec.fee is not None else _ZERO,
        pnl=rec.pnl if rec.pnl is not None else _ZERO,
        u_time_ms=rec.u_time,
        algo_cl_ord_id=rec.algo_cl_ord_id,
    )


def to_stop(rec: AlgoOrderRec) -> StopOrder:
    """A conditional (stop-loss) algo order; the trigger is slTriggerPx, else triggerPx, else tpTriggerPx."""
    side = _SIDES.get(rec.side)
    trigger = next((p for p in (rec.sl_trigger_px, rec.trigger_px, rec.tp_trigger_px) if p is not None), None)
    if side is None or trigger is None:
        raise DecodeError("stop", f"algo {rec.algo_id[:24]} without side or trigger price")
    return StopOrder(
        inst_id=rec.inst_id,
        algo_cl_ord_id=rec.algo_cl_ord_id,
        algo_id=rec.algo_id,
        side=side,
        trigger_px=trigger,
        size=rec.sz if rec.sz is not None else _ZERO,
        pos_side=rec.pos_side or "net",
        state=rec.state,
        order_ids=tuple(rec.ord_id_list),
    )


# --- request bodies (dicts ready for json.dumps; numbers as plain-notation strings, like the docs) ---


def order_args(req: OrderRequest, tag: str = "") -> dict[str, Any]:
    """POST /api/v5/trade/order body, also the `args[0]` of a WS `op: order`."""
    body: dict[str, Any] = {
        "instId": req.inst_id,
        "tdMode": req.td_mode,
        "clOrdId": req.cl_ord_id,
        "side": req.side.value,
        "ordType": req.ord_type.value,
        "sz": dec_str(req.size),
    }
    if req.ord_type is OrderType.LIMIT:
        if req.price is None:
            raise ValueError("a limit order needs a price")
        body["px"] = dec_str(req.price)
    if req.pos_side is not None:
        body["posSide"] = req.pos_side
    if req.reduce_only:
        body["reduceOnly"] = True  # a JSON boolean in requests (responses say "true"/"false")
    if tag:
        body["tag"] = tag
    return body


def leverage_args(
    inst_id: str, lever: int | Decimal, mgn_mode: str, pos_side: str | None = None
) -> dict[str, str]:
    """posSide only for isolated margin in long/short mode (PROTOCOL_RULES §9)."""
    body = {"instId": inst_id, "lever": dec_str(Decimal(lever)), "mgnMode": mgn_mode}
    if pos_side is not None:
        body["posSide"] = pos_side
    return body


def close_position_args(
    inst_id: str, mgn_mode: str, pos_side: str | None = None, cl_ord_id: str = "", auto_cxl: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"instId": inst_id, "mgnMode": mgn_mode}
    if pos_side is not None and pos_side != "net":
        body["posSide"] = pos_side
    if cl_ord_id:
        body["clOrdId"] = cl_ord_id
    if auto_cxl:
        body["autoCxl"] = True
    return body


def ws_request(op: str, args: Iterable[dict[str, Any]], id: str = "") -> dict[str, Any]:
    """{"id"?, "op", "args"} for subscribe / unsubscribe / order ops (id: <= 32 alphanumerics, echoed)."""
    msg: dict[str, Any] = {"op": op, "args": list(args)}
    if id:
        msg = {"id": id, **msg}
    return msg

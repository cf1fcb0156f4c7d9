"""Which position a protective stop's fill belongs to: the one it closed, not always the one it was for.

A stop is placed for one position but executes against whatever the exchange holds on its symbol and side
when it triggers. One that outlived its position (it landed late; its cancel failed) closes the next
position there. That fill is the next position's close, with its PnL and fee, and counts in the daily loss
and loss streak through it; the position whose stop it was must not count it too.

The rule, on the exchange's own clock: positions on a symbol and side follow one another, so a fill
belongs to the position whose entry filled last at or before it. Pure: orders in, an answer out.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchanges.base import Order, OrderSide
from statemachines.intents import IntentAction, parse_client_order_id


def _entry_side(side: str) -> OrderSide:
    return OrderSide.BUY if side == "long" else OrderSide.SELL


def stop_of(order: Order) -> str:
    """The id of our protective stop that placed this order, "" when none did. OKX names the algo in
    algoClOrdId (the order has no client id of ours); the paper venue gives it the stop's id as well."""
    for cid in (order.algo_cl_ord_id, order.cl_ord_id):
        parsed = parse_client_order_id(cid)
        if parsed is not None and parsed.action is IntentAction.PROTECT:
            return cid
    return ""


def entry_times(orders: Iterable[Order], side: str) -> dict[str, int]:
    """Position id -> when its entry filled (the exchange's ms; the earliest of its entry orders), for our
    filled entries on `side` among `orders`."""
    out: dict[str, int] = {}
    for o in orders:
        cid = parse_client_order_id(o.cl_ord_id)
        if cid is None or cid.action is not IntentAction.OPEN or o.filled <= 0 or o.side != _entry_side(side):
            continue
        out[cid.position_id] = min(out.get(cid.position_id, o.u_time_ms), o.u_time_ms)
    return out


def owner(fill: Order, entries: dict[str, int]) -> str | None:
    """The position whose entry filled last at or before the fill (None: before every entry known)."""
    before = [(t, pid) for pid, t in entries.items() if t <= fill.u_time_ms]
    return max(before)[1] if before else None


def closed_by_itself(own: Iterable[Order], side: str) -> bool:
    """The position's own harvests and closes filled all its entries filled: nothing else closed any of it."""
    entered = closed = 0
    for o in own:
        cid = parse_client_order_id(o.cl_ord_id)
        if cid is None:
            continue
        if cid.action is IntentAction.OPEN:
            entered += o.filled
        elif cid.action in (IntentAction.CLOSE, IntentAction.HARVEST):
            closed += o.filled
    return entered > 0 and closed >= entered


def stop_fills_of(
    position_id: str, side: str, recent: Iterable[Order], entries: dict[str, int]
) -> list[Order]:
    """The fills of other positions' stops that closed this one: on its side, after its entry and before
    the next one's."""
    closing = OrderSide.SELL if side == "long" else OrderSide.BUY
    out = []
    for o in recent:
        stop = parse_client_order_id(stop_of(o))
        if stop is None or stop.position_id == position_id or o.filled <= 0 or o.side != closing:
            continue
        if owner(o, entries) == position_id:
            out.append(o)
    return out

"""The rule table that settles a position with what the exchange says (docs/design.md, crash recovery).

Pure: a position, its in-flight order as the exchange reports it (by client order id), the exchange's
position for the symbol, and the clock in; one `Settlement` out. The engine applies it to order events as
they arrive; the reconciler applies it at start, periodically, and after every private-stream reconnect.

| state      | exchange says                                            | settlement                        |
|------------|----------------------------------------------------------|-----------------------------------|
| opening    | entry filled (or cancelled after a partial fill)         | entry_filled with the filled size |
| opening    | entry live / partially filled                            | wait (cancel once timed out)      |
| opening    | entry cancelled with nothing filled                      | entry_failed                      |
| opening    | no such order, past twice the entry timeout              | entry_failed                      |
| harvesting | harvest filled (or cancelled after a partial fill)       | harvest_filled with what is left  |
| harvesting | harvest cancelled/unknown, nothing filled, timed out     | harvest_failed                    |
| harvesting | harvest still live past the close timeout                | cancel it (then harvest_failed)   |
| closing    | exchange position gone                                   | close_filled                      |
| closing    | close order gone (cancelled/unknown), position still on, | retry_close (next attempt id)     |
|            | past the close timeout                                   |                                   |
| closing    | close order still live past the close timeout            | cancel it (then retry_close)      |
| open, trailing, harvesting | exchange position gone                   | external_close                    |
| open, trailing | exchange size differs                                | resync (adopt the exchange's size)|
| any        | the exchange could not be read                           | nothing (unknown is never flat)   |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from config.settings import SymbolConfig
from exchanges.base import ExchangePosition, Order, OrderState
from statemachines import stepper
from statemachines.intents import IntentAction, client_order_id
from statemachines.lifecycle import State, Trigger
from statemachines.machine import PositionMachine
from statemachines.position import Position

UNKNOWN: Any = object()  # the exchange could not be read: never the same as "no position"


@dataclass(frozen=True, slots=True)
class Settlement:
    trigger: str = ""  # "" = nothing to do
    reason: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    cancel_cl_ord_id: str = ""  # an order to cancel (a timed-out entry, close or harvest)

    def __bool__(self) -> bool:
        return bool(self.trigger or self.cancel_cl_ord_id)


NOTHING = Settlement()


def in_flight_order_id(pos: Position) -> str:
    """The client order id of the order the position's state is waiting for ("" if none)."""
    if pos.state == State.OPENING:
        return client_order_id(pos.id, IntentAction.OPEN, max(1, pos.entry_attempt))
    if pos.state == State.HARVESTING:
        return client_order_id(pos.id, IntentAction.HARVEST, max(1, pos.harvests_done))
    if pos.state == State.CLOSING:
        return client_order_id(pos.id, IntentAction.CLOSE, max(1, pos.close_attempt))
    return ""


def matches(pos: Position, ex: ExchangePosition) -> bool:
    return ex.inst_id == pos.symbol and ex.side == pos.side.value and ex.size > 0


def settle(
    pos: Position,
    order: Order | Any | None,
    exch: ExchangePosition | Any | None,
    now: float,
    cfg: SymbolConfig,
) -> Settlement:
    """`order`: the in-flight order (None = the exchange has no such order, UNKNOWN = not read);
    `exch`: the exchange's position on this symbol and side (None = flat, UNKNOWN = not read);
    `now`: WALL time — timeouts measure the exchange, not the market (which a replay speeds up)."""
    state = pos.state
    since = pos.wall_since or pos.state_since
    age = now - since if since else 0.0
    if state == State.OPENING:
        return _opening(pos, order, age, cfg)
    if state == State.HARVESTING:
        result = _harvesting(pos, order, exch, age, cfg)
        if result:
            return result
    if state == State.CLOSING:
        return _closing(pos, order, exch, age, cfg)
    if state in (State.OPEN, State.TRAILING, State.HARVESTING) and exch is not UNKNOWN:
        if exch is None:
            return Settlement("external_close", "exchange shows no position")
        if state != State.HARVESTING and exch.size != pos.size:
            return Settlement("resync", f"exchange size {exch.size} != {pos.size}", {"size": exch.size})
    return NOTHING


def _opening(pos: Position, order: Any, age: float, cfg: SymbolConfig) -> Settlement:
    timeout = cfg.exits.entry_timeout_s
    if order is UNKNOWN:
        return NOTHING
    if order is None:
        # Not (yet) at the exchange: the job may still be queued. Only a long silence means it never went.
        return (
            Settlement("entry_failed", "entry order never reached the exchange")
            if age > 2 * timeout
            else NOTHING
        )
    if order.state is OrderState.FILLED or (order.state.terminal and order.filled > 0):
        return _filled_entry(order)
    if order.state.terminal:
        return Settlement("entry_failed", f"entry {order.state.value}, nothing filled")
    if age > timeout:
        return Settlement(cancel_cl_ord_id=order.cl_ord_id, reason="entry timed out")
    return NOTHING


def _filled_entry(order: Order) -> Settlement:
    return Settlement(
        "entry_filled", "fill", {"price": order.avg_px or Decimal(0), "size": order.filled, "fee": order.fee}
    )


def _harvesting(pos: Position, order: Any, exch: Any, age: float, cfg: SymbolConfig) -> Settlement:
    if order is UNKNOWN:
        return NOTHING
    if order is not None and (
        order.state is OrderState.FILLED or (order.state.terminal and order.filled > 0)
    ):
        remaining = exch.size if isinstance(exch, ExchangePosition) else pos.size - order.filled
        kwargs = {
            "remaining": remaining,
            "price": order.avg_px or Decimal(0),
            "pnl": order.pnl,
            "fee": order.fee,
        }
        return Settlement("harvest_filled", "fill", kwargs)
    if exch is UNKNOWN:
        return NOTHING
    if (order is None or order.state.terminal) and age > cfg.exits.close_timeout_s:
        return Settlement("harvest_failed", "harvest order gone, nothing filled")
    if order is not None and age > cfg.exits.close_timeout_s:
        return Settlement(cancel_cl_ord_id=order.cl_ord_id, reason="harvest order live past the timeout")
    return NOTHING


def _closing(pos: Position, order: Any, exch: Any, age: float, cfg: SymbolConfig) -> Settlement:
    filled = order is not UNKNOWN and order is not None and order.filled > 0
    pnl_fee = {"pnl": order.pnl, "fee": order.fee} if filled else {}
    if filled and order.state is OrderState.FILLED and order.filled >= pos.size:
        return Settlement("close_filled", "close order filled", pnl_fee)
    if exch is UNKNOWN:
        return NOTHING
    if exch is None:
        return Settlement("close_filled", "exchange position gone", pnl_fee)
    if order is UNKNOWN:
        return NOTHING
    if (order is None or order.state.terminal) and age > cfg.exits.close_timeout_s:
        return Settlement("retry_close", "close order gone, position still open", pnl_fee)
    if order is not None and age > cfg.exits.close_timeout_s:
        # Still live (a market order's rest waiting for a quote, say): cancel it; the next pass then sees it
        # terminal and retries with a fresh market close for what is left.
        return Settlement(cancel_cl_ord_id=order.cl_ord_id, reason="close order still live past the timeout")
    return NOTHING


def apply(
    pm: PositionMachine,
    pos: Position,
    st: Settlement,
    cfg: SymbolConfig,
    *,
    now: float,
    atr: float | None = None,
) -> None:
    """Fire the settlement's transition. Fees and PnL are accumulated as the exchange reports them
    (OKX: fee negative when charged; pnl excludes fees)."""
    kw = st.kwargs
    fee = kw.get("fee") or Decimal(0)
    pnl = kw.get("pnl") or Decimal(0)
    trig = st.trigger
    if trig == "entry_filled":
        stepper.entry_filled(pm, pos, price=kw["price"], size=kw["size"], atr=atr, cfg=cfg, now=now, fee=fee)
    elif trig == "harvest_filled":
        stepper.harvest_filled(
            pm,
            pos,
            remaining=kw["remaining"],
            price=kw["price"],
            cfg=cfg,
            realized_pnl=pos.realized_pnl + pnl,
            fees=pos.fees + fee,
        )
    elif trig == "harvest_failed":
        stepper.harvest_failed(pm, pos, reason=st.reason)
    elif trig == "retry_close":
        stepper.retry_close(
            pm, pos, reason=st.reason, realized_pnl=pos.realized_pnl + pnl, fees=pos.fees + fee
        )
    elif trig == "resync":
        stepper.resync_size(pm, pos, size=kw["size"], reason=st.reason, cfg=cfg)
    elif trig in ("close_filled", "external_close", "entry_failed"):
        stepper.settle_closed(
            pm, pos, trigger=Trigger(trig), reason=st.reason, realized_pnl=pos.realized_pnl + pnl,
            fees=pos.fees + fee,
        )
    elif trig:
        raise ValueError(f"unknown settlement {trig}")

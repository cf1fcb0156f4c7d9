"""The settlement rule table (workers/settlement.py), row by row, without Redis.

Every row of the table in the module's docstring has a test here, for long and short where the side could
matter, with the timeouts probed exactly at and just past their boundary (a timeout is "age > limit").
The reconciler-level cases (several bot positions on one exchange position) are in test_reconciler.py.
"""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from exchanges.base import ExchangePosition, Order, OrderSide, OrderState
from statemachines.lifecycle import LIVE_STATES, State
from statemachines.machine import PositionMachine
from statemachines.position import Position
from tests.guardkit import NOW, SYMBOL, config, position
from workers.settlement import NOTHING, UNKNOWN, Settlement, apply, in_flight_order_id, settle

CFG = config(exits={"entry_timeout_s": 30.0, "close_timeout_s": 20.0})
ENTRY_T = CFG.exits.entry_timeout_s
CLOSE_T = CFG.exits.close_timeout_s
EPS = 0.001  # just past a boundary: representable next to NOW (the float's ulp there is ~2.4e-7)
SIDES = ("long", "short")
LIVE_ORDER_STATES = (OrderState.LIVE, OrderState.PARTIALLY_FILLED)
CANCELLED = (OrderState.CANCELED, OrderState.MMP_CANCELED)


def pos_in(state: str, side: str = "long", *, since: float = NOW, **fields: Any) -> Position:
    """A position that entered `state` at `since` (both the engine clock and the wall clock)."""
    fields.setdefault("size", D("1"))
    return position(side=side, state=state, state_since=since, wall_since=since, **fields)


def order(
    pos: Position,
    state: OrderState,
    *,
    size: str = "1",
    filled: str = "0",
    avg_px: str | None = None,
    fee: str = "0",
    pnl: str = "0",
    entry: bool = False,
) -> Order:
    """The position's in-flight order as the exchange reports it (an entry goes with the position)."""
    with_pos = (pos.side.value == "long") == entry
    return Order(
        inst_id=pos.symbol, cl_ord_id=in_flight_order_id(pos), ord_id="1",
        side=OrderSide.BUY if with_pos else OrderSide.SELL, state=state, size=D(size), filled=D(filled),
        avg_px=None if avg_px is None else D(avg_px), reduce_only=not entry, fee=D(fee), pnl=D(pnl),
    )  # fmt: skip


def exch(side: str = "long", size: str = "1", avg_px: str = "100") -> ExchangePosition:
    return ExchangePosition(inst_id=SYMBOL, pos_side="net", side=side, size=D(size), avg_px=D(avg_px))


# --- which order a state waits for ---


def test_in_flight_order_id_per_state() -> None:
    assert in_flight_order_id(pos_in("opening")) == "t1o1"  # entry_attempt 0 is the first attempt
    assert in_flight_order_id(pos_in("opening", entry_attempt=2)) == "t1o2"
    assert in_flight_order_id(pos_in("harvesting", harvests_done=1)) == "t1h1"
    assert in_flight_order_id(pos_in("closing", close_attempt=1)) == "t1c1"
    assert in_flight_order_id(pos_in("closing", close_attempt=3)) == "t1c3"
    for state in ("open", "trailing", "closed"):
        assert in_flight_order_id(pos_in(state)) == ""


# --- opening ---


@pytest.mark.parametrize("side", SIDES)
def test_opening_entry_filled(side: str) -> None:
    p = pos_in("opening", side, size=D(0), entry_size=D("2"))
    o = order(p, OrderState.FILLED, size="2", filled="2", avg_px="100.5", fee="-0.1", entry=True)
    st = settle(p, o, UNKNOWN, NOW + 1, CFG)  # an order event: the exchange position is not read
    assert st == Settlement("entry_filled", "fill", {"price": D("100.5"), "size": D("2"), "fee": D("-0.1")})
    # ...and the same with the exchange position read: the order decides.
    assert settle(p, o, exch(side, "2"), NOW + 1, CFG).trigger == "entry_filled"


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("cancelled", CANCELLED)
def test_opening_cancelled_after_partial_fill_opens_with_the_filled_size(
    side: str, cancelled: OrderState
) -> None:
    p = pos_in("opening", side, size=D(0), entry_size=D("2"))
    o = order(p, cancelled, size="2", filled="0.7", avg_px="99", fee="-0.03", entry=True)
    st = settle(p, o, None, NOW + 1, CFG)
    assert st.trigger == "entry_filled"
    assert st.kwargs == {"price": D("99"), "size": D("0.7"), "fee": D("-0.03")}
    assert not st.cancel_cl_ord_id


@pytest.mark.parametrize("live", LIVE_ORDER_STATES)
def test_opening_live_entry_waits_then_is_cancelled_once_timed_out(live: OrderState) -> None:
    p = pos_in("opening")
    filled = "0.4" if live is OrderState.PARTIALLY_FILLED else "0"
    o = order(p, live, filled=filled, avg_px="100" if filled != "0" else None, entry=True)
    for age in (0.0, 1.0, ENTRY_T):  # at the timeout: still waiting
        assert settle(p, o, None, NOW + age, CFG) is NOTHING
    st = settle(p, o, None, NOW + ENTRY_T + EPS, CFG)
    assert st.cancel_cl_ord_id == "t1o1" and st.trigger == "" and st.reason == "entry timed out"
    assert st  # a cancel alone is something to do


@pytest.mark.parametrize("cancelled", CANCELLED)
def test_opening_cancelled_with_nothing_filled_is_entry_failed(cancelled: OrderState) -> None:
    p = pos_in("opening")
    st = settle(p, order(p, cancelled, entry=True), None, NOW + 1, CFG)
    assert st.trigger == "entry_failed"
    assert st.reason == f"entry {cancelled.value}, nothing filled"


def test_opening_no_such_order_fails_only_past_twice_the_entry_timeout() -> None:
    p = pos_in("opening")
    for age in (0.0, ENTRY_T, ENTRY_T + EPS, 2 * ENTRY_T):  # the job may still be queued
        assert settle(p, None, None, NOW + age, CFG) is NOTHING, age
    st = settle(p, None, None, NOW + 2 * ENTRY_T + EPS, CFG)
    assert st == Settlement("entry_failed", "entry order never reached the exchange")


def test_opening_timeouts_use_the_wall_clock_not_the_market_clock() -> None:
    # A replay runs market time fast: the state is old in market time but new on the wall clock.
    p = position(state="opening", state_since=NOW - 10_000, wall_since=NOW - 1)
    assert settle(p, None, None, NOW, CFG) is NOTHING
    p = position(state="opening", state_since=NOW - 1, wall_since=NOW - 2 * ENTRY_T - EPS)
    assert settle(p, None, None, NOW, CFG).trigger == "entry_failed"


def test_opening_entry_order_unreadable_is_nothing_however_late() -> None:
    p = pos_in("opening")
    assert settle(p, UNKNOWN, None, NOW + 100 * ENTRY_T, CFG) is NOTHING
    assert settle(p, UNKNOWN, UNKNOWN, NOW + 100 * ENTRY_T, CFG) is NOTHING


# --- harvesting ---


@pytest.mark.parametrize("side", SIDES)
def test_harvest_filled_trails_with_what_the_exchange_holds(side: str) -> None:
    p = pos_in("harvesting", side, harvests_done=1, size=D("2"))
    o = order(p, OrderState.FILLED, size="1", filled="1", avg_px="101", fee="-0.05", pnl="1")
    st = settle(p, o, exch(side, "1.1"), NOW + 1, CFG)
    assert st.trigger == "harvest_filled"
    assert st.kwargs == {"remaining": D("1.1"), "price": D("101"), "pnl": D("1"), "fee": D("-0.05")}


def test_harvest_filled_with_the_exchange_position_unread_leaves_size_minus_filled() -> None:
    p = pos_in("harvesting", harvests_done=1, size=D("2"))
    o = order(p, OrderState.FILLED, size="1", filled="1", avg_px="101")
    assert settle(p, o, UNKNOWN, NOW + 1, CFG).kwargs["remaining"] == D("1")


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("cancelled", CANCELLED)
def test_harvest_cancelled_after_partial_fill_trails_with_what_is_left(
    side: str, cancelled: OrderState
) -> None:
    p = pos_in("harvesting", side, harvests_done=1, size=D("2"))
    o = order(p, cancelled, size="1", filled="0.3", avg_px="101", fee="-0.01", pnl="0.3")
    st = settle(p, o, UNKNOWN, NOW + 1, CFG)
    assert st.trigger == "harvest_filled" and st.kwargs["remaining"] == D("1.7")
    assert (st.kwargs["pnl"], st.kwargs["fee"]) == (D("0.3"), D("-0.01"))
    assert settle(p, o, exch(side, "1.7"), NOW + 1, CFG).kwargs["remaining"] == D("1.7")


@pytest.mark.parametrize("gone", ["none", "canceled", "mmp_canceled"])
def test_harvest_gone_with_nothing_filled_fails_only_past_the_close_timeout(gone: str) -> None:
    p = pos_in("harvesting", harvests_done=1, size=D("2"))
    o = None if gone == "none" else order(p, OrderState(gone))
    for age in (0.0, CLOSE_T):
        assert settle(p, o, exch("long", "2"), NOW + age, CFG) is NOTHING
    st = settle(p, o, exch("long", "2"), NOW + CLOSE_T + EPS, CFG)
    assert st == Settlement("harvest_failed", "harvest order gone, nothing filled")


def test_harvest_live_order_waits_then_is_cancelled_and_its_size_is_never_resynced() -> None:
    p = pos_in("harvesting", harvests_done=1, size=D("2"))
    o = order(p, OrderState.LIVE)
    # Still live; the exchange size differs because the harvest is in flight: no resync.
    assert settle(p, o, exch("long", "1.4"), NOW + CLOSE_T / 2, CFG) is NOTHING
    st = settle(p, o, exch("long", "1.4"), NOW + 10 * CLOSE_T, CFG)
    assert (st.trigger, st.cancel_cl_ord_id) == ("", o.cl_ord_id)


def test_harvest_unreadable_is_nothing() -> None:
    p = pos_in("harvesting", harvests_done=1, size=D("2"))
    late = NOW + 10 * CLOSE_T
    assert settle(p, UNKNOWN, UNKNOWN, late, CFG) is NOTHING
    assert settle(p, None, UNKNOWN, late, CFG) is NOTHING  # an order gone but the position unread
    assert settle(p, UNKNOWN, exch("long", "2"), late, CFG) is NOTHING


# --- closing ---


@pytest.mark.parametrize("side", SIDES)
def test_closing_exchange_flat_is_close_filled_with_the_order_pnl(side: str) -> None:
    p = pos_in("closing", side, close_attempt=1)
    o = order(p, OrderState.FILLED, filled="1", avg_px="102", fee="-0.05", pnl="2")
    st = settle(p, o, None, NOW + 1, CFG)
    assert st == Settlement("close_filled", "close order filled", {"pnl": D("2"), "fee": D("-0.05")})
    # The position is gone but the close order cannot be read (or is not there): closed, PnL unknown.
    for unread in (UNKNOWN, None):
        assert settle(p, unread, None, NOW + 1, CFG) == Settlement("close_filled", "exchange position gone")


@pytest.mark.parametrize("filled", ["1", "1.5"])
def test_close_order_filled_settles_even_when_the_exchange_position_is_unknown(filled: str) -> None:
    p = pos_in("closing", close_attempt=2)
    o = order(p, OrderState.FILLED, size=filled, filled=filled, avg_px="99", fee="-0.05", pnl="-1")
    st = settle(p, o, UNKNOWN, NOW + 1, CFG)
    assert st.trigger == "close_filled" and st.kwargs == {"pnl": D("-1"), "fee": D("-0.05")}
    # ...and also when a stale read still shows the position.
    assert settle(p, o, exch("long", "1"), NOW + 1, CFG).trigger == "close_filled"


def test_close_order_partly_filled_with_the_exchange_unknown_is_nothing() -> None:
    p = pos_in("closing", close_attempt=1)
    for state in (OrderState.PARTIALLY_FILLED, OrderState.CANCELED):
        o = order(p, state, filled="0.4", avg_px="99", pnl="-0.4")
        assert settle(p, o, UNKNOWN, NOW + 10 * CLOSE_T, CFG) is NOTHING


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("gone", ["none", "canceled", "canceled_partly", "mmp_canceled"])
def test_closing_order_gone_position_still_on_retries_past_the_close_timeout(side: str, gone: str) -> None:
    p = pos_in("closing", side, close_attempt=1)
    o = {
        "none": None,
        "canceled": order(p, OrderState.CANCELED),
        "canceled_partly": order(p, OrderState.CANCELED, filled="0.4", avg_px="99"),
        "mmp_canceled": order(p, OrderState.MMP_CANCELED),
    }[gone]
    still = exch(side, "0.6" if gone == "canceled_partly" else "1")
    for age in (0.0, CLOSE_T):
        assert settle(p, o, still, NOW + age, CFG) is NOTHING
    st = settle(p, o, still, NOW + CLOSE_T + EPS, CFG)
    assert st.trigger == "retry_close" and st.reason == "close order gone, position still open"


def test_closing_live_close_order_waits_then_is_cancelled_past_the_close_timeout() -> None:
    """Regression (chaos CI pass): a close filled in part whose market rest stayed live (no quote came)
    kept the position in closing for good. Past the close timeout the rest is cancelled; the next pass
    sees it terminal and retries for what is left."""
    p = pos_in("closing", close_attempt=1)
    for live in LIVE_ORDER_STATES:
        o = order(p, live)
        assert settle(p, o, exch(), NOW + CLOSE_T / 2, CFG) is NOTHING
        st = settle(p, o, exch(), NOW + 10 * CLOSE_T, CFG)
        assert (st.trigger, st.cancel_cl_ord_id) == ("", o.cl_ord_id)


def test_closing_with_the_close_order_unreadable_waits_while_the_position_is_on() -> None:
    p = pos_in("closing", close_attempt=1)
    assert settle(p, UNKNOWN, exch(), NOW + 10 * CLOSE_T, CFG) is NOTHING
    assert settle(p, None, UNKNOWN, NOW + 10 * CLOSE_T, CFG) is NOTHING


# --- open, trailing (and harvesting): the exchange position ---


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("state", ["open", "trailing", "harvesting"])
def test_exchange_position_gone_is_external_close(side: str, state: str) -> None:
    p = pos_in(state, side, harvests_done=1)
    o = order(p, OrderState.LIVE) if state == "harvesting" else None
    st = settle(p, o, None, NOW + 1, CFG)
    assert st == Settlement("external_close", "exchange shows no position")


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("state", ["open", "trailing"])
def test_size_differs_is_resync_with_the_exchange_size(side: str, state: str) -> None:
    p = pos_in(state, side, size=D("1"))
    for theirs in ("0.6", "1.7"):
        st = settle(p, None, exch(side, theirs), NOW + 1, CFG)
        assert st == Settlement("resync", f"exchange size {theirs} != 1", {"size": D(theirs)})
    assert settle(p, None, exch(side, "1.0"), NOW + 1, CFG) is NOTHING  # equal as numbers


@pytest.mark.parametrize("state", LIVE_STATES)
def test_exchange_unknown_is_nothing_in_every_state(state: str) -> None:
    """Unknown is never flat: with nothing read, no state moves, however long it has been."""
    p = pos_in(state, harvests_done=1, close_attempt=1)
    for late in (NOW + 1, NOW + 1000 * ENTRY_T):
        assert settle(p, UNKNOWN, UNKNOWN, late, CFG) is NOTHING
        if state != State.OPENING:  # opening: "no such order" is the order's own answer (see above)
            assert settle(p, None, UNKNOWN, late, CFG) is NOTHING


def test_closed_position_is_never_settled() -> None:
    p = pos_in("closed")
    for o in (None, UNKNOWN):
        for ex in (None, UNKNOWN, exch()):
            assert settle(p, o, ex, NOW + 1000, CFG) is NOTHING


def test_nothing_is_falsy_and_every_settlement_with_a_trigger_is_truthy() -> None:
    assert not NOTHING and not Settlement(reason="just a note")
    assert Settlement("resync") and Settlement(cancel_cl_ord_id="x")


# --- apply: each settlement fires its transition with the exchange's numbers ---


def attached(state: str, side: str = "long", **fields: Any) -> tuple[PositionMachine, Position]:
    """A position at version 3 on a machine without a store (versions count up in memory)."""
    pm = PositionMachine(store=None, clock=lambda: NOW + 5, wall=lambda: NOW + 5)
    p = pos_in(state, side, version=3, **fields)
    return pm, p


@pytest.mark.parametrize("side", SIDES)
def test_apply_entry_filled_opens_with_size_price_fee_and_a_stop(side: str) -> None:
    pm, p = attached("opening", side, size=D(0), entry="0", entry_size=D("2"))
    st = Settlement("entry_filled", "fill", {"price": D("100"), "size": D("1.5"), "fee": D("-0.07")})
    apply(pm, p, st, CFG, now=NOW + 5, atr=None)
    assert (p.state, p.size, p.entry_price, p.fees, p.version) == ("open", D("1.5"), D("100"), D("-0.07"), 4)
    # No ATR yet: the widest stop, on the losing side.
    assert p.stop_price == pytest.approx(100 * (1 - p.sign * CFG.exits.stop_loss_max_pct / 100))
    assert p.opened_at == NOW + 5


def test_apply_harvest_filled_accumulates_pnl_and_fees() -> None:
    pm, p = attached("harvesting", harvests_done=1, size=D("2"), realized_pnl=D("0.5"), fees=D("-0.1"))
    kw = {"remaining": D("1"), "price": D("101"), "pnl": D("1"), "fee": D("-0.05")}
    apply(pm, p, Settlement("harvest_filled", "fill", kw), CFG, now=NOW + 5)
    assert (p.state, p.size, p.realized_pnl, p.fees) == ("trailing", D("1"), D("1.5"), D("-0.15"))
    assert p.trail_stop >= 100.0  # at least breakeven after a harvest


def test_apply_retry_close_takes_the_next_attempt() -> None:
    pm, p = attached("closing", close_attempt=1, exit_reason="take_profit")
    apply(pm, p, Settlement("retry_close", "close order gone, position still open"), CFG, now=NOW + 5)
    assert (p.state, p.close_attempt, p.exit_reason) == ("closing", 2, "take_profit")
    assert in_flight_order_id(p) == "t1c2"


def test_retry_close_keeps_the_pnl_of_a_partly_filled_close_attempt() -> None:
    pm, p = attached("closing", close_attempt=1, exit_reason="take_profit")
    part = order(p, OrderState.CANCELED, filled="0.4", avg_px="102", fee="-0.02", pnl="0.8")
    apply(pm, p, settle(p, part, exch("long", "0.6"), NOW + CLOSE_T + 1, CFG), CFG, now=NOW + 5)
    assert p.close_attempt == 2
    rest = order(p, OrderState.FILLED, size="0.6", filled="0.6", avg_px="103", fee="-0.03", pnl="1.8")
    apply(pm, p, settle(p, rest, None, NOW + 6, CFG), CFG, now=NOW + 6)
    assert p.state == "closed"
    assert (p.realized_pnl, p.fees) == (D("2.6"), D("-0.05"))


@pytest.mark.parametrize("side", SIDES)
def test_apply_resync_adopts_the_exchange_size(side: str) -> None:
    pm, p = attached("trailing", side, size=D("1"))
    apply(pm, p, settle(p, None, exch(side, "0.4"), NOW + 1, CFG), CFG, now=NOW + 5)
    assert (p.state, p.size, p.version) == ("trailing", D("0.4"), 4)


def test_apply_close_filled_keeps_the_exit_reason_and_adds_the_fill() -> None:
    pm, p = attached("closing", close_attempt=1, exit_reason="stop_loss", realized_pnl=D("1"), fees=D("-0.1"))
    st = Settlement("close_filled", "close order filled", {"pnl": D("-2"), "fee": D("-0.05")})
    apply(pm, p, st, CFG, now=NOW + 5)
    assert (p.state, p.size, p.exit_reason) == ("closed", D(0), "stop_loss")
    assert (p.realized_pnl, p.fees) == (D("-1"), D("-0.15"))


@pytest.mark.parametrize(("state", "trigger"), [("open", "external_close"), ("opening", "entry_failed")])
def test_apply_closing_settlements_record_their_reason(state: str, trigger: str) -> None:
    pm, p = attached(state)
    apply(pm, p, Settlement(trigger, "the reason"), CFG, now=NOW + 5)
    assert (p.state, p.exit_reason, p.size) == ("closed", "the reason", D(0))


def test_apply_nothing_does_nothing_and_an_unknown_trigger_raises() -> None:
    pm, p = attached("open")
    apply(pm, p, NOTHING, CFG, now=NOW + 5)
    apply(pm, p, Settlement(cancel_cl_ord_id="t1o1"), CFG, now=NOW + 5)  # a cancel is the caller's job
    assert (p.state, p.version) == ("open", 3)
    with pytest.raises(ValueError, match="unknown settlement"):
        apply(pm, p, Settlement("teleport"), CFG, now=NOW + 5)


def test_every_settlement_trigger_is_a_lifecycle_trigger() -> None:
    from statemachines.lifecycle import TRANSITIONS

    triggers = {t["trigger"] for t in TRANSITIONS}
    used = {"entry_filled", "entry_failed", "harvest_filled", "harvest_failed", "close_filled", "retry_close",
            "external_close", "resync"}  # fmt: skip
    assert used <= triggers

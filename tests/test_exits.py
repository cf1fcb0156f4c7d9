"""Exit evaluation as a whole: precedence, the smart filter's BLOCK, stale prices, stepping the machine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from statemachines import exits
from statemachines.machine import PositionMachine
from statemachines.snapshot import (
    DRAWDOWN,
    HARVEST,
    MANUAL,
    MARGIN_RATIO,
    MAX_HOLD,
    PANIC,
    SMART_EXIT,
    STALE_PRICE,
    STOP_LOSS,
    TAKE_PROFIT,
    TAKE_PROFIT_BLOCKED,
    TRAILING_ACTIVATED,
    TRAILING_STOP,
    Action,
)
from statemachines.stepper import entry_filled, harvest_filled, step
from tests.guardkit import NOW, OPENED_AT, config, market, position

CFG = config()
BULL_RSI = 75.0  # long: RSI > 70 -> smart CLOSE
BLOCK_RSI = 45.0  # long: RSI < 50 -> BLOCK


def everything_fires(**overrides: object) -> dict[str, object]:
    """A long at 100 marked at 102 (+2% net, fees 0) where every guard of the open state would fire."""
    state = {
        "close_request": "operator",
        "margin_ratio": 1.0,  # at or below 1.5
        "stop_price": 103.0,  # a stop above the price: hit
        "opened_at": NOW - 7_200,  # held two hours, limit one
        "peak_pnl_pct": 5.0,  # 2% now is a 60% giveback of a 5% peak
    }
    state.update(overrides)
    return state


def test_precedence_in_open_state_each_guard_shadows_the_next() -> None:
    """Remove the winning condition one at a time: the next guard in docs/design.md's order takes over."""
    snap = dict(price=102.0, rsi=BULL_RSI, macd=-1.0, signal=0.0)
    removals: list[tuple[str, dict[str, object], dict[str, object]]] = [
        (MANUAL, {}, {}),
        (MARGIN_RATIO, {"close_request": ""}, {}),
        (STOP_LOSS, {"margin_ratio": 0.0}, {}),
        (MAX_HOLD, {"stop_price": 90.0}, {}),
        (SMART_EXIT, {"opened_at": OPENED_AT}, {}),
        (TAKE_PROFIT, {}, {"rsi": None}),
        (DRAWDOWN, {}, {"take_profit_pct": 0}),
        (HARVEST, {"peak_pnl_pct": 2.0}, {}),
        (TRAILING_ACTIVATED, {"harvests_done": 1}, {}),
    ]
    fields = everything_fires()
    exit_over: dict[str, object] = {}
    for expected, field_change, other_change in removals:
        fields.update(field_change)
        for key, value in other_change.items():
            (snap if key in snap else exit_over)[key] = value  # type: ignore[index]
        decision = exits.evaluate(position(**fields), market(**snap), config(exits=exit_over))  # type: ignore[arg-type]
        assert decision.reason == expected, f"expected {expected}, got {decision}"


def test_panic_is_manual_and_outranks_risk() -> None:
    d = exits.evaluate(position(margin_ratio=1.0), market(100.0, panic=True), CFG)
    assert (d.action, d.reason) == (Action.CLOSE, PANIC)


def test_precedence_in_trailing_state() -> None:
    fields = {"stop_price": 103.0, "trail_stop": 102.5, "opened_at": NOW - 7_200}
    assert exits.evaluate(position(state="trailing", **fields), market(102.0), CFG).reason == STOP_LOSS
    fields["stop_price"] = 90.0
    assert exits.evaluate(position(state="trailing", **fields), market(102.0), CFG).reason == TRAILING_STOP
    fields["trail_stop"] = 101.0
    assert exits.evaluate(position(state="trailing", **fields), market(102.0), CFG).reason == MAX_HOLD


def test_trailing_state_has_no_take_profit_or_harvest() -> None:
    pos = position(state="trailing", trail_stop=90.0, peak_pnl_pct=5.0)
    d = exits.evaluate(pos, market(105.0), CFG)  # +5%: TP and harvest thresholds far exceeded
    assert d.action is Action.HOLD


def test_harvesting_state_keeps_only_protective_exits() -> None:
    pos = position(state="harvesting", peak_pnl_pct=5.0)
    assert exits.evaluate(pos, market(102.0, rsi=BULL_RSI), CFG).action is Action.HOLD  # no smart/TP/drawdown
    assert (
        exits.evaluate(position(state="harvesting", stop_price=99.0), market(99.0), CFG).reason == STOP_LOSS
    )
    assert (
        exits.evaluate(position(state="harvesting", close_request="x"), market(100.0), CFG).reason == MANUAL
    )


@pytest.mark.parametrize("state", ["opening", "closing", "closed"])
def test_no_exit_decisions_while_an_order_is_in_flight_or_after_close(state: str) -> None:
    pos = position(state=state, stop_price=101.0, close_request="x")
    assert exits.evaluate(pos, market(90.0, panic=True), CFG).action is Action.HOLD


# --- the smart filter's BLOCK ---


def test_block_turns_take_profit_into_trailing() -> None:
    d = exits.evaluate(position(), market(101.0, rsi=BLOCK_RSI), CFG)
    assert (d.action, d.reason) == (Action.ARM_TRAILING, TAKE_PROFIT_BLOCKED)
    pm = PositionMachine()
    pos = position()
    step(pm, pos, market(101.0, rsi=BLOCK_RSI), CFG)
    assert pos.state == "trailing"
    assert pos.trail_stop == pytest.approx(101.0 * 0.995)  # 0.5% behind, above breakeven (100)


def test_block_for_a_short_turns_take_profit_into_trailing() -> None:
    d = exits.evaluate(position(side="short"), market(99.0, rsi=55.0), CFG)  # short: RSI > 50 blocks
    assert (d.action, d.reason) == (Action.ARM_TRAILING, TAKE_PROFIT_BLOCKED)


def test_unblocked_take_profit_closes() -> None:
    d = exits.evaluate(position(), market(101.0, rsi=60.0, macd=0.0, signal=0.0), CFG)
    assert (d.action, d.reason) == (Action.CLOSE, TAKE_PROFIT)


@pytest.mark.parametrize(
    ("fields", "snap", "reason"),
    [
        ({"stop_price": 99.0}, {"price": 98.0}, STOP_LOSS),
        ({"margin_ratio": 1.2}, {"price": 100.0}, MARGIN_RATIO),
        ({"opened_at": NOW - 3_600}, {"price": 100.0}, MAX_HOLD),
        ({"close_request": "op"}, {"price": 100.0}, MANUAL),
    ],
)
def test_block_never_holds_back_protective_exits(fields: dict, snap: dict, reason: str) -> None:
    d = exits.evaluate(position(**fields), market(rsi=BLOCK_RSI, macd=1.0, signal=0.0, **snap), CFG)
    assert (d.action, d.reason) == (Action.CLOSE, reason)


def test_block_never_holds_back_a_trailing_stop_hit() -> None:
    pos = position(state="trailing", trail_stop=100.5)
    d = exits.evaluate(pos, market(100.4, rsi=BLOCK_RSI), CFG)
    assert d.reason == TRAILING_STOP


def test_block_holds_back_drawdown_and_harvest() -> None:
    drawdown = position(peak_pnl_pct=2.0)
    assert exits.evaluate(drawdown, market(100.5), CFG).reason == DRAWDOWN
    assert exits.evaluate(drawdown, market(100.5, rsi=BLOCK_RSI), CFG).action is Action.HOLD
    assert exits.evaluate(position(), market(100.7), CFG).action is Action.HARVEST
    assert exits.evaluate(position(), market(100.7, rsi=BLOCK_RSI), CFG).action is Action.HOLD


def test_smart_close_waits_for_profit_and_hold_time() -> None:
    bull = dict(rsi=BULL_RSI)
    assert exits.evaluate(position(), market(100.1, **bull), CFG).action is Action.HOLD  # +0.1% < 0.2%
    young = position(opened_at=NOW - 30)
    assert exits.evaluate(young, market(100.5, **bull), CFG).action is Action.HOLD  # held 30 s < 60 s
    assert exits.evaluate(position(), market(100.5, **bull), CFG).reason == SMART_EXIT


# --- stale prices ---


def test_no_decision_on_a_price_older_than_the_configured_age() -> None:
    pos = position(stop_price=99.0)
    assert exits.evaluate(pos, market(98.0, age=5.0), CFG).reason == STOP_LOSS  # exactly the limit: fresh
    stale = exits.evaluate(pos, market(98.0, age=5.001), CFG)
    assert stale.action is Action.HOLD and stale.reason == "stale_price"
    # and marks are not moved by a stale price either
    trailing = position(state="trailing", trail_stop=101.0)
    assert not exits.mark(trailing, market(110.0, age=6.0), CFG)
    assert trailing.trail_stop == 101.0


def test_stale_emergency_and_manual_close_still_act_without_a_fresh_price() -> None:
    assert exits.evaluate(position(), market(100.0, age=60.0), CFG).reason == STALE_PRICE
    assert exits.evaluate(position(close_request="op"), market(100.0, age=30.0), CFG).reason == MANUAL


# --- stepping the machine ---


def test_harvest_fires_once_not_every_tick() -> None:
    pm = PositionMachine()
    pos = position()
    decisions = [step(pm, pos, market(100.7), CFG) for _ in range(5)]
    assert [d.action for d in decisions].count(Action.HARVEST) == 1
    assert pos.state == "harvesting" and pos.harvests_done == 1
    harvest_filled(pm, pos, remaining=Decimal("0.5"), price=Decimal("100.7"), cfg=CFG)
    assert pos.state == "trailing" and pos.size == Decimal("0.5")
    later = [step(pm, pos, market(100.8), CFG) for _ in range(100)]
    assert all(d.action is not Action.HARVEST for d in later)


def test_failed_harvest_does_not_refire_unless_configured() -> None:
    pm = PositionMachine()
    pos = position()
    step(pm, pos, market(100.7), CFG)
    pm.fire(pos, "harvest_failed", reason="rejected")
    assert pos.state == "open"
    assert exits.evaluate(pos, market(100.7), CFG).action is Action.HOLD
    assert exits.evaluate(pos, market(100.7), config(exits={"max_harvests": 2})).action is Action.HARVEST


def test_harvest_fill_sets_stop_at_least_breakeven_plus_fees() -> None:
    cfg = config(exits={"fee_pct": 0.05, "trailing_breakeven": False})
    pm = PositionMachine()
    pos = position(state="harvesting")
    harvest_filled(pm, pos, remaining=Decimal("0.5"), price=Decimal("100.3"), cfg=cfg)
    assert pos.trail_stop == pytest.approx(100.1)  # 100.3 less 0.5% is below breakeven 100.1


def test_full_lifecycle_through_step() -> None:
    pm = PositionMachine(clock=lambda: NOW)
    pos = position(state="opening", opened_at=0.0, state_since=NOW)
    entry_filled(pm, pos, price=Decimal("100"), size=Decimal("2"), atr=0.5, cfg=CFG, now=NOW)
    assert (pos.state, pos.stop_price, pos.opened_at) == ("open", pytest.approx(99.0), NOW)
    path = [100.2, 100.5, 100.9]  # +0.9%: trailing activation at 0.8% (harvest 0.6% switched off)
    cfg = config(exits={"harvest_pct": 0})
    for price in path:
        step(pm, pos, market(price), cfg)
    assert pos.state == "trailing"
    for price in (101.5, 102.0, 101.8):
        step(pm, pos, market(price), cfg)
    assert pos.trail_stop == pytest.approx(102.0 * 0.995)
    d = step(pm, pos, market(101.4), cfg)
    assert (d.reason, pos.state, pos.exit_reason, pos.close_attempt) == (
        TRAILING_STOP,
        "closing",
        TRAILING_STOP,
        1,
    )
    pm.fire(pos, "close_filled", reason="exchange flat", price=101.4)
    assert pos.state == "closed" and pos.version == 4  # four transitions, no store
    assert set(pos.time_in) == {"opening", "open", "trailing", "closing"}

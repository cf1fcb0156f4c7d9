"""Each exit guard on its own: thresholds at their boundaries, long/short symmetry, pure functions."""

from __future__ import annotations

import pytest

from config.settings import ExitSettings, RiskSettings, SmartExitSettings
from statemachines import guards
from statemachines.snapshot import LIQUIDATION_DISTANCE, MANUAL, MARGIN_RATIO, PANIC, Signal
from tests.guardkit import EXITS, NOW, OPENED_AT, market, position

EX = ExitSettings(**EXITS)


# --- PnL, breakeven, stop placement ---


def test_net_pnl_is_net_of_round_trip_fees_for_both_sides() -> None:
    assert guards.net_pnl_pct(1, 100.0, 101.0, 0.0) == 1.0
    assert guards.net_pnl_pct(-1, 100.0, 99.0, 0.0) == 1.0
    assert guards.net_pnl_pct(1, 100.0, 101.0, 0.05) == pytest.approx(0.9)
    assert guards.net_pnl_pct(-1, 100.0, 101.0, 0.05) == pytest.approx(-1.1)


def test_breakeven_covers_both_fees() -> None:
    assert guards.breakeven_price(1, 100.0, 0.05) == pytest.approx(100.1)
    assert guards.breakeven_price(-1, 100.0, 0.05) == pytest.approx(99.9)
    assert guards.net_pnl_pct(1, 100.0, guards.breakeven_price(1, 100.0, 0.05), 0.05) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("atr", "dist_pct"),
    [
        (0.1, 0.5),  # 2 x 0.1 = 0.2% -> clamped up to the 0.5% minimum
        (0.5, 1.0),  # 2 x 0.5 = 1.0% -> inside the band
        (5.0, 3.0),  # 2 x 5 = 10% -> clamped down to the 3% maximum
        (None, 3.0),  # no ATR yet -> the widest allowed stop
    ],
)
def test_initial_stop_is_atr_based_and_clamped(atr: float | None, dist_pct: float) -> None:
    assert guards.initial_stop(1, 100.0, atr, EX) == pytest.approx(100.0 - dist_pct)
    assert guards.initial_stop(-1, 100.0, atr, EX) == pytest.approx(100.0 + dist_pct)


# --- 1. manual close / panic ---


def test_manual_close_and_panic() -> None:
    assert guards.manual_close(position(), market(100.0)) is None
    assert guards.manual_close(position(close_request="operator"), market(100.0)).reason == MANUAL
    assert guards.manual_close(position(), market(100.0, panic=True)).reason == PANIC
    # `scalper panic` asks each position to close (so that it holds through an engine restart): its exit
    # reason is panic, not manual (an outside read found panic closes booked as manual).
    assert guards.manual_close(position(close_request="panic"), market(100.0)).reason == PANIC


# --- 2. risk ---


def test_margin_ratio_boundary() -> None:
    risk = RiskSettings(min_margin_ratio=1.5)
    assert guards.risk_exit(position(margin_ratio=1.51), 100.0, risk) is None
    assert guards.risk_exit(position(margin_ratio=1.5), 100.0, risk).reason == MARGIN_RATIO
    assert guards.risk_exit(position(margin_ratio=0.0), 100.0, risk) is None  # 0 = not reported


@pytest.mark.parametrize(
    ("side", "liq", "safe", "unsafe"), [("long", 90.0, 91.0, 90.9), ("short", 110.0, 108.9, 109.0)]
)
def test_liquidation_distance_boundary_both_sides(side: str, liq: float, safe: float, unsafe: float) -> None:
    risk = RiskSettings(min_liq_distance_pct=1.0)
    pos = position(side=side, liq_price=liq)
    assert guards.risk_exit(pos, safe, risk) is None
    assert guards.risk_exit(pos, unsafe, risk).reason == LIQUIDATION_DISTANCE


def test_liquidation_price_beyond_mark_is_an_exit() -> None:
    risk = RiskSettings(min_liq_distance_pct=1.0)
    assert guards.risk_exit(position(liq_price=101.0), 100.0, risk).reason == LIQUIDATION_DISTANCE


def test_stale_emergency_boundary() -> None:
    risk = RiskSettings(max_price_age_s=5, stale_emergency_s=60)
    assert not guards.stale_emergency(59.999, risk)
    assert guards.stale_emergency(60.0, risk)
    assert not guards.stale_emergency(10_000.0, RiskSettings(max_price_age_s=5, stale_emergency_s=0))


# --- 3. stop loss ---


@pytest.mark.parametrize(
    ("side", "stop", "safe", "hit"), [("long", 98.0, 98.01, 98.0), ("short", 102.0, 101.99, 102.0)]
)
def test_stop_loss_boundary_both_sides(side: str, stop: float, safe: float, hit: float) -> None:
    pos = position(side=side, stop_price=stop)
    assert not guards.stop_loss_hit(pos, safe)
    assert guards.stop_loss_hit(pos, hit)
    assert guards.stop_loss_hit(pos, hit - 1 if side == "long" else hit + 1)  # gapped through


def test_unset_stop_never_hits() -> None:
    assert not guards.stop_loss_hit(position(stop_price=0.0), 0.01)


# --- 4. trailing stop ---


def test_ratchet_long_only_moves_up() -> None:
    level = guards.ratchet(1, 0.0, 102.0, 0.5)
    assert level == pytest.approx(101.49)
    assert guards.ratchet(1, level, 103.0, 0.5) == pytest.approx(102.485)  # price up: stop follows
    assert guards.ratchet(1, 102.485, 102.6, 0.5) == pytest.approx(102.485)  # price down: stop stays


def test_ratchet_short_only_moves_down_and_locks_profit() -> None:
    """The old bot's short trailing stop could never lock profit. Ours: entry 100, price falls to 97."""
    entry = 100.0
    stop = 0.0
    for price in (99.0, 98.0, 97.0, 97.5, 98.2):  # falls, then bounces
        stop = guards.ratchet(-1, stop, price, 0.5)
    assert stop == pytest.approx(97.485)  # set at the low (97 x 1.005), never raised by the bounce
    assert stop < entry  # a short's stop below entry is locked profit
    assert guards.net_pnl_pct(-1, entry, stop, 0.05) > 2.0
    pos = position(side="short", state="trailing", trail_stop=stop)
    assert not guards.trailing_hit(pos, 97.48)
    assert guards.trailing_hit(pos, 97.485)


def test_ratchet_long_locks_profit_mirror() -> None:
    stop = 0.0
    for price in (101.0, 102.0, 103.0, 102.5, 101.8):
        stop = guards.ratchet(1, stop, price, 0.5)
    assert stop == pytest.approx(102.485)
    assert guards.net_pnl_pct(1, 100.0, stop, 0.05) > 2.0


def test_ratchet_floor_is_breakeven_when_asked() -> None:
    floor = guards.breakeven_price(1, 100.0, 0.05)  # 100.1
    assert guards.ratchet(1, 0.0, 100.3, 0.5, floor) == pytest.approx(100.1)  # 99.7987 lifted to breakeven
    floor_s = guards.breakeven_price(-1, 100.0, 0.05)  # 99.9
    assert guards.ratchet(-1, 0.0, 99.7, 0.5, floor_s) == pytest.approx(99.9)


def test_trailing_hit_needs_an_armed_stop() -> None:
    assert not guards.trailing_hit(position(trail_stop=0.0), 1.0)


# --- 5. max holding time ---


def test_max_hold_boundary() -> None:
    ex = ExitSettings(**{**EXITS, "max_hold_s": 600})
    pos = position(opened_at=OPENED_AT)
    assert not guards.max_hold_exceeded(pos, OPENED_AT + 599.999, ex)
    assert guards.max_hold_exceeded(pos, OPENED_AT + 600, ex)
    assert not guards.max_hold_exceeded(pos, OPENED_AT + 10**6, ExitSettings(**{**EXITS, "max_hold_s": 0}))


# --- 6. smart exit, exactly as docs/design.md reads the seed ---

SM = SmartExitSettings()


@pytest.mark.parametrize(
    ("rsi", "macd", "signal", "expected"),
    [
        (70.01, 1.0, 0.0, Signal.CLOSE),  # overbought closes, whatever MACD says
        (70.0, 1.0, 0.0, Signal.BLOCK),  # 70 is not > 70: falls through to MACD above signal -> BLOCK
        (70.0, -1.0, 0.0, Signal.CLOSE),  # ... or MACD below signal -> CLOSE
        (49.99, -1.0, 0.0, Signal.BLOCK),  # below the middle blocks, even with a bearish MACD
        (50.0, -1.0, 0.0, Signal.CLOSE),  # 50 is not < 50: MACD decides
        (60.0, 0.5, 0.5, Signal.NONE),  # MACD on its signal: no opinion
        (60.0, None, None, Signal.NONE),  # MACD not warm yet
        (None, -1.0, 0.0, Signal.NONE),  # RSI not warm yet
    ],
)
def test_smart_signal_long(
    rsi: float | None, macd: float | None, signal: float | None, expected: Signal
) -> None:
    assert guards.smart_signal(1, market(100.0, rsi=rsi, macd=macd, signal=signal), SM) is expected


@pytest.mark.parametrize(
    ("rsi", "macd", "signal", "expected"),
    [
        (29.99, -1.0, 0.0, Signal.CLOSE),  # oversold closes a short
        (30.0, -1.0, 0.0, Signal.BLOCK),  # not < 30: MACD below signal is with the short -> BLOCK
        (30.0, 1.0, 0.0, Signal.CLOSE),  # MACD above signal is against it -> CLOSE
        (50.01, 1.0, 0.0, Signal.BLOCK),  # above the middle blocks
        (50.0, 1.0, 0.0, Signal.CLOSE),
        (40.0, 0.0, 0.0, Signal.NONE),
    ],
)
def test_smart_signal_short_mirrors_long(rsi: float, macd: float, signal: float, expected: Signal) -> None:
    assert guards.smart_signal(-1, market(100.0, rsi=rsi, macd=macd, signal=signal), SM) is expected


def test_smart_exit_can_be_switched_off() -> None:
    off = SmartExitSettings(enabled=False)
    assert guards.smart_signal(1, market(100.0, rsi=99.0, macd=-1, signal=0), off) is Signal.NONE


def test_smart_close_needs_min_profit_and_hold() -> None:
    cfg = SmartExitSettings(min_profit_pct=0.2, min_hold_s=60)
    assert guards.smart_close_allowed(0.2, 60, cfg)
    assert not guards.smart_close_allowed(0.19, 600, cfg)
    assert not guards.smart_close_allowed(5.0, 59.9, cfg)


# --- 7-9. take profit, drawdown, harvest; trailing activation ---


def test_take_profit_boundary_and_switch_off() -> None:
    assert guards.take_profit_reached(1.0, EX)
    assert not guards.take_profit_reached(0.99, EX)
    assert not guards.take_profit_reached(50.0, ExitSettings(**{**EXITS, "take_profit_pct": 0}))


def test_take_profit_is_net_of_fees() -> None:
    ex = ExitSettings(**{**EXITS, "fee_pct": 0.05})
    pnl = guards.net_pnl_pct(1, 100.0, 101.0, ex.fee_pct)  # gross 1.0%, net 0.9%
    assert not guards.take_profit_reached(pnl, ex)
    assert guards.take_profit_reached(guards.net_pnl_pct(1, 100.0, 101.1, ex.fee_pct), ex)


def test_drawdown_boundaries() -> None:
    # activation 0.4%, giveback 50% of the peak
    assert guards.drawdown_hit(1.0, 0.5, EX)
    assert not guards.drawdown_hit(1.0, 0.51, EX)
    assert guards.drawdown_hit(0.4, 0.2, EX)  # peak exactly at activation
    assert not guards.drawdown_hit(0.39, 0.0, EX)  # peak never reached activation


def test_harvest_boundary_and_count() -> None:
    assert guards.harvest_due(position(), 0.6, EX)
    assert not guards.harvest_due(position(), 0.59, EX)
    assert not guards.harvest_due(position(harvests_done=1), 5.0, EX)  # once by default
    two = ExitSettings(**{**EXITS, "max_harvests": 2})
    assert guards.harvest_due(position(harvests_done=1), 0.6, two)
    assert not guards.harvest_due(position(), 5.0, ExitSettings(**{**EXITS, "max_harvests": 0}))


def test_trailing_activation_boundary() -> None:
    assert guards.trailing_due(0.8, EX)
    assert not guards.trailing_due(0.79, EX)


def test_guards_are_pure() -> None:
    pos = position(stop_price=99.0, trail_stop=99.5, state="trailing")
    before = pos.to_hash()
    snap = market(98.0, rsi=80.0, macd=-1.0, signal=0.0)
    guards.stop_loss_hit(pos, snap.price)
    guards.trailing_hit(pos, snap.price)
    guards.smart_signal(pos.sign, snap, SM)
    guards.max_hold_exceeded(pos, NOW, EX)
    guards.risk_exit(pos, snap.price, RiskSettings())
    assert pos.to_hash() == before

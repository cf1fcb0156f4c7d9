"""The report's figures against values computed by hand on a small run of four trades.

    start 2022-01-01 00:00 UTC, balance 1,000; the run lasts 3 days
    A long  BTC  01:00 -> 01:30  gross +30 fees -2           net +28  take_profit
    B short BTC  02:00 -> 03:00  gross -50 fees -2 funding -1 net -53  stop_loss
    C long  ETH  02:30 -> 03:30  gross +10 fees -1           net  +9  take_profit
    D short ETH  day 2 01:00 -> 02:00  gross +60 fees -2     net +58  max_hold_time
    equity (realized at exits): 1000, 1028, 975, 984, 1042
"""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from reports import breakdown
from reports.drawdown import max_drawdown
from reports.metrics import exposure_pct, profit_factor, summarize
from reports.report import as_dict, build
from reports.trades import EquityPoint, OpenPosition, RunResult, Trade

T0 = 1640995200.0  # 2022-01-01 00:00 UTC
H = 3600.0
DAY = 86400.0


def trade(pid: str, symbol: str, side: str, entry: float, exit_: float, gross: str, fees: str, reason: str,
          funding: str = "0", time_in: dict[str, float] | None = None) -> Trade:  # fmt: skip
    return Trade(pid, symbol, side, T0 + entry, T0 + exit_, D("100"), D("101"), D("1"), D("0.01"), reason,
                 D(gross), D(fees), D(funding), time_in or {})  # fmt: skip


TRADES = [
    trade("A", "BTC-USDT-SWAP", "long", 1 * H, 1.5 * H, "30", "-2", "take_profit",
          time_in={"opening": 10.0, "open": 1780.0, "closing": 10.0}),
    trade("B", "BTC-USDT-SWAP", "short", 2 * H, 3 * H, "-50", "-2", "stop_loss", funding="-1",
          time_in={"opening": 20.0, "open": 3560.0, "closing": 20.0}),
    trade("C", "ETH-USDT-SWAP", "long", 2.5 * H, 3.5 * H, "10", "-1", "take_profit",
          time_in={"opening": 10.0, "open": 1000.0, "trailing": 2580.0, "closing": 10.0}),
    trade("D", "ETH-USDT-SWAP", "short", DAY + 1 * H, DAY + 2 * H, "60", "-2", "max_hold_time",
          time_in={"opening": 10.0, "open": 3580.0, "closing": 10.0}),
]  # fmt: skip
EQUITY = [EquityPoint(T0 + ts, eq) for ts, eq in
          ((1.5 * H, 1028.0), (3 * H, 975.0), (3.5 * H, 984.0), (DAY + 2 * H, 1042.0))]  # fmt: skip


def the_run(trades: list[Trade] = TRADES, equity: list[EquityPoint] = EQUITY, days: float = 3.0,
            **kw: object) -> RunResult:  # fmt: skip
    return RunResult(trades, equity, D("1000"), T0, T0 + days * DAY, **kw)  # type: ignore[arg-type]


def test_the_money_figures_are_exact_sums_with_net_after_fees_and_funding() -> None:
    s = summarize(the_run())
    assert (s.trades, s.wins, s.losses, s.win_rate_pct) == (4, 3, 1, 75.0)
    assert s.net_pnl == D("42") and s.gross_pnl == D("50") and s.fees == D("-7") and s.funding == D("-1")
    assert s.net_pct == pytest.approx(4.2)
    assert s.expectancy == D("10.5") and s.expectancy_pct == pytest.approx(1.05)
    assert s.profit_factor == pytest.approx(95 / 53)  # (28 + 9 + 58) / 53
    assert (s.best.position_id, s.worst.position_id) == ("D", "B")  # type: ignore[union-attr]
    assert (s.longs, s.shorts) == (2, 2)
    assert s.final_balance == D("1042")


def test_max_drawdown_has_its_amount_percent_and_dates() -> None:
    dd = summarize(the_run()).drawdown
    assert dd.amount == pytest.approx(53.0)  # 1028 -> 975
    assert dd.pct == pytest.approx(53 / 1028 * 100)
    assert (dd.peak_ts, dd.trough_ts, dd.recovery_ts) == (T0 + 1.5 * H, T0 + 3 * H, T0 + DAY + 2 * H)


def test_a_drawdown_not_made_good_by_the_end_is_not_recovered() -> None:
    curve = [EquityPoint(0, 100.0), EquityPoint(1, 120.0), EquityPoint(2, 90.0), EquityPoint(3, 119.0)]
    dd = max_drawdown(curve)
    assert (dd.peak_ts, dd.trough_ts, dd.recovery_ts) == (1, 2, None)
    assert dd.pct == pytest.approx(25.0)


def test_the_worst_fall_is_the_largest_in_percent_of_its_peak() -> None:
    # 200 -> 180 loses more money (20) than 50 -> 40 (10), but 10 % against 20 %.
    curve = [EquityPoint(0, 50.0), EquityPoint(1, 40.0), EquityPoint(2, 200.0), EquityPoint(3, 180.0)]
    dd = max_drawdown(curve)
    assert (dd.amount, dd.pct, dd.peak_ts, dd.trough_ts, dd.recovery_ts) == (10.0, 20.0, 0, 1, 2)


def test_sharpe_sortino_and_calmar_from_daily_utc_returns_annualised_with_365_days() -> None:
    r = summarize(the_run()).ratios
    # UTC day closes: day 1 984, day 2 1042, day 3 1042 (no trade), after the starting 1000.
    returns = [984 / 1000 - 1, 1042 / 984 - 1, 0.0]
    mean = sum(returns) / 3
    stdev = math.sqrt(sum((x - mean) ** 2 for x in returns) / 2)
    downside = math.sqrt(sum(min(x, 0) ** 2 for x in returns) / 3)
    cagr = (1042 / 1000) ** (365 / 3) - 1
    assert r.days == 3
    assert r.sharpe == pytest.approx(mean / stdev * math.sqrt(365))
    assert r.sortino == pytest.approx(mean / downside * math.sqrt(365))
    assert r.cagr_pct == pytest.approx(cagr * 100)
    assert r.calmar == pytest.approx(cagr / (53 / 1028))
    assert round(r.sharpe, 4) == 6.9289  # type: ignore[arg-type]  # 0.014314 / 0.039469 × 19.105


def test_holding_time_and_exposure() -> None:
    s = summarize(the_run())
    assert s.avg_holding_s == pytest.approx((1800 + 3600 * 3) / 4) and s.median_holding_s == 3600
    # A, then B and C overlapping (02:00-03:30), then D: 1800 + 5400 + 3600 s of 3 days.
    assert s.exposure_pct == pytest.approx(10800 / (3 * DAY) * 100)


def test_a_position_open_at_the_end_counts_in_exposure_and_in_the_balance() -> None:
    still = OpenPosition("E", "BTC-USDT-SWAP", "long", "open", T0 + 3 * DAY - H, D("100"), D("1"), D("0"),
                         D("-0.75"))  # fmt: skip
    s = summarize(the_run(open_positions=[still]))
    assert s.exposure_pct == pytest.approx((10800 + 3600) / (3 * DAY) * 100)
    assert s.open_positions == 1 and s.open_realized == D("-0.75")
    assert s.final_balance == D("1041.25") and s.net_pnl == D("42")  # the trades' net stays the trades'
    assert exposure_pct([], [still], T0, T0 + 3 * DAY) == pytest.approx(3600 / (3 * DAY) * 100)


def test_a_run_without_trades_reports_zeros_and_n_a_without_dividing_by_zero() -> None:
    report = build(the_run(trades=[], equity=[]))
    s = report.summary
    assert (s.trades, s.net_pnl, s.win_rate_pct, s.profit_factor, s.expectancy) == (0, D(0), None, None, None)
    assert (s.drawdown.amount, s.drawdown.trough_ts, s.exposure_pct) == (0.0, None, 0.0)
    assert (s.ratios.sharpe, s.ratios.sortino, s.ratios.calmar) == (None, None, None)
    assert (s.avg_holding_s, s.best, s.worst) == (None, None, None)
    data = as_dict(report)["summary"]
    assert data["profit_factor"] is None and data["sharpe"] is None and data["max_drawdown"]["recovered"]
    assert report.by_exit_reason == [] and [r.total_s for r in report.time_per_state] == [0.0] * 5


def test_all_winners_have_an_infinite_profit_factor_shown_as_such() -> None:
    winners = [t for t in TRADES if t.net_pnl > 0]
    report = build(the_run(trades=winners))
    assert report.summary.profit_factor == math.inf
    assert as_dict(report)["summary"]["profit_factor"] == "inf"
    assert profit_factor([]) is None and profit_factor([D("0")]) is None


def test_returns_with_no_spread_have_no_sharpe_and_no_losing_day_no_sortino() -> None:
    # +25 % every day, exactly (floats hold these): no spread, no downside, no drawdown.
    curve = [EquityPoint(T0 + DAY * k, eq) for k, eq in ((1, 1250.0), (2, 1562.5), (3, 1953.125))]
    r = summarize(the_run(equity=curve)).ratios
    assert r.days == 3 and r.cagr_pct is not None
    assert (r.sharpe, r.sortino, r.calmar) == (None, None, None)


def test_a_run_shorter_than_two_days_has_no_ratios() -> None:
    r = summarize(the_run(trades=TRADES[:3], equity=EQUITY[:3], days=1.9)).ratios
    assert (r.sharpe, r.sortino, r.calmar, r.cagr_pct) == (None, None, None, None)


def test_tables_by_exit_reason_side_and_symbol() -> None:
    rows = {r.key: r for r in breakdown.by_exit_reason(TRADES)}
    assert [r.key for r in breakdown.by_exit_reason(TRADES)] == ["take_profit", "max_hold_time", "stop_loss"]
    tp = rows["take_profit"]
    assert (tp.trades, tp.wins, tp.win_rate_pct, tp.net_pnl, tp.avg_net, tp.share_pct) == (
        2, 2, 100.0, D("37"), D("18.5"), 50.0)  # fmt: skip
    assert (rows["stop_loss"].net_pnl, rows["stop_loss"].win_rate_pct) == (D("-53"), 0.0)
    sides = {r.key: (r.trades, r.net_pnl) for r in breakdown.by_side(TRADES)}
    assert sides == {"long": (2, D("37")), "short": (2, D("5"))}
    symbols = {r.key: (r.trades, r.net_pnl, r.wins) for r in breakdown.by_symbol(TRADES)}
    assert symbols == {"BTC-USDT-SWAP": (2, D("-25"), 1), "ETH-USDT-SWAP": (2, D("67"), 2)}


def test_time_per_state_sums_the_trades_and_averages_over_all_of_them() -> None:
    rows = {r.state: r for r in breakdown.time_per_state(TRADES)}
    assert list(rows) == ["opening", "open", "harvesting", "trailing", "closing"]
    assert rows["open"].total_s == 1780 + 3560 + 1000 + 3580
    assert rows["trailing"].total_s == 2580 and rows["trailing"].mean_s == 2580 / 4
    assert rows["harvesting"].total_s == 0
    whole = sum(r.total_s for r in rows.values())
    assert rows["closing"].share_pct == pytest.approx(50 / whole * 100)

"""The report's files and its terminal output: same input, same bytes; offline HTML; 100 columns."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from rich.console import Console

from reports.files import equity_csv, report_json, trades_csv, write_all
from reports.html import render_html, thin
from reports.metrics import equity_curve
from reports.report import build
from reports.terminal import render
from reports.trades import RunResult
from tests.test_report_metrics import EQUITY, T0, TRADES, the_run


def _prices() -> dict[str, tuple[list[float], list[float]]]:
    ts = [T0 + 60 * i for i in range(3 * 1440)]
    return {"BTC-USDT-SWAP": (ts, [100 + (i % 50) * 0.1 for i in range(len(ts))])}


def test_identical_input_gives_identical_bytes_whatever_order_it_came_in(tmp_path: Path) -> None:
    one = the_run(meta={"data": "a.csv", "bars": "4320"}, prices=_prices())
    # The same run built again: trades and equity in another order, meta keys in another order, and
    # Decimals that are equal but written otherwise (1E+2 is 100) where the value is the same.
    two = replace(one, trades=list(reversed([replace(t, entry_price=D("1E+2")) for t in TRADES])),
                  equity=list(reversed(EQUITY)), meta={"bars": "4320", "data": "a.csv"})  # fmt: skip
    write_all(build(one), tmp_path / "one")
    write_all(build(two), tmp_path / "two")
    for name in ("trades.csv", "equity.csv", "report.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_trades_csv_holds_what_a_trader_needs_with_exact_decimals_and_utc_times() -> None:
    text = trades_csv(build(the_run()).run.trades)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["position_id"] for r in rows] == ["A", "B", "C", "D"]  # by exit time
    b = rows[1]
    assert b == {
        "position_id": "B", "symbol": "BTC-USDT-SWAP", "side": "short",
        "entry_time": "2022-01-01T02:00:00.000Z", "entry_ts": "1641002400.000",
        "exit_time": "2022-01-01T03:00:00.000Z", "exit_ts": "1641006000.000",
        "entry_price": "100", "exit_price": "101", "size": "1", "exit_reason": "stop_loss",
        "gross_pnl": "-50", "fees": "-2", "funding": "-1", "net_pnl": "-53", "holding_s": "3600.000",
    }  # fmt: skip
    assert "\r" not in text and text.endswith("\n")


def test_a_trade_whose_exit_price_is_unknown_has_an_empty_cell() -> None:
    text = trades_csv([replace(TRADES[0], exit_price=None)])
    assert next(iter(csv.DictReader(io.StringIO(text))))["exit_price"] == ""


def test_equity_csv_has_the_drawdown_at_every_point() -> None:
    text = equity_csv(equity_curve(the_run()))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0] == {"ts": "1640995200.000", "time": "2022-01-01T00:00:00.000Z", "equity": "1000.00",
                       "drawdown": "0.00", "drawdown_pct": "0.0000"}  # the starting balance at the start
    assert [r["drawdown"] for r in rows] == ["0.00", "0.00", "-53.00", "-44.00", "0.00"]
    assert rows[2]["drawdown_pct"] == "-5.1556"


def test_report_json_holds_every_figure_and_table_in_a_fixed_order() -> None:
    data = json.loads(report_json(build(the_run())))
    assert list(data) == ["source", "start", "end", "meta", "summary", "by_exit_reason", "by_side",
                          "by_symbol", "time_per_state", "open_positions"]  # fmt: skip
    s = data["summary"]
    assert list(s)[:2] == ["net_pnl", "net_pct"]  # net after fees first
    assert (s["net_pnl"], s["gross_pnl"], s["fees"], s["funding"]) == ("42", "50", "-7", "-1")
    assert s["max_drawdown"] == {"amount": "53.00", "pct": 5.155642, "peak": "2022-01-01T01:30:00.000Z",
                                 "trough": "2022-01-01T03:00:00.000Z", "recovery": "2022-01-02T02:00:00.000Z",
                                 "recovered": True}  # fmt: skip
    assert data["by_exit_reason"][0] == {"key": "take_profit", "trades": 2, "wins": 2, "win_rate_pct": 100.0,
                                         "net_pnl": "37", "avg_net": "18.5", "share_pct": 50.0}  # fmt: skip


def test_report_html_works_offline_with_every_chart(tmp_path: Path) -> None:
    page = render_html(build(the_run(prices=_prices())))
    scripts = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert scripts and not [s for s in scripts if "src=" in s.lower()], scripts  # every script inline
    assert not re.search(r"<link\b[^>]*href=[\"']?(https?:)?//", page, flags=re.I)  # no remote stylesheet
    assert not re.search(r"@import\s+url\(", page)
    assert "Plotly.newPlot" in page and page.count("plotly.js v") == 1  # the library inlined once
    charts = ("Equity (USDT) and drawdown", "BTC-USDT-SWAP: price, entries and exits", "Net PnL per trade")
    assert all(chart in page for chart in charts)
    assert "By exit reason" in page and "Time per state" in page
    assert len(page.encode()) < 6_000_000


def test_long_series_are_thinned_keeping_their_extremes() -> None:
    xs = list(range(100_000))
    ys = [0.0] * 100_000
    ys[31_337], ys[77_777] = 5.0, -5.0
    tx, ty = thin(xs, ys, buckets=500)
    assert len(tx) <= 2000 and tx == sorted(tx)
    assert (31_337, 5.0) in zip(tx, ty, strict=True) and (77_777, -5.0) in zip(tx, ty, strict=True)
    assert tx[0] == 0 and tx[-1] == 99_999


def test_the_terminal_report_fits_100_columns_and_leads_with_net_after_fees() -> None:
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    render(build(the_run()), console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.index("Net PnL after fees and funding") < text.index("Gross PnL")
    assert "+42.00 USDT" in text and "-7.00" in text and "53.00 (5.16 %)" in text
    for title in ("By exit reason", "By side", "By symbol", "Time per state"):
        assert title in text
    assert "…" not in text  # nothing cut off


def test_the_terminal_report_of_no_trade_and_of_all_winners(tmp_path: Path) -> None:
    for run in (the_run(trades=[], equity=[]), the_run(trades=[t for t in TRADES if t.net_pnl > 0])):
        console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
        render(build(run), console)
        text = console.export_text()
        if run.trades:
            assert "∞ (no loser)" in text
        else:
            assert "Win rate       n/a" in text and "Sharpe         n/a" in text
        write_all(build(run), tmp_path / str(len(run.trades)))  # and the files, without a division by zero


def test_money_is_shown_to_the_cent() -> None:
    run = RunResult([replace(TRADES[0], gross_pnl=D("30.004999"))], [], D("1000"), T0, T0 + 3600)
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    render(build(run), console)
    assert "+28.00 USDT" in console.export_text()

"""The report in a terminal (rich): a summary panel, net after fees first, then the tables. Fits 100
columns; money to the cent."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from decimal import Decimal

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from reports.breakdown import GroupRow, StateRow
from reports.fmt import duration, money, pct, ratio, when
from reports.metrics import Summary
from reports.ratios import DAY_S, MIN_DAYS
from reports.report import Report
from reports.trades import Trade

WIDTH = 100


def console() -> Console:
    """A console on stdout: the terminal's width, or `WIDTH` when the output goes to a file or a pipe."""
    return Console(width=None if sys.stdout.isatty() else WIDTH)


def render(report: Report, console: Console, *, tables: bool = True) -> None:
    console.print(summary_panel(report))
    if not tables or not report.run.trades:
        return
    console.print(_groups("By exit reason", "exit reason", report.by_exit_reason))
    console.print(_groups("By side", "side", report.by_side))
    console.print(_groups("By symbol", "symbol", report.by_symbol))
    console.print(_states(report.time_per_state))


def summary_panel(report: Report) -> Panel:
    s, run = report.summary, report.run
    ccy = "USDT"
    head = Text()
    head.append("Net PnL after fees and funding  ", style="bold")
    head.append(f"{money(s.net_pnl, sign=True)} {ccy}", style=f"bold {_tone(s.net_pnl)}")
    head.append(f"  ({pct(s.net_pct, sign=True)} of {money(s.starting_balance)})")
    grid = Table.grid(padding=(0, 1), expand=True)
    for _ in range(2):
        grid.add_column(style="dim", no_wrap=True, min_width=14)
        grid.add_column(no_wrap=True, ratio=1)
    dd = s.drawdown
    r = s.ratios
    wins = f" ({s.wins} of {s.trades})" if s.trades else ""
    rows = [
        ("Gross PnL", money(s.gross_pnl, sign=True), "Fees", money(s.fees, sign=True)),
        ("Funding", money(s.funding, sign=True), "Trades", f"{s.trades} ({s.longs} long, {s.shorts} short)"),
        ("Win rate", pct(s.win_rate_pct) + wins, "Profit factor", _profit_factor(s)),
        ("Expectancy", f"{money(s.expectancy, sign=True)} a trade ({pct(s.expectancy_pct, sign=True)})",
         "Exposure", pct(s.exposure_pct)),
        ("Max drawdown", f"{money(dd.amount)} ({pct(dd.pct)})", "Recovered", _recovery(s)),
        ("Sharpe", ratio(r.sharpe), "Sortino", ratio(r.sortino)),
        ("Calmar", ratio(r.calmar), "Daily returns", f"{r.days} UTC days"),
        ("Avg holding", duration(s.avg_holding_s), "Median holding", duration(s.median_holding_s)),
        ("Best trade", _trade(s.best), "Worst trade", _trade(s.worst)),
        ("Balance", f"{money(s.starting_balance)} → {money(s.final_balance)}", "Open at end", _open(s)),
    ]  # fmt: skip
    for row in rows:
        grid.add_row(*row)
    body: list[Text | Table] = [head, Text(""), grid]
    if dd.trough_ts is not None:
        body.append(Text(f"Max drawdown from its peak on {when(dd.peak_ts)} to its trough on "
                         f"{when(dd.trough_ts)}", style="dim"))  # fmt: skip
    if run.end_ts - run.start_ts < MIN_DAYS * DAY_S:
        body.append(Text(f"Sharpe, Sortino and Calmar need a run of {MIN_DAYS:g} days or more.", style="dim"))
    title = f"{run.source} · {when(run.start_ts)} → {when(run.end_ts)}"
    return Panel(Group(*body), title=title, title_align="left", width=WIDTH, box=box.ROUNDED)


def _groups(title: str, label: str, rows: Sequence[GroupRow]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column(label, no_wrap=True)
    for name in ("trades", "win rate", "net PnL", "avg net", "% of trades"):
        table.add_column(name, justify="right", no_wrap=True)
    for g in rows:
        table.add_row(g.key, str(g.trades), pct(g.win_rate_pct),
                      Text(money(g.net_pnl, sign=True), style=_tone(g.net_pnl)),
                      money(g.avg_net, sign=True), pct(g.share_pct))  # fmt: skip
    return table


def _states(rows: Sequence[StateRow]) -> Table:
    table = Table(title="Time per state", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("state", no_wrap=True)
    for name in ("total", "mean per trade", "share"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row.state, duration(row.total_s), duration(row.mean_s), pct(row.share_pct))
    return table


def _tone(x: Decimal) -> str:
    return "green" if x > 0 else "red" if x < 0 else ""


def _profit_factor(s: Summary) -> str:
    if s.profit_factor == float("inf"):
        return "∞ (no loser)"
    return ratio(s.profit_factor)


def _trade(t: Trade | None) -> str:
    return "n/a" if t is None else f"{money(t.net_pnl, sign=True)} {t.side} {t.exit_reason}"


def _recovery(s: Summary) -> str:
    dd = s.drawdown
    if dd.trough_ts is None:
        return "no drawdown"
    return when(dd.recovery_ts) if dd.recovery_ts is not None else "not recovered"


def _open(s: Summary) -> str:
    if not s.open_positions:
        return "none"
    return f"{s.open_positions}, realized {money(s.open_realized, sign=True)}"

"""A run's report: its summary and tables (`build`), and the same as plain data for report.json (`as_dict`).

In the plain data, money is a string holding the exact Decimal (as the trades carry it, so nothing is lost
to float; the drawdown's amount, measured on the equity curve, to the cent); ratios and percentages are
numbers rounded to 6 decimals, an infinite ratio is the string "inf", a figure that cannot be measured is
null, and times are ISO-8601 UTC. Keys keep one order, the one below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from reports.breakdown import GroupRow, StateRow, by_exit_reason, by_side, by_symbol, time_per_state
from reports.drawdown import Drawdown
from reports.fmt import cents, decimal_text, iso
from reports.metrics import Summary, summarize
from reports.trades import OpenPosition, RunResult, Trade


@dataclass(frozen=True, slots=True)
class Report:
    run: RunResult
    summary: Summary
    by_exit_reason: list[GroupRow]
    by_side: list[GroupRow]
    by_symbol: list[GroupRow]
    time_per_state: list[StateRow]


def build(run: RunResult) -> Report:
    trades = sorted(run.trades, key=lambda t: (t.exit_ts, t.position_id))
    run = replace(run, trades=trades)
    return Report(run, summarize(run), by_exit_reason(trades), by_side(trades), by_symbol(trades),
                  time_per_state(trades))  # fmt: skip


def as_dict(report: Report) -> dict[str, Any]:
    s, run = report.summary, report.run
    r = s.ratios
    return {
        "source": run.source,
        "start": iso(run.start_ts),
        "end": iso(run.end_ts),
        "meta": dict(run.meta),
        "summary": {
            "net_pnl": _money(s.net_pnl),
            "net_pct": _num(s.net_pct),
            "gross_pnl": _money(s.gross_pnl),
            "fees": _money(s.fees),
            "funding": _money(s.funding),
            "starting_balance": _money(s.starting_balance),
            "final_balance": _money(s.final_balance),
            "trades": s.trades,
            "wins": s.wins,
            "losses": s.losses,
            "win_rate_pct": _num(s.win_rate_pct),
            "profit_factor": _num(s.profit_factor),
            "expectancy": _money(s.expectancy),
            "expectancy_pct": _num(s.expectancy_pct),
            "max_drawdown": _drawdown(s.drawdown),
            "sharpe": _num(r.sharpe),
            "sortino": _num(r.sortino),
            "calmar": _num(r.calmar),
            "cagr_pct": _num(r.cagr_pct),
            "daily_returns": r.days,
            "avg_holding_s": _num(s.avg_holding_s),
            "median_holding_s": _num(s.median_holding_s),
            "exposure_pct": _num(s.exposure_pct),
            "best_trade": _trade_ref(s.best),
            "worst_trade": _trade_ref(s.worst),
            "longs": s.longs,
            "shorts": s.shorts,
            "open_positions": s.open_positions,
            "open_realized": _money(s.open_realized),
        },
        "by_exit_reason": [_group(g) for g in report.by_exit_reason],
        "by_side": [_group(g) for g in report.by_side],
        "by_symbol": [_group(g) for g in report.by_symbol],
        "time_per_state": [_state(row) for row in report.time_per_state],
        "open_positions": [_open(p) for p in run.open_positions],
    }


def _money(x: Decimal | None) -> str | None:
    return None if x is None else decimal_text(x)


def _num(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return round(x, 6)


def _drawdown(dd: Drawdown) -> dict[str, Any]:
    return {
        "amount": decimal_text(cents(dd.amount)),
        "pct": _num(dd.pct),
        "peak": iso(dd.peak_ts) if dd.peak_ts is not None else None,
        "trough": iso(dd.trough_ts) if dd.trough_ts is not None else None,
        "recovery": iso(dd.recovery_ts) if dd.recovery_ts is not None else None,
        "recovered": dd.recovery_ts is not None or dd.trough_ts is None,
    }


def _trade_ref(t: Trade | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"position_id": t.position_id, "symbol": t.symbol, "side": t.side, "exit": iso(t.exit_ts),
            "exit_reason": t.exit_reason, "net_pnl": _money(t.net_pnl)}  # fmt: skip


def _group(g: GroupRow) -> dict[str, Any]:
    return {"key": g.key, "trades": g.trades, "wins": g.wins, "win_rate_pct": _num(g.win_rate_pct),
            "net_pnl": _money(g.net_pnl), "avg_net": _money(g.avg_net),
            "share_pct": _num(g.share_pct)}  # fmt: skip


def _state(row: StateRow) -> dict[str, Any]:
    return {"state": row.state, "total_s": _num(row.total_s), "mean_s": _num(row.mean_s),
            "share_pct": _num(row.share_pct)}  # fmt: skip


def _open(p: OpenPosition) -> dict[str, Any]:
    return {"position_id": p.position_id, "symbol": p.symbol, "side": p.side, "state": p.state,
            "entry": iso(p.entry_ts), "entry_price": _money(p.entry_price), "size": _money(p.size),
            "realized_pnl": _money(p.realized_pnl), "fees": _money(p.fees), "funding": _money(p.funding),
            "realized": _money(p.realized)}  # fmt: skip

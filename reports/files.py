"""The report's files in `--out DIR`: trades.csv, equity.csv, report.json and report.html.

The same input gives the same bytes in trades.csv, equity.csv and report.json: rows by exit time then
position id, a fixed column and key order, money as the exact Decimal text, times as ISO-8601 UTC to the
millisecond and epoch seconds with three decimals, "\\n" line ends.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from reports.drawdown import underwater
from reports.fmt import cents, decimal_text, iso
from reports.html import render_html
from reports.metrics import equity_curve
from reports.report import Report, as_dict
from reports.trades import EquityPoint, Trade

TRADE_COLUMNS = (
    "position_id",
    "symbol",
    "side",
    "entry_time",
    "entry_ts",
    "exit_time",
    "exit_ts",
    "entry_price",
    "exit_price",
    "size",
    "exit_reason",
    "gross_pnl",
    "fees",
    "funding",
    "net_pnl",
    "holding_s",
)
EQUITY_COLUMNS = ("ts", "time", "equity", "drawdown", "drawdown_pct")


def write_all(report: Report, out_dir: Path) -> list[Path]:
    """Write the four files into `out_dir` (made if missing); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "trades.csv": trades_csv(report.run.trades),
        "equity.csv": equity_csv(equity_curve(report.run)),
        "report.json": report_json(report),
        "report.html": render_html(report),
    }
    paths = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8", newline="")
        paths.append(path)
    return paths


def trades_csv(trades: Sequence[Trade]) -> str:
    rows = sorted(trades, key=lambda t: (t.exit_ts, t.position_id))
    return _csv(
        TRADE_COLUMNS,
        (
            [
                t.position_id,
                t.symbol,
                t.side,
                iso(t.entry_ts),
                _epoch(t.entry_ts),
                iso(t.exit_ts),
                _epoch(t.exit_ts),
                decimal_text(t.entry_price),
                "" if t.exit_price is None else decimal_text(t.exit_price),
                decimal_text(t.size),
                t.exit_reason,
                decimal_text(t.gross_pnl),
                decimal_text(t.fees),
                decimal_text(t.funding),
                decimal_text(t.net_pnl),
                f"{t.holding_s:.3f}",
            ]
            for t in rows
        ),
    )


def equity_csv(curve: Sequence[EquityPoint]) -> str:
    """Equity and its drawdown (money below the running peak, and in % of it) at every point."""
    below = underwater(curve)
    return _csv(
        EQUITY_COLUMNS,
        (
            [_epoch(p.ts), iso(p.ts), _cents(p.equity), _cents(dd), f"{round(dd_pct, 4) + 0.0:.4f}"]
            for p, (dd, dd_pct) in zip(curve, below, strict=True)
        ),
    )


def report_json(report: Report) -> str:
    data = as_dict(report)
    data["meta"] = dict(sorted(data["meta"].items()))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _cents(x: float) -> str:
    return format(cents(x), "f")


def _epoch(ts: float) -> str:
    return f"{ts:.3f}"


def _csv(header: Sequence[str], rows: object) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)  # type: ignore[arg-type]
    return buf.getvalue()

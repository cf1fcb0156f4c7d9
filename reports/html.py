"""report.html: one file that a browser reads offline. Plotly's JavaScript is inlined once (no CDN, no
network); the charts are the equity curve with its drawdown, each symbol's price with the entries and exits
marked, and the distribution of the trades' net PnL; the summary and the tables follow as HTML tables.

Long series are thinned for size (`thin`): each of at most `MAX_POINTS` buckets keeps its first, lowest,
highest and last point, so peaks, troughs and gaps survive. The trades' markers are never thinned.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from reports.breakdown import GroupRow, StateRow
from reports.drawdown import underwater
from reports.fmt import duration, money, pct, ratio, when
from reports.metrics import equity_curve
from reports.report import Report
from reports.trades import Trade

MAX_POINTS = 1000  # buckets per series: 4 points at most in each
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 40}, "height": 420}


def thin(
    xs: Sequence[float], ys: Sequence[float], buckets: int = MAX_POINTS
) -> tuple[list[float], list[float]]:
    """At most 4 × `buckets` points of (xs, ys): per bucket the first, lowest, highest and last, in order."""
    n = len(xs)
    if n <= 4 * buckets:
        return list(xs), list(ys)
    keep: set[int] = set()
    step = n / buckets
    for b in range(buckets):
        lo, hi = int(b * step), min(n, int((b + 1) * step))
        if lo >= hi:
            continue
        part = range(lo, hi)
        keep.update((lo, hi - 1, min(part, key=ys.__getitem__), max(part, key=ys.__getitem__)))
    idx = sorted(keep)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def render_html(report: Report) -> str:
    run = report.run
    title = f"scalper report: {run.source}, {when(run.start_ts)} to {when(run.end_ts)}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            body_html(report),
            "</body>",
            "</html>",
            "",
        ]
    )


def body_html(report: Report, *, include_plotlyjs: bool = True, id_prefix: str = "chart") -> str:
    """The report's sections without the page around them: another page (the optimisation report) embeds
    them, with plotly.js included once by that page."""
    figures = [_equity_figure(report), *_price_figures(report), _pnl_figure(report)]
    charts = [
        pio.to_html(
            fig, include_plotlyjs=include_plotlyjs and i == 0, full_html=False, div_id=f"{id_prefix}{i}",
            config={"displaylogo": False},
        )
        for i, fig in enumerate(figures)
    ]
    return "\n".join(
        [
            _summary_html(report),
            *charts,
            _groups_html("By exit reason", "exit reason", report.by_exit_reason),
            _groups_html("By side", "side", report.by_side),
            _groups_html("By symbol", "symbol", report.by_symbol),
            _states_html(report.time_per_state),
            _meta_html(report),
        ]
    )


def _dates(ts: Sequence[float]) -> list[str]:
    return [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") for t in ts]


def _equity_figure(report: Report) -> go.Figure:
    curve = equity_curve(report.run)
    ts = [p.ts for p in curve]
    eq_x, eq_y = thin(ts, [p.equity for p in curve])
    below = underwater(curve)
    dd_x, dd_y = thin(ts, [pct_ for _, pct_ in below])
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05)
    fig.add_trace(
        go.Scatter(x=_dates(eq_x), y=eq_y, name="equity", line={"color": "#1f77b4", "shape": "hv"}),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=_dates(dd_x), y=dd_y, name="drawdown %", fill="tozeroy", line={"color": "#d62728"}),
        row=2,
        col=1,
    )
    fig.update_layout(**(_LAYOUT | {"height": 520}), title="Equity (USDT) and drawdown (% below its peak)")
    return fig


def _price_figures(report: Report) -> list[go.Figure]:
    figures = []
    trades = report.run.trades
    for symbol in sorted(report.run.prices):
        ts, prices = report.run.prices[symbol]
        px_x, px_y = thin(ts, prices)
        fig = go.Figure(go.Scatter(x=_dates(px_x), y=px_y, name="price", line={"color": "#7f7f7f"}))
        mine = [t for t in trades if t.symbol == symbol]
        for side, symbol_shape, color in (
            ("long", "triangle-up", "#2ca02c"),
            ("short", "triangle-down", "#d62728"),
        ):
            entries = [t for t in mine if t.side == side]
            fig.add_trace(
                go.Scatter(
                    x=_dates([t.entry_ts for t in entries]),
                    y=[float(t.entry_price) for t in entries],
                    mode="markers",
                    name=f"{side} entry",
                    marker={"symbol": symbol_shape, "size": 10, "color": color},
                    text=[t.position_id for t in entries],
                )
            )
        exits = [t for t in mine if t.exit_price is not None]
        fig.add_trace(
            go.Scatter(
                x=_dates([t.exit_ts for t in exits]),
                y=[float(t.exit_price or 0) for t in exits],
                mode="markers",
                name="exit",
                marker={"symbol": "x", "size": 9, "color": "#000000"},
                text=[f"{t.position_id} {t.exit_reason} {money(t.net_pnl, sign=True)}" for t in exits],
            )
        )
        fig.update_layout(**_LAYOUT, title=f"{symbol}: price, entries and exits")
        figures.append(fig)
    return figures


def _pnl_figure(report: Report) -> go.Figure:
    nets = [float(t.net_pnl) for t in report.run.trades]
    fig = go.Figure(
        go.Histogram(
            x=nets, nbinsx=min(60, max(10, len(nets) // 3)), name="trades", marker={"color": "#1f77b4"}
        )
    )
    fig.update_layout(
        **_LAYOUT,
        title="Net PnL per trade (USDT): how many trades made how much",
        xaxis_title="net PnL",
        yaxis_title="trades",
        bargap=0.05,
    )
    return fig


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_html(report: Report) -> str:
    s = report.summary
    dd, r = s.drawdown, s.ratios
    recovered = "no drawdown" if dd.trough_ts is None else when(dd.recovery_ts) or "not recovered"
    rows = [
        ("Net PnL after fees and funding", f"{money(s.net_pnl, sign=True)} ({pct(s.net_pct, sign=True)})"),
        ("Gross PnL", money(s.gross_pnl, sign=True)),
        ("Fees", money(s.fees, sign=True)),
        ("Funding", money(s.funding, sign=True)),
        ("Trades", f"{s.trades} ({s.longs} long, {s.shorts} short)"),
        ("Win rate", pct(s.win_rate_pct)),
        ("Profit factor", ratio(s.profit_factor)),
        ("Expectancy", f"{money(s.expectancy, sign=True)} a trade ({pct(s.expectancy_pct, sign=True)})"),
        ("Max drawdown", f"{money(dd.amount)} ({pct(dd.pct)})"),
        ("Drawdown peak / trough / recovery", f"{when(dd.peak_ts)} / {when(dd.trough_ts)} / {recovered}"),
        ("Sharpe / Sortino / Calmar", f"{ratio(r.sharpe)} / {ratio(r.sortino)} / {ratio(r.calmar)}"),
        ("Average / median holding", f"{duration(s.avg_holding_s)} / {duration(s.median_holding_s)}"),
        ("Exposure", pct(s.exposure_pct)),
        ("Best / worst trade", f"{_trade(s.best)} / {_trade(s.worst)}"),
        ("Balance", f"{money(s.starting_balance)} → {money(s.final_balance)}"),
        (
            "Open at the end",
            f"{s.open_positions}, realized {money(s.open_realized, sign=True)}"
            if s.open_positions
            else "none",
        ),
    ]
    return _table("Summary", ("figure", "value"), rows)


def _trade(t: Trade | None) -> str:
    return "n/a" if t is None else f"{money(t.net_pnl, sign=True)} ({t.position_id})"


def _groups_html(title: str, label: str, rows: Sequence[GroupRow]) -> str:
    return _table(
        title,
        (label, "trades", "win rate", "net PnL", "avg net", "% of trades"),
        [
            (
                g.key,
                str(g.trades),
                pct(g.win_rate_pct),
                money(g.net_pnl, sign=True),
                money(g.avg_net, sign=True),
                pct(g.share_pct),
            )
            for g in rows
        ],
    )


def _states_html(rows: Sequence[StateRow]) -> str:
    return _table(
        "Time per state",
        ("state", "total", "mean per trade", "share"),
        [(r.state, duration(r.total_s), duration(r.mean_s), pct(r.share_pct)) for r in rows],
    )


def _meta_html(report: Report) -> str:
    return _table("Run", ("setting", "value"), sorted(report.run.meta.items()))


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:right}"
    "td:first-child,th:first-child{text-align:left}h2{margin-top:1.5em}"
)

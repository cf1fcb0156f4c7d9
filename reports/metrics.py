"""The summary figures of a run: pure functions of its trades and equity curve.

Money is summed in Decimal (the quote currency, USDT); ratios and percentages are floats. Definitions, as
the README's "Reading the report" tells them:

- a trade **wins** when its net PnL (after fees and funding) is above 0, loses below 0 (0 is neither);
  the win rate is wins / trades;
- **net PnL** = gross PnL + fees + funding (fees and funding negative when paid);
- **profit factor** = the winners' net / the losers' net, as a positive number: inf with winners and no
  loser, None ("n/a") with neither;
- **expectancy** = net PnL / trades (what a trade made on average), also in % of the starting balance;
- **max drawdown**, **Sharpe**, **Sortino**, **Calmar**: reports/drawdown.py and reports/ratios.py;
- **holding time**: from the entry fill to the last closing fill, average and median;
- **exposure** = the share of the run's time with at least one position open (the union of the trades'
  holding intervals, and of the positions still open at the end up to the end, clipped to the run).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from reports.drawdown import Drawdown, max_drawdown
from reports.ratios import Ratios, ratios
from reports.trades import EquityPoint, OpenPosition, RunResult, Trade

ZERO = Decimal(0)
INF = float("inf")


@dataclass(frozen=True, slots=True)
class Summary:
    trades: int
    wins: int
    losses: int
    win_rate_pct: float | None  # None: no trade
    net_pnl: Decimal
    gross_pnl: Decimal
    fees: Decimal
    funding: Decimal
    net_pct: float | None  # net PnL in % of the starting balance
    profit_factor: float | None  # inf: winners and no loser
    expectancy: Decimal | None
    expectancy_pct: float | None  # of the starting balance
    drawdown: Drawdown
    ratios: Ratios
    avg_holding_s: float | None
    median_holding_s: float | None
    exposure_pct: float
    best: Trade | None
    worst: Trade | None
    longs: int
    shorts: int
    starting_balance: Decimal
    final_balance: Decimal  # starting balance + net PnL + what the open positions realized already
    open_positions: int
    open_realized: Decimal  # fees (and harvests) of the positions still open: already in the balance


def summarize(run: RunResult) -> Summary:
    trades = run.trades
    nets = [t.net_pnl for t in trades]
    net = sum(nets, ZERO)
    start = run.starting_balance
    curve = equity_curve(run)
    dd = max_drawdown(curve)
    holding = [t.holding_s for t in trades]
    open_realized = sum((p.realized for p in run.open_positions), ZERO)
    expectancy = net / len(trades) if trades else None
    return Summary(
        trades=len(trades),
        wins=sum(1 for n in nets if n > 0),
        losses=sum(1 for n in nets if n < 0),
        win_rate_pct=100.0 * sum(1 for n in nets if n > 0) / len(trades) if trades else None,
        net_pnl=net,
        gross_pnl=sum((t.gross_pnl for t in trades), ZERO),
        fees=sum((t.fees for t in trades), ZERO),
        funding=sum((t.funding for t in trades), ZERO),
        net_pct=_pct(net, start),
        profit_factor=profit_factor(nets),
        expectancy=expectancy,
        expectancy_pct=_pct(expectancy, start) if expectancy is not None else None,
        drawdown=dd,
        ratios=ratios(curve, float(start), run.start_ts, run.end_ts, dd.pct),
        avg_holding_s=statistics.fmean(holding) if holding else None,
        median_holding_s=statistics.median(holding) if holding else None,
        exposure_pct=exposure_pct(trades, run.open_positions, run.start_ts, run.end_ts),
        best=max(trades, key=lambda t: (t.net_pnl, -t.exit_ts)) if trades else None,
        worst=min(trades, key=lambda t: (t.net_pnl, t.exit_ts)) if trades else None,
        longs=sum(1 for t in trades if t.side == "long"),
        shorts=sum(1 for t in trades if t.side == "short"),
        starting_balance=start,
        final_balance=start + net + open_realized,
        open_positions=len(run.open_positions),
        open_realized=open_realized,
    )


def profit_factor(nets: Sequence[Decimal]) -> float | None:
    won = sum((n for n in nets if n > 0), ZERO)
    lost = -sum((n for n in nets if n < 0), ZERO)
    if lost == 0:
        return INF if won > 0 else None
    return float(won / lost)


def equity_curve(run: RunResult) -> list[EquityPoint]:
    """The run's equity points, starting with the starting balance at its start (unless a point is there)."""
    curve = sorted(run.equity, key=lambda p: p.ts)
    if not curve or curve[0].ts > run.start_ts:
        curve.insert(0, EquityPoint(run.start_ts, float(run.starting_balance)))
    return curve


def exposure_pct(trades: Sequence[Trade], still_open: Sequence[OpenPosition], start_ts: float,
                 end_ts: float) -> float:  # fmt: skip
    span = end_ts - start_ts
    if span <= 0:
        return 0.0
    intervals = sorted(
        [(max(t.entry_ts, start_ts), min(t.exit_ts, end_ts)) for t in trades]
        + [(max(p.entry_ts, start_ts), end_ts) for p in still_open]
    )
    covered, reach = 0.0, start_ts
    for a, b in intervals:
        a = max(a, reach)
        if b > a:
            covered += b - a
            reach = b
    return 100.0 * covered / span


def _pct(part: Decimal, whole: Decimal) -> float | None:
    return float(part / whole * 100) if whole > 0 else None

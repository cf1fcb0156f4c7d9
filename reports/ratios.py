"""Risk-adjusted returns, as QuantStats and Freqtrade's users read them.

Daily returns come from the equity curve resampled to UTC days: each day's equity is the last point at or
before its end (carried forward over a day without points), the day before the first is the starting
balance, and a day's return is its equity over the previous day's, minus 1. Crypto trades every day, so
ratios are annualised with 365 days and the risk-free rate is 0.

    Sharpe   = mean(daily returns) / stdev(daily returns, ddof 1) × √365
    Sortino  = mean(daily returns) / downside deviation × √365,
               downside deviation = √(Σ min(r, 0)² / number of days)          (QuantStats' definition)
    CAGR     = (final equity / starting balance) ^ (365 / run days) − 1
    Calmar   = CAGR / max drawdown (as a fraction of its peak)

A ratio that cannot be measured is None ("n/a" in the report), never a division by zero: a run shorter
than `MIN_DAYS` (too few days to speak of a daily spread), returns with no spread (Sharpe), no losing day
(Sortino), no drawdown (Calmar), or an account that went to zero.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from reports.trades import EquityPoint

DAY_S = 86400.0
PERIODS_PER_YEAR = 365
MIN_DAYS = 2.0  # a shorter run has no ratios


@dataclass(frozen=True, slots=True)
class Ratios:
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    cagr_pct: float | None
    days: int  # daily returns measured


def daily_equity(curve: Sequence[EquityPoint], start_ts: float, end_ts: float) -> list[tuple[float, float]]:
    """(midnight UTC ending the day, equity then) for every UTC day from `start_ts`'s to `end_ts`'s; the
    last day ends at `end_ts` instead. Points by time; before the first point, equity is the first's."""
    if not curve or end_ts < start_ts:
        return []
    out = []
    i, equity = 0, curve[0].equity
    day_end = (math.floor(start_ts / DAY_S) + 1) * DAY_S
    while True:
        cut = min(day_end, end_ts)
        while i < len(curve) and curve[i].ts <= cut:
            equity = curve[i].equity
            i += 1
        out.append((cut, equity))
        if day_end >= end_ts:
            return out
        day_end += DAY_S


def daily_returns(curve: Sequence[EquityPoint], starting_balance: float, start_ts: float,
                  end_ts: float) -> list[float]:  # fmt: skip
    returns, before = [], starting_balance
    for _, equity in daily_equity(curve, start_ts, end_ts):
        if before <= 0:
            return []  # the account is gone: no return is defined after it
        returns.append(equity / before - 1.0)
        before = equity
    return returns


def ratios(curve: Sequence[EquityPoint], starting_balance: float, start_ts: float, end_ts: float,
           max_drawdown_pct: float) -> Ratios:  # fmt: skip
    days = (end_ts - start_ts) / DAY_S
    returns = daily_returns(curve, starting_balance, start_ts, end_ts)
    if days < MIN_DAYS or len(returns) < 2:
        return Ratios(None, None, None, None, len(returns))
    mean = statistics.fmean(returns)
    spread = statistics.stdev(returns)
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    root = math.sqrt(PERIODS_PER_YEAR)
    final = curve[-1].equity if curve else starting_balance
    growth = final / starting_balance if starting_balance > 0 else 0.0
    cagr = growth ** (PERIODS_PER_YEAR / days) - 1.0 if growth > 0 else None
    return Ratios(
        sharpe=mean / spread * root if spread > 0 else None,
        sortino=mean / downside * root if downside > 0 else None,
        calmar=cagr / (max_drawdown_pct / 100.0) if cagr is not None and max_drawdown_pct > 0 else None,
        cagr_pct=cagr * 100.0 if cagr is not None else None,
        days=len(returns),
    )

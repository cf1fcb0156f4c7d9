"""Drawdown of an equity curve: how far equity fell below its running peak, and the worst such fall.

The maximum drawdown is the largest fall from a running peak **in percent of that peak** (as QuantStats and
most tear sheets state it); its amount is the money lost in that same fall. Its dates: the peak it fell
from, the trough it reached, and the recovery, the first point after the trough back at or above the peak
(None: not recovered by the end of the run). A tie keeps the earlier fall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reports.trades import EquityPoint


@dataclass(frozen=True, slots=True)
class Drawdown:
    amount: float  # money, >= 0
    pct: float  # percent of the peak, >= 0
    peak_ts: float | None  # None: the curve never fell
    trough_ts: float | None
    recovery_ts: float | None  # None: not recovered (or never fell)


NONE = Drawdown(0.0, 0.0, None, None, None)


def underwater(curve: Sequence[EquityPoint]) -> list[tuple[float, float]]:
    """(amount, pct) below the running peak at each point of `curve`: 0 at a new high, negative below."""
    out = []
    peak = float("-inf")
    for point in curve:
        peak = max(peak, point.equity)
        below = point.equity - peak
        out.append((below, below / peak * 100.0 if peak > 0 else 0.0))
    return out


def max_drawdown(curve: Sequence[EquityPoint]) -> Drawdown:
    """The worst fall of `curve` (points by time), with its peak, trough and recovery times."""
    worst: tuple[float, float, EquityPoint, int] | None = None  # pct, amount, its peak, the trough's index
    peak: EquityPoint | None = None
    for i, point in enumerate(curve):
        if peak is None or point.equity > peak.equity:
            peak = point
            continue
        fall = peak.equity - point.equity
        pct = fall / peak.equity * 100.0 if peak.equity > 0 else 100.0
        if fall > 0 and (worst is None or pct > worst[0]):
            worst = (pct, fall, peak, i)
    if worst is None:
        return NONE
    pct, fall, top, trough = worst
    recovered = next((p.ts for p in curve[trough + 1 :] if p.equity >= top.equity), None)
    return Drawdown(fall, pct, top.ts, curve[trough].ts, recovered)

"""In-sample against out-of-sample: does a trial's result hold on data the study never saw?

Money figures are compared per day (the two windows differ in length); ratios as they are. A figure
"disagrees" when it turns from a gain to a loss, keeps less than half of its in-sample size, or (a drawdown)
more than doubles. Over every trial, the rank correlation of in-sample and out-of-sample says whether a
better in-sample result predicted a better out-of-sample one at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PER_DAY = ("net_pnl", "net_pct")


def _rate(m: dict[str, Any], name: str) -> float | None:
    x = m.get(name)
    if x is None:
        return None
    if name in PER_DAY:
        days = max((m["end"] - m["start"]) / 86400.0, 1 / 24)
        return float(x) / days
    return float(x)


def disagreement(ins: dict[str, Any], outs: dict[str, Any] | None, name: str) -> str | None:
    """Why the out-of-sample `name` does not confirm the in-sample one, or None when it does."""
    if not outs:
        return None
    a, b = _rate(ins, name), _rate(outs, name)
    if a is None or b is None:
        return f"{name} cannot be measured {'in' if a is None else 'out of'} sample"
    unit = " a day" if name in PER_DAY else ""
    if name == "max_drawdown":
        return f"drawdown {a:.2f} % → {b:.2f} %" if b > 2 * max(a, 0.01) else None
    if a >= 0 > b:
        return f"{name} {a:,.2f}{unit} in sample, {b:,.2f}{unit} out of sample: a loss"
    if a > 0 and b < 0.5 * a:
        return f"{name} {a:,.2f}{unit} in sample, {b:,.2f}{unit} out of sample: less than half"
    return None


def rank_correlation(pairs: list[tuple[float, float]]) -> float | None:
    """Spearman's rho of (in-sample, out-of-sample) over the trials; None with fewer than 3 or no spread."""
    if len(pairs) < 3:
        return None
    a, b = _ranks([p[0] for p in pairs]), _ranks([p[1] for p in pairs])
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: list[float]) -> np.ndarray:
    """Ranks with ties sharing their mean rank (equal results must not look ordered)."""
    x = np.asarray(values, dtype=float)
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    for v in np.unique(x):
        ranks[x == v] = ranks[x == v].mean()
    return ranks

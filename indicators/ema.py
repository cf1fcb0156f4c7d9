"""Incremental exponential moving average: O(1) state, O(1) work per value."""

from __future__ import annotations

from typing import Literal

Seed = Literal["sma", "first"]


class Ema:
    """EMA with alpha = 2 / (period + 1).

    seed="sma" (default, StockCharts / Stock.Indicators convention): the first value is the simple
    mean of the first `period` inputs.  seed="first" (pandas ``ewm(adjust=False)``, used by the `ta`
    library): the recurrence starts at the first input; the value is still hidden until `period`
    inputs were seen (pandas ``min_periods``).  Both converge; "first" exists to check recurrences
    against `ta` exactly.
    """

    __slots__ = ("_a", "_acc", "_k", "_kv", "_n", "_period", "_seed_first", "_v")

    def __init__(self, period: int, seed: Seed = "sma") -> None:
        if period < 1:
            raise ValueError("period must be >= 1")
        if seed not in ("sma", "first"):
            raise ValueError(f"unknown seed {seed!r}")
        self._period = period
        self._seed_first = seed == "first"
        self._a = 2.0 / (period + 1)
        self._k = 1.0 - self._a
        self._n = 0  # inputs seen during warm-up (not counted afterwards: nothing may grow)
        self._acc = 0.0  # warm-up accumulator: running sum ("sma") or running EMA ("first")
        self._v: float | None = None
        # k * v cached at commit time: a peek is then one multiply-add, and update uses the very
        # same expression, so peek(x) followed by update(x) returns bit-identical results.
        self._kv = 0.0

    @property
    def period(self) -> int:
        return self._period

    @property
    def value(self) -> float | None:
        """Last committed EMA, None until `period` values were committed."""
        return self._v

    def update(self, x: float) -> float | None:
        """Commit a closed value; returns the new EMA (None while warming up)."""
        if self._v is not None:
            v = self._v = self._kv + self._a * x
            self._kv = self._k * v
            return v
        return self._warmup(x, True)

    def peek(self, x: float) -> float | None:
        """EMA if `x` were the next committed value; state is not changed."""
        if self._v is not None:
            return self._kv + self._a * x
        return self._warmup(x, False)

    def _warmup(self, x: float, commit: bool) -> float | None:
        n = self._n + 1
        if not self._seed_first:
            acc = self._acc + x
        elif n == 1:
            acc = x
        else:
            acc = self._k * self._acc + self._a * x
        if n < self._period:
            if commit:
                self._n = n
                self._acc = acc
            return None
        v = acc if self._seed_first else acc / self._period
        if commit:
            self._n = n
            self._v = v
            self._kv = self._k * v
        return v

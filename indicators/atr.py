"""Incremental Wilder ATR: O(1) state, O(1) work per candle."""

from __future__ import annotations


class Atr:
    """Average True Range with Wilder smoothing: atr = (atr_prev * (n - 1) + tr) / n.

    True range = max(high, prev_close) - min(low, prev_close).  By default the first bar's TR is
    its high - low and the first ATR is the mean of the first `period` TRs (Wilder, `ta` library).
    skip_first_bar=True makes the first bar only provide the previous close, so TRs start with the
    second bar (Stock.Indicators and TA-Lib convention; the two converge as (1 - 1/n)^k).
    """

    __slots__ = ("_base", "_m", "_n", "_period", "_prev", "_skip_first", "_sum", "_v")

    def __init__(self, period: int = 14, skip_first_bar: bool = False) -> None:
        if period < 1:
            raise ValueError("period must be >= 1")
        self._period = period
        self._m = period - 1
        self._skip_first = skip_first_bar
        self._n = 0  # bars seen during warm-up only
        self._sum = 0.0
        self._prev: float | None = None  # previous committed close
        self._base = 0.0  # atr * (period - 1), cached at commit so peek shares update's math
        self._v: float | None = None

    @property
    def period(self) -> int:
        return self._period

    @property
    def value(self) -> float | None:
        """Last committed ATR, None until warm."""
        return self._v

    def update(self, high: float, low: float, close: float) -> float | None:
        """Commit a closed candle; returns the new ATR (None while warming up)."""
        if self._v is not None:
            pc = self._prev
            tr = (high if high > pc else pc) - (low if low < pc else pc)  # type: ignore[operator]
            v = self._v = (self._base + tr) / self._period
            self._base = v * self._m
            self._prev = close
            return v
        return self._warmup(high, low, close, True)

    def peek(self, high: float, low: float, close: float) -> float | None:
        """ATR if this candle were committed next; state is not changed."""
        if self._v is not None:
            pc = self._prev
            tr = (high if high > pc else pc) - (low if low < pc else pc)  # type: ignore[operator]
            return (self._base + tr) / self._period
        return self._warmup(high, low, close, False)

    def _warmup(self, high: float, low: float, close: float, commit: bool) -> float | None:
        pc = self._prev
        if pc is None:
            if self._skip_first:
                if commit:
                    self._prev = close
                return None
            tr = high - low
        else:
            tr = (high if high > pc else pc) - (low if low < pc else pc)
        n = self._n + 1
        total = self._sum + tr
        v = total / self._period if n >= self._period else None
        if commit:
            self._n, self._sum, self._prev = n, total, close
            if v is not None:
                self._v = v
                self._base = v * self._m
        return v

"""Incremental Wilder RSI: O(1) state, O(1) work per close."""

from __future__ import annotations

from indicators.ema import Seed


class Rsi:
    """Relative Strength Index with Wilder smoothing (alpha = 1 / period).

    seed="sma" (default, Wilder / Stock.Indicators): the first average gain/loss is the simple mean
    of the first `period` changes, so the first RSI comes with close number period + 1.
    seed="first" (`ta` library: ``ewm(alpha=1/n, adjust=False)`` on gains whose first element is 0):
    averages start at 0 on the first close and the first RSI comes with close number `period`.
    A zero average loss gives 100 (both references do the same).
    """

    __slots__ = ("_a", "_ag", "_agk", "_al", "_alk", "_k", "_n", "_period", "_prev", "_seed_first", "_v")

    def __init__(self, period: int = 14, seed: Seed = "sma") -> None:
        if period < 1:
            raise ValueError("period must be >= 1")
        if seed not in ("sma", "first"):
            raise ValueError(f"unknown seed {seed!r}")
        self._period = period
        self._seed_first = seed == "first"
        self._a = 1.0 / period
        self._k = 1.0 - self._a
        self._n = 0  # closes seen during warm-up only
        self._prev = 0.0  # previous committed close
        self._ag = 0.0  # warm-up: sum ("sma") or running average ("first") of gains
        self._al = 0.0
        # k * avg cached at commit: a peek is one multiply-add per side, identical to update's math.
        self._agk = 0.0
        self._alk = 0.0
        self._v: float | None = None

    @property
    def period(self) -> int:
        return self._period

    @property
    def value(self) -> float | None:
        """Last committed RSI (0..100), None until warm."""
        return self._v

    def update(self, close: float) -> float | None:
        """Commit a closed candle's close; returns the new RSI (None while warming up)."""
        if self._v is not None:
            d = close - self._prev
            if d > 0.0:
                g = self._agk + self._a * d
                lo = self._alk
            else:
                g = self._agk
                lo = self._alk - self._a * d
            self._prev = close
            self._agk = self._k * g
            self._alk = self._k * lo
            v = self._v = 100.0 * g / (g + lo) if lo > 0.0 else 100.0
            return v
        return self._warmup(close, True)

    def peek(self, close: float) -> float | None:
        """RSI if `close` were the next committed close; state is not changed."""
        if self._v is not None:
            d = close - self._prev
            if d > 0.0:
                g = self._agk + self._a * d
                lo = self._alk
            else:
                g = self._agk
                lo = self._alk - self._a * d
            return 100.0 * g / (g + lo) if lo > 0.0 else 100.0
        return self._warmup(close, False)

    def _warmup(self, close: float, commit: bool) -> float | None:
        n = self._n + 1
        ag, al = self._ag, self._al
        if n > 1:
            d = close - self._prev
            gain = d if d > 0.0 else 0.0
            loss = -d if d < 0.0 else 0.0
            if self._seed_first:
                ag = self._k * ag + self._a * gain
                al = self._k * al + self._a * loss
            else:
                ag += gain
                al += loss
        warm_at = self._period if self._seed_first else self._period + 1
        if n < warm_at:
            if commit:
                self._n, self._prev, self._ag, self._al = n, close, ag, al
            return None
        if not self._seed_first:
            ag /= self._period
            al /= self._period
        v = 100.0 * ag / (ag + al) if al > 0.0 else 100.0
        if commit:
            self._n, self._prev, self._ag, self._al = n, close, ag, al
            self._agk = self._k * ag
            self._alk = self._k * al
            self._v = v
        return v

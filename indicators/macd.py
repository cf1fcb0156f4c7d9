"""Incremental MACD built from three O(1) EMAs."""

from __future__ import annotations

from indicators.ema import Ema, Seed


class Macd:
    """MACD line = EMA(fast) - EMA(slow); signal = EMA(signal) of the MACD line.

    The signal EMA is fed from the first close on which the slow EMA is warm, so with the default
    seed it is the simple mean of the first `signal` MACD values.  Results are
    (macd, signal, histogram) tuples, None until the signal line is warm.
    """

    __slots__ = ("_fast", "_last", "_signal", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9, seed: Seed = "sma") -> None:
        if fast >= slow:
            raise ValueError("fast period must be shorter than slow period")
        self._fast = Ema(fast, seed)
        self._slow = Ema(slow, seed)
        self._signal = Ema(signal, seed)
        self._last: tuple[float, float, float] | None = None

    @property
    def value(self) -> tuple[float, float, float] | None:
        """Last committed (macd, signal, histogram), None until warm."""
        return self._last

    @property
    def fast_ema(self) -> float | None:
        return self._fast.value

    @property
    def slow_ema(self) -> float | None:
        return self._slow.value

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Commit a closed candle's close."""
        fast, slow, signal = self._fast, self._slow, self._signal
        if signal._v is not None:
            # Warm (every candle after the warm-up): the three EMA updates inlined, the same arithmetic as
            # Ema.update (as in peek below).
            f = fast._v = fast._kv + fast._a * close
            fast._kv = fast._k * f
            s = slow._v = slow._kv + slow._a * close
            slow._kv = slow._k * s
            m = f - s
            sig = signal._v = signal._kv + signal._a * m
            signal._kv = signal._k * sig
            out = self._last = (m, sig, m - sig)
            return out
        f = self._fast.update(close)
        s = self._slow.update(close)
        if s is None or f is None:
            return None
        m = f - s
        sig = self._signal.update(m)
        if sig is None:
            return None
        out = self._last = (m, sig, m - sig)
        return out

    def peek(self, close: float) -> tuple[float, float, float] | None:
        """What update(close) would return; state is not changed."""
        fast, slow, signal = self._fast, self._slow, self._signal
        if signal._v is not None:
            # Warm (every tick after the warm-up): the three EMA peeks inlined, a third of an indicator
            # update on the tick path (live and backtest). Same arithmetic as Ema.peek.
            m = fast._kv + fast._a * close - (slow._kv + slow._a * close)
            sig = signal._kv + signal._a * m
            return (m, sig, m - sig)
        f = self._fast.peek(close)
        s = self._slow.peek(close)
        if s is None or f is None:
            return None
        m = f - s
        sig = self._signal.peek(m)
        if sig is None:
            return None
        return (m, sig, m - sig)

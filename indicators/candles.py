"""Tick -> fixed-interval OHLC candles, kept on a gap-free time grid."""

from __future__ import annotations

from dataclasses import dataclass

_NEG_INF = float("-inf")


@dataclass(slots=True)
class Candle:
    start_ts: float
    open: float
    high: float
    low: float
    close: float


class CandleBuilder:
    """Builds candles of `interval_s` seconds from (ts, price) ticks.

    Timestamps are seconds (float); a candle covers [start_ts, start_ts + interval_s).  Intervals
    without ticks become flat candles at the previous close, so indicators fed from here always see
    one candle per interval; at most `max_gap_fill` are emitted per gap (the most recent ones, so the
    grid stays contiguous with the new candle) and the rest are counted in `gap_skipped`.
    Ticks older than the forming candle are counted in `late_ticks` and otherwise ignored.
    """

    __slots__ = (
        "_last_close",
        "_next_start",
        "forming",
        "forming_end",
        "gap_skipped",
        "interval_s",
        "late_ticks",
        "max_gap_fill",
    )

    def __init__(self, interval_s: int = 60, max_gap_fill: int = 500) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if max_gap_fill < 0:
            raise ValueError("max_gap_fill must be >= 0")
        self.interval_s = interval_s
        self.max_gap_fill = max_gap_fill
        self.forming: Candle | None = None
        # End of the forming candle; -inf while there is none so the hot path needs one compare.
        self.forming_end = _NEG_INF
        self.late_ticks = 0
        self.gap_skipped = 0
        self._last_close: float | None = None  # close of the last closed candle
        self._next_start: float | None = None  # first start allowed after the last closed candle

    def on_tick(self, ts: float, price: float) -> list[Candle]:
        """Add a tick; returns the candles it closed (usually none), oldest first."""
        if ts < self.forming_end:
            f = self.forming
            if ts >= f.start_ts:  # type: ignore[union-attr]
                f.close = price  # type: ignore[union-attr]
                if price > f.high:  # type: ignore[union-attr]
                    f.high = price  # type: ignore[union-attr]
                elif price < f.low:  # type: ignore[union-attr]
                    f.low = price  # type: ignore[union-attr]
            else:
                self.late_ticks += 1
            return []
        return self._roll(ts, price)

    def resume_after(self, start_ts: float, close: float) -> list[Candle] | None:
        """Record an already-closed candle (e.g. history) instead of ticks.

        Returns the flat candles needed to fill a gap before it (the caller commits those, then its
        own candle), or None if the candle is not after the last closed one (ignore it).
        Must not be called while a candle is forming.
        """
        if self.forming is not None:
            raise RuntimeError("resume_after() while a candle is forming")
        iv = self.interval_s
        start = start_ts - start_ts % iv
        nxt = self._next_start
        if nxt is not None and start < nxt:
            return None
        out = self._fill(nxt, start) if nxt is not None else []
        self._last_close = close
        self._next_start = start + iv
        return out

    def _roll(self, ts: float, price: float) -> list[Candle]:
        f = self.forming
        if f is not None:
            closed = [f]
            self._last_close = f.close
            nxt = self.forming_end
        else:
            nxt = self._next_start
            if nxt is not None and ts < nxt:
                self.late_ticks += 1
                return []
            closed = []
        iv = self.interval_s
        start = ts - ts % iv  # exact: fmod is exact and the result is a multiple of iv
        if nxt is not None and start > nxt:
            closed += self._fill(nxt, start)
        self.forming = Candle(start, price, price, price, price)
        self.forming_end = start + iv
        self._next_start = None
        return closed

    def _fill(self, nxt: float, start: float) -> list[Candle]:
        """Flat candles for the intervals in [nxt, start)."""
        iv = self.interval_s
        missing = round((start - nxt) / iv)
        first = 0
        if missing > self.max_gap_fill:
            first = missing - self.max_gap_fill
            self.gap_skipped += first
        c = self._last_close
        assert c is not None
        return [Candle(nxt + k * iv, c, c, c, c) for k in range(first, missing)]

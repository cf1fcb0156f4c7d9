"""One instrument's market data, ready to run: bars at a detected interval, or ticks. Columns are numpy arrays
(45,000 bars take about 2 MB), sorted by time, without duplicates; the ticks they make are tuples
`(ts, px, bid | None, ask | None)`, the shape the feed writes and the engine reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

Tick = tuple[float, float, float | None, float | None]
Candle = tuple[float, float, float, float, float]  # start ts, open, high, low, close


@dataclass(frozen=True, eq=False)
class Bars:
    symbol: str
    interval_s: int  # the most common step between bars
    ts: np.ndarray  # each bar's start, epoch seconds
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # NaN where the data has none
    sources: tuple[Path, ...] = ()
    duplicates: int = 0  # bars dropped because an earlier one (this file or another) had their time
    gaps: int = 0  # places where bars are missing: reported, never filled in
    missing: int = 0  # bars missing there
    off_grid: int = 0  # bars dropped because they started before the previous one ended
    extras: dict[str, int] = field(default_factory=dict)  # other counts to report, e.g. forming candles

    kind = "bars"

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, part: slice) -> Bars:
        """A run of consecutive bars (their counts are the whole series')."""
        cols = {k: getattr(self, k)[part] for k in ("ts", "open", "high", "low", "close", "volume")}
        return replace(self, **cols)

    @property
    def start_ts(self) -> float:
        return float(self.ts[0]) if len(self) else 0.0

    @property
    def end_ts(self) -> float:
        """When the last bar ends."""
        return float(self.ts[-1]) + self.interval_s if len(self) else 0.0

    @property
    def span_s(self) -> float:
        return self.end_ts - self.start_ts

    def candles(self) -> list[Candle]:
        """(start ts, open, high, low, close) per bar, as the history stream and the indicators take them."""
        cols = (self.ts, self.open, self.high, self.low, self.close)
        return list(zip(*(c.tolist() for c in cols), strict=True))

    def ticks(self) -> Iterator[Tick]:
        from feeds.data.expand import bar_ticks

        return bar_ticks(self)

    def resampled(self, seconds: int) -> Bars:
        """Bars of `seconds` (a multiple of the interval) made of these: first open, highest high, lowest
        low, last close, summed volume; a bar for each period that has any."""
        period = np.floor(self.ts / seconds) * seconds
        starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]])
        ends = np.r_[starts[1:], len(self)] - 1
        return replace(
            self,
            interval_s=seconds,
            ts=period[starts],
            open=self.open[starts],
            high=np.maximum.reduceat(self.high, starts),
            low=np.minimum.reduceat(self.low, starts),
            close=self.close[ends],
            volume=np.add.reduceat(self.volume, starts),
        )

    def between(self, start: float | None, end: float | None) -> Bars:
        """The bars that start in [start, end)."""
        lo = 0 if start is None else int(np.searchsorted(self.ts, start, side="left"))
        hi = len(self) if end is None else int(np.searchsorted(self.ts, end, side="left"))
        return self[lo:hi]


@dataclass(frozen=True, eq=False)
class Ticks:
    symbol: str
    ts: np.ndarray  # epoch seconds, non-decreasing
    px: np.ndarray
    bid: np.ndarray  # NaN where the data has no quote
    ask: np.ndarray
    sources: tuple[Path, ...] = ()
    duplicates: int = 0  # ticks dropped because an earlier file covered their time already
    extras: dict[str, int] = field(default_factory=dict)

    kind = "ticks"
    interval_s = 0

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, part: slice) -> Ticks:
        return replace(self, ts=self.ts[part], px=self.px[part], bid=self.bid[part], ask=self.ask[part])

    @property
    def start_ts(self) -> float:
        return float(self.ts[0]) if len(self) else 0.0

    @property
    def end_ts(self) -> float:
        return float(self.ts[-1]) if len(self) else 0.0

    @property
    def span_s(self) -> float:
        return self.end_ts - self.start_ts

    @property
    def quoted(self) -> int:
        """Ticks that carry a bid and an ask."""
        return int(np.count_nonzero(~np.isnan(self.bid)))

    def ticks(self) -> Iterator[Tick]:
        bid = [None if b != b else b for b in self.bid.tolist()]  # NaN -> None
        ask = [None if a != a else a for a in self.ask.tolist()]
        return zip(self.ts.tolist(), self.px.tolist(), bid, ask, strict=True)

    def between(self, start: float | None, end: float | None) -> Ticks:
        lo = 0 if start is None else int(np.searchsorted(self.ts, start, side="left"))
        hi = len(self) if end is None else int(np.searchsorted(self.ts, end, side="left"))
        return self[lo:hi]


Series = Bars | Ticks

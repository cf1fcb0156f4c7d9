"""Replay of recorded market data as live ticks: the offline demo and the end-to-end tests.

Any data file that feeds/data reads, told apart by its content, never by its name (the formats are listed
there and in the README): bars go through the warm-up split of feeds/data/expand.py (the first `warmup`
candles to the history stream, every later bar as four ticks), captures and recordings tick by tick with
their bid and ask. A recording of several instruments feeds each configured one as itself; a recording of
one instrument is fed as `--symbol`, else as itself when it is configured, else as the first configured.

`check_recording` runs before anything starts (`scalper run --replay`, `scalper feed --replay`): a file that
is missing, of no format feeds/data knows, whose first records do not parse, or that holds nothing to
replay stops the start with one line that names the file, the line and the problem.

Times are rebased so the replay starts now, or just after the newest tick already in Redis (a restarted
replay never goes back in time), by a whole number of candles, so the ticks fall into the same candles as
in the data (and as in a backtest of it); and `speed` compresses them: at speed 60 a minute of market
passes in a second of wall time. The engine runs on the data's clock in replay, so holding times mean
market time.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from feeds.data import Bars, Candle, DataError, Series, Tick, load_market_data, sample_path
from feeds.data.expand import warmup_split

__all__ = ["Replay", "check_recording", "feed_plan", "sample_path"]

Fed = tuple[float, str, float, float | None, float | None]  # a tick with its symbol, time first to merge on


def check_recording(spec: str | Path, *, symbols: Sequence[str] = (), symbol: str | None = None,
                    warmup: int = 100, candle_seconds: int = 60) -> dict[str, Series]:  # fmt: skip
    """Before anything starts: the file exists, its format is recognised, its records parse, its bars fit
    the candles, and it holds something to replay. Raises DataError; returns what each symbol is fed."""
    plan = feed_plan(spec, symbols=symbols, symbol=symbol, candle_seconds=candle_seconds)
    for series in plan.values():
        if isinstance(series, Bars):
            _, live = warmup_split(series, warmup, candle_seconds)
            if not len(live):
                raise DataError(series.sources[0], 0, f"has {len(series)} bars: the first {warmup} warm the "
                                "indicators up, so no tick would be replayed")  # fmt: skip
    return plan


def feed_plan(spec: str | Path, *, symbols: Sequence[str] = (), symbol: str | None = None,
              candle_seconds: int = 60) -> dict[str, Series]:  # fmt: skip
    """The recording's data by the symbol it is fed as."""
    arg = str(spec)
    default = symbol or (symbols[0] if symbols else None)
    data = load_market_data([arg], default_symbol=default, candle_seconds=candle_seconds)
    if len(data.series) == 1:
        (name, series), = data.series.items()  # fmt: skip
        return {symbol or (name if name in symbols or not symbols else symbols[0]): series}
    wanted = [symbol] if symbol else list(symbols)
    plan = {name: data.series[name] for name in wanted if name in data.series}
    if not plan:
        path = data.files[0].path
        raise DataError(path, 0, f"holds {', '.join(data.series)}: none of them is fed (configured: "
                        f"{', '.join(wanted) or 'none'})")  # fmt: skip
    return plan


class Replay:
    """Feeds a recording. `run` blocks until the recording ends (or `stop_after` ticks)."""

    def __init__(self, writer, symbol: str | None, path: Path | str, *, symbols: Sequence[str] = (),
                 speed: float = 60.0, warmup: int = 100, candle_seconds: int = 60, sleep=time.sleep,
                 wall=time.time, stop: threading.Event | None = None,
                 lockstep: Callable[[str, str], None] | None = None) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
        """`lockstep(symbol, last entry id)`: called before each tick (the id "" before a symbol's first);
        it returns once the system is done with the last one (scalper/lockstep.py). Then `speed` is not used:
        the replay goes as fast as the processes do, and decides exactly as a backtest does."""
        self.lockstep = lockstep
        self.writer, self.symbol, self.path, self.symbols = writer, symbol, path, list(symbols)
        self.speed, self.warmup, self.candle_seconds, self.wall = speed, warmup, candle_seconds, wall
        self.stop = stop or threading.Event()  # set by a SIGTERM handler: the replay ends at once
        self.sleep = self.stop.wait if sleep is time.sleep else sleep

    def run(self, stop_after: int | None = None) -> int:
        plan = feed_plan(self.path, symbols=self.symbols, symbol=self.symbol,
                         candle_seconds=self.candle_seconds)  # fmt: skip
        history: dict[str, list[Candle]] = {}
        streams: dict[str, Iterator[Tick]] = {}
        t0 = float("inf")
        for name, series in plan.items():
            if isinstance(series, Bars):
                history[name], live = warmup_split(series, self.warmup, self.candle_seconds)
                series = live
            if len(series):
                streams[name] = series.ticks()
                t0 = min(t0, series.start_ts)
        if not streams:
            return 0
        start = max(self.wall(), max(self.writer.last_ts(name) for name in plan) + 60.0)
        start -= (start - t0) % self.candle_seconds  # whole candles: ticks fall into the data's candles
        shift = start - t0
        for name, candles in history.items():
            if candles:
                self.writer.history(name, [(ts + shift, o, h, low, c) for ts, o, h, low, c in candles])
        return self._feed(streams, t0, shift, stop_after)

    def _feed(self, streams: dict[str, Iterator[Tick]], t0: float, shift: float,
              stop_after: int | None) -> int:  # fmt: skip
        wall0 = self.wall()
        n = 0
        last: dict[str, str] = {}
        for ts, name, px, bid, ask in _in_time_order(streams):
            if self.stop.is_set():
                break
            if self.lockstep is not None:
                self.lockstep(name, last.get(name, ""))
            else:
                delay = wall0 + (ts - t0) / self.speed - self.wall()
                if delay > 0:
                    self.sleep(delay)
            last[name] = self.writer.tick(name, ts + shift, px, bid, ask)
            n += 1
            if stop_after is not None and n >= stop_after:
                break
        if self.lockstep is not None and not self.stop.is_set():
            for name, entry in last.items():  # the replay is over once the system is done with its last ticks
                self.lockstep(name, entry)
        return n


def _in_time_order(streams: dict[str, Iterator[Tick]]) -> Iterator[Fed]:
    """The ticks of every symbol merged by time (a symbol's own order kept on equal times)."""
    tagged = [_tagged(name, ticks) for name, ticks in streams.items()]
    return tagged[0] if len(tagged) == 1 else heapq.merge(*tagged, key=lambda tick: tick[0])


def _tagged(name: str, ticks: Iterator[Tick]) -> Iterator[Fed]:
    for ts, px, bid, ask in ticks:
        yield ts, name, px, bid, ask

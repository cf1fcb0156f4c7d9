"""The data of a run: every DATA argument read, each file's records given an instrument, the files of an
instrument merged in time order, the bars' interval checked against the candles, and the whole cut to
[start, end)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feeds.data.args import expand
from feeds.data.candles import BarColumns
from feeds.data.captures import TickColumns
from feeds.data.errors import DataError
from feeds.data.files import Columns, DataFile, read_file
from feeds.data.series import Bars, Series, Ticks


@dataclass(frozen=True)
class MarketData:
    series: dict[str, Series]  # by instrument, in the order the data named them
    files: tuple[DataFile, ...]

    @property
    def symbols(self) -> list[str]:
        return list(self.series)

    def __getitem__(self, symbol: str) -> Series:
        return self.series[symbol]

    def notes(self) -> list[str]:
        """One line each for what was skipped, dropped or missing: the operator should know, nothing
        stops."""
        out = [note for f in self.files for note in f.notes()]
        for symbol, s in self.series.items():
            if s.duplicates:
                what = "bars" if isinstance(s, Bars) else "ticks"
                out.append(f"{symbol}: {s.duplicates} {what} dropped, their time covered by an earlier file "
                           "(or twice in one)")  # fmt: skip
            if isinstance(s, Bars) and s.gaps:
                out.append(f"{symbol}: {s.gaps} gaps in the bars, {s.missing} bars of {_human(s.interval_s)} "
                           "missing (not filled in)")  # fmt: skip
            if isinstance(s, Bars) and s.off_grid:
                out.append(f"{symbol}: {s.off_grid} bars dropped, starting before the previous one ended")
        return out


def load_market_data(
    args: Sequence[str],
    *,
    symbol: str | None = None,
    default_symbol: str | None = None,
    start: float | None = None,
    end: float | None = None,
    candle_seconds: int = 60,
) -> MarketData:
    """The market data of `args` (paths, patterns, `sample`, each optionally `SYMBOL=...`).

    A file's instrument: the one its argument names, else the one its content names (a capture's symbol,
    a recording's), else `symbol` (--symbol: every such file, merged), else `default_symbol` when it is the
    only such file. Raises DataError, one line naming the file (and the line) and the problem."""
    if not args:
        raise ValueError("no data given")
    files: list[DataFile] = []
    assigned: dict[str, list[tuple[DataFile, Columns]]] = {}
    unnamed: list[tuple[DataFile, Columns]] = []
    for arg in expand(args):
        found = read_file(arg.path)
        files.append(found)
        if arg.symbol is not None:
            if len(found.parts) > 1:
                names = ", ".join(str(k) for k in found.parts)
                raise DataError(arg.path, 0, f"holds several instruments ({names}): it cannot be named "
                                f"{arg.symbol}; leave out {arg.symbol}=")  # fmt: skip
            assigned.setdefault(arg.symbol, []).append((found, next(iter(found.parts.values()))))
            continue
        for name, cols in found.parts.items():
            if name is None:
                unnamed.append((found, cols))
            else:
                assigned.setdefault(name, []).append((found, cols))
    if unnamed:
        assigned.setdefault(_unnamed_symbol(unnamed, symbol, default_symbol), []).extend(unnamed)
    series = {name: _merged(name, parts, candle_seconds) for name, parts in assigned.items()}
    series = {name: _cut(s, start, end) for name, s in series.items()}
    return MarketData(series, tuple(files))


def _unnamed_symbol(unnamed: list[tuple[DataFile, Columns]], symbol: str | None, default: str | None) -> str:
    if symbol is not None:
        return symbol
    paths = list(dict.fromkeys(str(f.path) for f, _ in unnamed))
    if len(paths) == 1 and default is not None:
        return default
    if len(paths) == 1:
        raise DataError(paths[0], 0, "does not say which instrument it is: write SYMBOL=path, or give "
                        "--symbol")  # fmt: skip
    raise DataError(paths[0], 0, f"and {len(paths) - 1} more file(s) ({', '.join(paths[1:3])}"
                    f"{', ...' if len(paths) > 3 else ''}) do not say which instrument they are: write each "
                    "as SYMBOL=path, or give --symbol to merge them as one")  # fmt: skip


def _merged(symbol: str, parts: list[tuple[DataFile, Columns]], candle_seconds: int) -> Series:
    kinds = {isinstance(cols, BarColumns) for _, cols in parts}
    if len(kinds) > 1:
        bars = next(f.path for f, c in parts if isinstance(c, BarColumns))
        ticks = next(f.path for f, c in parts if isinstance(c, TickColumns))
        raise DataError(ticks, 0, f"holds ticks of {symbol}, and {bars} bars of it: a run takes one or the "
                        "other for an instrument")  # fmt: skip
    sources = tuple(dict.fromkeys(f.path for f, _ in parts))
    if kinds == {True}:
        return _merged_bars(symbol, parts, sources, candle_seconds)  # type: ignore[arg-type]
    return _merged_ticks(symbol, parts, sources)  # type: ignore[arg-type]


def _merged_bars(
    symbol: str, parts: list[tuple[DataFile, BarColumns]], sources: tuple[Path, ...], candle_seconds: int
) -> Bars:
    intervals = {}
    for found, cols in parts:
        interval = _interval(np.unique(cols.ts))
        if interval is not None:
            check_interval(found.path, interval, candle_seconds)
            intervals.setdefault(interval, found.path)
    if len(intervals) > 1:
        (a, a_path), (b, b_path) = list(intervals.items())[:2]
        raise DataError(b_path, 0, f"bars of {_human(b)}, and {a_path} bars of {_human(a)}, both of "
                        f"{symbol}: the files of an instrument must have one interval")  # fmt: skip
    cols = [np.concatenate(c) for c in zip(*(cols for _, cols in parts), strict=True)]
    order = np.argsort(cols[0], kind="stable")  # on equal times the earlier file's bar comes first...
    ts = cols[0][order]
    first = np.r_[True, ts[1:] != ts[:-1]]  # ...and stays
    keep = order[first]
    ts = ts[first]
    if not intervals:
        raise DataError(sources[0], 0, f"{len(ts)} bar of {symbol}: its interval cannot be told (2 are "
                        "needed)")  # fmt: skip
    interval = next(iter(intervals))
    on_grid = _on_grid(ts, interval)
    keep, ts = keep[on_grid], ts[on_grid]
    steps = np.diff(ts)
    long = steps > interval
    return Bars(symbol, interval, ts, *(c[keep] for c in cols[1:]), sources=sources,
                duplicates=len(order) - int(first.sum()), gaps=int(np.count_nonzero(long)),
                missing=int(np.round(steps[long] / interval).sum() - np.count_nonzero(long)),
                off_grid=int(len(on_grid) - np.count_nonzero(on_grid)),
                extras={"forming": sum(f.extras.get("forming", 0) for f, _ in parts)})  # fmt: skip


def _interval(ts: np.ndarray) -> int | None:
    """The most common step between consecutive bars, in whole seconds; None for fewer than 2 bars."""
    if len(ts) < 2:
        return None
    steps, counts = np.unique(np.round(np.diff(ts)), return_counts=True)
    return max(int(steps[np.argmax(counts)]), 1)


def check_interval(path: Path, interval: int, candle_seconds: int) -> None:
    """Bars finer than the candles are fine when they divide them; coarser ones cannot be made into them."""
    setting = f"indicators.candle_seconds={interval}"
    if interval > candle_seconds:
        raise DataError(path, 0, f"bars of {_human(interval)} ({interval} s) are coarser than the "
                        f"{candle_seconds} s candles of indicators.candle_seconds: run with {setting} "
                        f"(--set {setting}, or SCALPER_INDICATORS__CANDLE_SECONDS={interval})")  # fmt: skip
    if candle_seconds % interval:
        raise DataError(path, 0, f"bars of {interval} s do not divide the {candle_seconds} s candles of "
                        "indicators.candle_seconds: a candle would take part of a bar; set it to a "
                        f"multiple of {interval}")  # fmt: skip


def _on_grid(ts: np.ndarray, interval: int) -> np.ndarray:
    """Which bars to keep: each must start once the previous kept one has ended."""
    keep = np.ones(len(ts), dtype=bool)
    if len(ts) < 2 or np.diff(ts).min() >= interval:
        return keep
    end = ts[0] + interval
    for i in range(1, len(ts)):  # rare (bars off their grid): a plain loop is fine
        if ts[i] < end:
            keep[i] = False
        else:
            end = ts[i] + interval
    return keep


def _merged_ticks(symbol: str, parts: list[tuple[DataFile, TickColumns]], sources: tuple[Path, ...]) -> Ticks:
    """Each file's ticks in time order; a later file's ticks within the time an earlier one covers are
    dropped (two captures of the same minutes), never the ticks of one file (trades share milliseconds)."""
    chunks, covered, dropped = [], -np.inf, 0
    for _, cols in sorted(parts, key=lambda p: float(p[1].ts.min())):
        order = np.argsort(cols.ts, kind="stable")
        ts = cols.ts[order]
        fresh = ts > covered
        dropped += len(ts) - int(np.count_nonzero(fresh))
        chunks.append([c[order][fresh] for c in cols])
        covered = max(covered, float(ts[-1]))
    ts, px, bid, ask = (np.concatenate(c) for c in zip(*chunks, strict=True))
    return Ticks(symbol, ts, px, bid, ask, sources=sources, duplicates=dropped)


def _cut(s: Series, start: float | None, end: float | None) -> Series:
    if start is None and end is None:
        return s
    cut = s.between(start, end)
    if not len(cut):
        raise DataError(s.sources[0], 0, f"no {s.kind} of {s.symbol} from {_when(start, 'the start')} to "
                        f"{_when(end, 'the end')}: "
                        f"the data runs from {_when(s.start_ts)} to {_when(s.end_ts)}")  # fmt: skip
    return cut


def _when(ts: float | None, default: str = "") -> str:
    from datetime import UTC, datetime

    return default if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _human(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

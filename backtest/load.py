"""The backtest's data: the DATA arguments read by content into each symbol's warm-up and ticks."""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backtest.run import SymbolData, Tick
from config.settings import Settings
from feeds.replay import (
    Format,
    RecordingError,
    bar_ticks,
    capture_ticks,
    detect_format,
    read_bars,
    sample_path,
)

WARMUP_BARS = 100  # as `scalper run --replay` puts in the history stream (feeds/replay.py)


class DataError(ValueError):
    """Data that cannot be backtested: one line naming the file and the problem."""


@dataclass
class LoadedData:
    series: list[SymbolData]
    files: list[str]
    start_ts: float
    end_ts: float


def _paths(args: list[str]) -> list[tuple[str | None, Path]]:
    out: list[tuple[str | None, Path]] = []
    for arg in args:
        symbol, eq, rest = arg.partition("=")
        name, text = (symbol, rest) if eq and "/" not in symbol else (None, arg)
        if text == "sample":
            out.append((name, sample_path()))
            continue
        found = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
        if not found:
            raise DataError(f"{text}: no file matches")
        out += [(name, Path(f)) for f in found]
    return out


def _bar_ticks(bars: list[tuple[float, float, float, float, float]]) -> Callable[[], Iterator[Tick]]:
    return lambda: ((ts, px, None, None) for ts, px in bar_ticks(bars))


def load(args: list[str], settings: Settings, *, symbol: str | None = None, start: float | None = None,
         end: float | None = None) -> LoadedData:  # fmt: skip
    default = symbol or next(iter(settings.symbols))
    series: list[SymbolData] = []
    files: list[str] = []
    lo, hi = float("inf"), float("-inf")
    for name, path in _paths(args):
        sym = name or default
        try:
            fmt = detect_format(path)
            if fmt is Format.BARS:
                bars = [b for b in read_bars(path) if (start is None or b[0] >= start)
                        and (end is None or b[0] < end)]  # fmt: skip
                if len(bars) <= WARMUP_BARS:
                    raise DataError(f"{path}: {len(bars)} bars, too short: the indicators warm up on the "
                                    f"first {WARMUP_BARS} and nothing is left to trade on")  # fmt: skip
                warm, live = bars[:WARMUP_BARS], bars[WARMUP_BARS:]
                series.append(SymbolData(sym, _bar_ticks(live), warm, len(live)))
                lo, hi = min(lo, live[0][0]), max(hi, live[-1][0] + 60)
            else:
                ticks = [t for t in capture_ticks(path) if (start is None or t[0] >= start)
                         and (end is None or t[0] < end)]  # fmt: skip
                if not ticks:
                    raise DataError(f"{path}: no trades to replay")
                series.append(SymbolData(sym, lambda ticks=ticks: ((ts, px, None, None) for ts, px in ticks)))
                lo, hi = min(lo, ticks[0][0]), max(hi, ticks[-1][0])
        except RecordingError as err:
            raise DataError(str(err)) from None
        except OSError as err:
            raise DataError(f"{path}: {err.strerror or err}") from None
        files.append(str(path))
    return LoadedData(series, files, lo, hi)

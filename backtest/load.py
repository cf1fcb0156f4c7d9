"""The backtest's data: the DATA arguments read by feeds/data (every format, told by its content) into each
symbol's warm-up and ticks, split as `scalper run --replay` splits them (feeds/data/expand.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from backtest.run import SymbolData
from config.settings import Settings
from feeds.data import Bars, load_market_data
from feeds.data import DataError as FileError
from feeds.data.expand import warmup_split

WARMUP_BARS = 100  # as `scalper run --replay` puts in the history stream (feeds/replay.py)


class DataError(ValueError):
    """Data that cannot be backtested: one line naming the file and the problem."""


@dataclass
class LoadedData:
    series: list[SymbolData]
    files: list[str]
    start_ts: float
    end_ts: float
    notes: list[str] = field(default_factory=list)  # records skipped, bars missing: to tell, not to stop on


def load(args: list[str], settings: Settings, *, symbol: str | None = None, start: float | None = None,
         end: float | None = None) -> LoadedData:  # fmt: skip
    candle = settings.indicators.candle_seconds
    try:
        data = load_market_data(args, symbol=symbol, default_symbol=next(iter(settings.symbols)), start=start,
                                end=end, candle_seconds=candle)  # fmt: skip
    except FileError as err:
        raise DataError(str(err)) from None
    series: list[SymbolData] = []
    lo, hi = float("inf"), float("-inf")
    for name, found in data.series.items():
        if isinstance(found, Bars):
            warm, live = warmup_split(found, WARMUP_BARS, candle)
            if not len(live):
                too_short = (f"{len(found)} bars, too short: the indicators warm up on the first "
                             f"{WARMUP_BARS} candles and nothing is left to trade on")  # fmt: skip
                raise DataError(f"{found.sources[0]}: {too_short}")
            series.append(SymbolData(name, live.ticks, warm, len(live)))
            lo, hi = min(lo, live.start_ts), max(hi, live.end_ts)
        else:
            series.append(SymbolData(name, found.ticks))
            lo, hi = min(lo, found.start_ts), max(hi, found.end_ts)
    return LoadedData(series, [str(f.path) for f in data.files], lo, hi, data.notes())

"""One data file read: its format detected, its records parsed by that format's reader, and what it holds
(bars or ticks per instrument it names, or for an instrument it does not name) with what was skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from feeds.data.candles import BarColumns
from feeds.data.captures import TickColumns, read_capture
from feeds.data.csvbars import read_csv_bars
from feeds.data.detect import Format, detect
from feeds.data.errors import CHECKED_RECORDS, BadRecords, DataError
from feeds.data.feather import read_feather
from feeds.data.jsoncandles import JsonCandles
from feeds.data.recording import read_recording
from feeds.data.source import Source

Columns = BarColumns | TickColumns


@dataclass
class DataFile:
    path: Path
    format: Format
    parts: dict[str | None, Columns]  # by the instrument the file names (None: it names none)
    bad: BadRecords
    extras: dict[str, int] = field(default_factory=dict)  # forming candles, other messages
    truncated: str | None = None  # why the file's gzip data ended early

    @property
    def records(self) -> int:
        return sum(len(c) for c in self.parts.values())

    def notes(self) -> list[str]:
        out = [note] if (note := self.bad.note()) else []
        if self.truncated:
            out.append(f"{self.path}: {self.truncated}; what came before is used")
        if forming := self.extras.get("forming"):
            out.append(f'{self.path}: {forming} OKX candles still forming (confirm "0") left out')
        return out


def read_file(path: Path) -> DataFile:
    source = Source(path)
    fmt = detect(source)
    extras: dict[str, int] = {}
    parts: dict[str | None, Columns]
    if fmt in (Format.OHLCV_CSV, Format.KLINE_CSV):
        bars, bad = read_csv_bars(source, fmt)
        parts = {None: bars}
    elif fmt in (Format.FREQTRADE_JSON, Format.OKX_CANDLES):
        candles = JsonCandles(source)
        parts, bad, extras["forming"] = {None: candles.columns()}, candles.bad, candles.forming
    elif fmt is Format.FREQTRADE_FEATHER:
        bars, bad = read_feather(source)
        parts = {None: bars}
    elif fmt is Format.SCALPER_TICKS:
        parts, bad = read_recording(source)
    else:
        parts, bad, extras["other"] = read_capture(source, fmt)
    found = DataFile(path, fmt, {k: v for k, v in parts.items() if len(v)}, bad, extras, source.truncated)
    if source.truncated and found.records < CHECKED_RECORDS:
        raise DataError(path, 0, f"cannot be read: {source.truncated}")
    if not found.records:
        raise DataError(path, 0, _nothing(found))
    return found


def _nothing(found: DataFile) -> str:
    what = f"a {found.format.value}"
    if found.format.bars:
        forming = found.extras.get("forming")
        return f"{what} with no closed candle" + (f" (only {forming} still forming)" if forming else "")
    if found.format is Format.SCALPER_TICKS:
        return f"{what} with no tick"
    return f"{what} with no tick: no trade (nor a ticker) among its {found.extras.get('other', 0)} messages"

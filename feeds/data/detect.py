"""Which format a data file is in, told by its content (the first bytes, the first lines), never by its name.
The one place formats are told apart: a new one is recognised here and named in EXPECTED."""

from __future__ import annotations

import codecs
import csv
import re
from enum import Enum
from typing import Any

import msgspec

from feeds.data.errors import DataError, excerpt
from feeds.data.source import Source


class Format(Enum):
    OHLCV_CSV = "OHLCV CSV"
    KLINE_CSV = "headerless kline CSV"
    FREQTRADE_JSON = "Freqtrade JSON candles"
    FREQTRADE_FEATHER = "Freqtrade feather candles"
    OKX_CANDLES = "OKX candles"
    BINANCE_CAPTURE = "Binance capture"
    OKX_CAPTURE = "OKX capture"
    SCALPER_TICKS = "scalper recording"

    @property
    def bars(self) -> bool:
        return self not in (Format.BINANCE_CAPTURE, Format.OKX_CAPTURE, Format.SCALPER_TICKS)


EXPECTED = (
    "expected OHLCV CSV (header timestamp,open,high,low,close[,volume]), a headerless kline CSV (Binance's "
    "columns), Freqtrade JSON or feather candles, OKX candles (a REST response or JSON lines), a Binance or "
    "OKX WebSocket capture (a message per line, optionally after a receive time) or a scalper recording "
    "(`scalper record`), any of them optionally gzip-compressed"
)

TIME_COLUMNS = ("timestamp", "date", "datetime", "time", "open_time")
PRICE_COLUMNS = ("open", "high", "low", "close")
RECORDING_MAGIC = "# scalper ticks"
ARROW_MAGICS = (b"ARROW1", b"FEA1")  # Arrow IPC file (Feather v2), Feather v1
_RECEIVE_TIME = re.compile(r"^(\d+)\s+(?=[\[{])")
_NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE][-+]?\d+)?$")
_CLASSIFY_LINES = 50  # lines of a capture searched for a message that tells Binance from OKX


def detect(source: Source) -> Format:
    head = source.head()
    if source.truncated:  # gzip data cut off within the head: its last line is cut too
        head = head[: head.rfind(b"\n") + 1]
        if not head.strip():
            raise DataError(source.path, 0, f"cannot be read: {source.truncated}")
    if head.startswith(ARROW_MAGICS):
        return Format.FREQTRADE_FEATHER
    if b"\x00" in head:
        raise DataError(source.path, 0, f"is not text (binary data): {EXPECTED}")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as err:
        line = head[: err.start].count(b"\n") + 1
        raise DataError(source.path, line, f"is not text (not UTF-8): {EXPECTED}") from None
    lines = [(n, t.strip()) for n, t in enumerate(text.lstrip("\ufeff").splitlines(), 1) if t.strip()]
    if not lines:
        raise DataError(source.path, 0, f"empty: {EXPECTED}")
    number, first = lines[0]
    found = _text_format(first, lines[:_CLASSIFY_LINES], text)
    if found is None:
        raise DataError(source.path, number, f"not a data file scalper reads: {EXPECTED}; found "
                        f"{excerpt(first)}")  # fmt: skip
    return found


def _text_format(first: str, lines: list[tuple[int, str]], text: str) -> Format | None:
    if first.startswith(RECORDING_MAGIC):
        return Format.SCALPER_TICKS
    if _RECEIVE_TIME.match(first) or first.startswith(("{", "[")):
        return _json_format(first, lines, text)
    return _csv_format(first)


def _csv_format(first: str) -> Format | None:
    fields = [f.strip() for f in next(csv.reader([first]), [])]
    names = {f.lower() for f in fields}
    if set(PRICE_COLUMNS) <= names and names & set(TIME_COLUMNS):
        return Format.OHLCV_CSV
    if len(fields) >= 6 and fields[0].isdigit() and all(_NUMBER.match(f) for f in fields[1:6]):
        return Format.KLINE_CSV
    return None


def _json_format(first: str, lines: list[tuple[int, str]], text: str) -> Format | None:
    """A capture (messages, one per line), OKX candles as JSON lines, or one JSON document of candles."""
    for _, line in lines:
        message = _json_line(line)
        if isinstance(message, dict):
            if _binance_message(message):
                return Format.BINANCE_CAPTURE
            if _okx_message(message):
                return Format.OKX_CAPTURE
            if "code" in message and "data" in message:
                return Format.OKX_CANDLES  # REST responses, one per line
        elif isinstance(message, list) and message:
            if all(isinstance(row, list) for row in message):  # a whole candle array on one line
                return Format.OKX_CANDLES if isinstance(message[0][0], str) else Format.FREQTRADE_JSON
            return Format.OKX_CANDLES  # candle rows, one per line
    if _RECEIVE_TIME.match(first) or _json_line(first) is not None:
        return None  # messages, but none of a known exchange
    # One JSON document over several lines: what it opens with tells what it is.
    compact = re.sub(r"\s+", "", text[:2000])
    if compact.startswith("{") and '"data":[' in compact and '"code":' in compact:
        return Format.OKX_CANDLES
    if compact.startswith("[["):
        return Format.OKX_CANDLES if compact.startswith('[["') else Format.FREQTRADE_JSON
    return None


def _json_line(line: str) -> Any:
    """The JSON value of a line (after its receive time, if any); None if the line is not one."""
    m = _RECEIVE_TIME.match(line)
    try:
        return msgspec.json.decode(line[m.end() :] if m else line)
    except msgspec.DecodeError:
        return None


def _binance_message(message: dict[str, Any]) -> bool:
    data = message.get("data", message)
    return isinstance(data, dict) and isinstance(data.get("e"), str)


def _okx_message(message: dict[str, Any]) -> bool:
    arg = message.get("arg")
    return (isinstance(arg, dict) and "channel" in arg) or (isinstance(message.get("event"), str))

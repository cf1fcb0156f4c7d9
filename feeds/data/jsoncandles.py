"""Candles from JSON: Freqtrade's candle files (`[[ms, open, high, low, close, volume], ...]`, numbers) and
OKX's candles (`GET /api/v5/market/history-candles` and `/candles`: `{"code": "0", "data": [[ts, o, h, l, c,
vol, volCcy, volCcyQuote, confirm], ...]}`, strings, newest first), as one document or as JSON lines (a row,
a response or an array per line, as paging through the REST endpoint saves them). OKX's candle that is still
forming (confirm "0") is left out: its prices are not final."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

from feeds.data.candles import BarColumns, checked, epoch_seconds, floats
from feeds.data.errors import BadRecords, DataError, excerpt
from feeds.data.source import Source

KEYS = ("ts", "open", "high", "low", "close", "volume")
NAMES = dict(zip(KEYS, ("time", "open", "high", "low", "close", "volume"), strict=True))
CONFIRM = 8  # OKX's ninth field: "1" closed, "0" still forming


class JsonCandles:
    """The rows of one file, with the line of each (0 in a single document) and the forming ones counted."""

    def __init__(self, source: Source) -> None:
        self.path = source.path
        self.bad = BadRecords(source.path)
        self.rows: list[list[Any]] = []
        self.lines: list[int] = []
        self.records: list[int] = []
        self.forming = 0  # OKX candles not closed yet, left out
        self._record = 0
        data = source.read()
        if _json_lines(data):
            for number, line in enumerate(data.split(b"\n"), 1):
                if line.strip():
                    self._line(number, line)
        else:
            self._add(_document(source.path, data), 0)

    def _line(self, number: int, line: bytes) -> None:
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError as err:
            self._record += 1
            self.bad.seen(self._record, number, f"its JSON does not parse ({err})")
            return
        self._add(value, number)

    def _add(self, value: Any, line: int) -> None:
        if isinstance(value, dict):
            code = str(value.get("code", "0"))
            if code != "0":  # a page that failed (a rate limit, say) among those saved
                self._record += 1
                self.bad.seen(self._record, line, f"an OKX error response (code {code}: "
                              f"{value.get('msg', '')}), not candles")  # fmt: skip
                return
            value = value.get("data")
        elif isinstance(value, list) and value and not isinstance(value[0], list):
            value = [value]  # a single row on its line
        if not isinstance(value, list):
            self._record += 1
            self.bad.seen(self._record, line, f"{_where(line, self._record)}not a candle row or an OKX "
                          "response")  # fmt: skip
            return
        for row in value:
            self._record += 1
            if not isinstance(row, list) or len(row) < 5:
                self.bad.seen(self._record, line, f"{_where(line, self._record)}a candle is a list of time, "
                              f"open, high, low, close[, volume, ...]; found {_json(row)}")  # fmt: skip
                continue
            if len(row) > CONFIRM and str(row[CONFIRM]) == "0":
                self.forming += 1
                continue
            self.rows.append(row)
            self.lines.append(line)
            self.records.append(self._record)

    def columns(self) -> BarColumns:
        width = 6 if self.rows and all(len(r) > 5 for r in self.rows) else 5
        raw = {key: [row[i] for row in self.rows] for i, key in enumerate(KEYS[:width])}
        parsed = {key: epoch_seconds(v) if key == "ts" else floats(v) for key, v in raw.items()}
        line_of: Callable[[int], int] = self.lines.__getitem__
        return checked(parsed, raw, NAMES, line_of, self.bad, self.records.__getitem__)


def _json(value: Any) -> str:
    return excerpt(msgspec.json.encode(value).decode())


def _where(line: int, record: int) -> str:
    """A single document has no useful line: its candles are counted instead."""
    return "" if line or not record else f"candle {record}: "


def _json_lines(data: bytes) -> bool:
    """More than one line, and the first one a whole JSON value."""
    text = data.strip()
    first, _, rest = text.partition(b"\n")
    if not rest.strip():
        return False
    try:
        msgspec.json.decode(first)
    except msgspec.DecodeError:
        return False
    return True


def _document(path: Any, data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        pass
    try:  # for the line and column of the problem, which msgspec does not give
        json.loads(data)
    except json.JSONDecodeError as err:
        problem = f"its JSON does not parse ({err.msg}, column {err.colno})"
        raise DataError(path, err.lineno, problem) from None
    except UnicodeDecodeError:
        raise DataError(path, 0, "is not text (not UTF-8)") from None
    raise DataError(path, 0, "its JSON does not parse")

"""Candles from CSV: with a header naming the columns (a time column `timestamp`, `date`, `datetime`,
`time` or `open_time`, then `open`, `high`, `low`, `close`, optionally `volume`, in any order, other columns
ignored), or headerless in Binance's kline column order (open time, open, high, low, close, volume, ...).

The common case, a clean file, is split in one pass and its columns converted by numpy; a file with quoted
fields, blank lines or rows of the wrong length goes through the csv module row by row."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable

from feeds.data.candles import BarColumns, checked, epoch_seconds, floats
from feeds.data.detect import PRICE_COLUMNS, TIME_COLUMNS, Format
from feeds.data.errors import BadRecords, DataError
from feeds.data.source import Source

VOLUME_COLUMNS = ("volume", "vol")


def read_csv_bars(source: Source, fmt: Format) -> tuple[BarColumns, BadRecords]:
    fields, body, body_line = _header_and_body(source, fmt)
    at = _positions(fields, fmt)
    bad = BadRecords(source.path)
    raw, line_of, record_of = _columns(body, len(fields), body_line, bad)
    del body  # the rows are in `raw` now: the file's text need not stay while they are converted
    names = {key: fields[i] for key, i in at.items()} if fmt is Format.OHLCV_CSV else _KLINE_NAMES
    values = {key: raw[i] for key, i in at.items()}
    parsed = {key: epoch_seconds(v) if key == "ts" else floats(v) for key, v in values.items()}
    return checked(parsed, values, names, line_of, bad, record_of), bad


def _header_and_body(source: Source, fmt: Format) -> tuple[list[str], str, int]:
    """The column names (Binance's positions for a headerless file), the rows' text, and its first line."""
    data = source.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(source.path, line, "is not text (not UTF-8) from here on") from None
    del data
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    start = _LEADING_SPACE.match(text).end()  # type: ignore[union-attr]  # blank lines before the first row
    first_line = text.count("\n", 0, start) + 1
    end = text.find("\n", start)
    first = text[start:] if end < 0 else text[start:end]
    if fmt is Format.OHLCV_CSV:
        fields = [f.strip().lower() for f in next(csv.reader([first]))]
        return fields, "" if end < 0 else text[end + 1 :].rstrip("\n"), first_line + 1
    fields = [str(i) for i in range(len(next(csv.reader([first]))))]
    return fields, text[start:].rstrip("\n"), first_line


_LEADING_SPACE = re.compile(r"\s*")
_KLINE_NAMES = {"ts": "open time", "open": "open", "high": "high", "low": "low", "close": "close",
                "volume": "volume"}  # fmt: skip


def _positions(fields: list[str], fmt: Format) -> dict[str, int]:
    """Where each column is: by the header's names, or Binance's order."""
    if fmt is Format.KLINE_CSV:
        return {"ts": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
    at = {"ts": next(fields.index(name) for name in TIME_COLUMNS if name in fields)}
    at |= {p: fields.index(p) for p in PRICE_COLUMNS}
    volume = next((name for name in VOLUME_COLUMNS if name in fields), None)
    if volume is not None:
        at["volume"] = fields.index(volume)
    return at


def _columns(
    body: str, width: int, body_line: int, bad: BadRecords
) -> tuple[list[list[str]], Callable[[int], int], Callable[[int], int]]:
    """The body's fields column by column, the line of each row and its place among the records. Rows of
    the wrong length are bad."""
    if not body.strip():
        return [[] for _ in range(width)], lambda i: body_line + i, lambda i: i + 1
    if '"' not in body and "\n\n" not in body:
        flat = body.replace("\n", ",").split(",")
        rows = body.count("\n") + 1
        if len(flat) == rows * width:
            return [flat[i::width] for i in range(width)], lambda i: body_line + i, lambda i: i + 1
    good: list[list[str]] = []
    lines: list[int] = []
    records: list[int] = []
    record = 0
    for offset, row in enumerate(csv.reader(body.split("\n"))):
        if not row or not "".join(row).strip():
            continue
        record += 1
        if len(row) != width:
            bad.seen(record, body_line + offset, f"has {len(row)} fields, the header {width}")
            continue
        good.append(row)
        lines.append(body_line + offset)
        records.append(record)
    columns = [list(col) for col in zip(*good, strict=True)] if good else [[] for _ in range(width)]
    return columns, lines.__getitem__, records.__getitem__

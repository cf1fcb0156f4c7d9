"""Replay of recorded market data as live ticks: the offline demo and the end-to-end tests.

Two formats are read, told apart by their content (detect_format), never by the file's name:
- 1-minute bars, CSV `timestamp,open,high,low,close,volume` (optionally .gz): the first `warmup` bars go to
  the history stream, and every later bar becomes four ticks, open → the nearer extreme → the other
  extreme → close, 15 s apart;
- a raw Binance USDⓈ-M capture, lines `<recv ns> <json>` (optionally gzip-compressed): each trade becomes
  a tick.

`check_recording` runs before anything starts (`scalper run --replay`, `scalper feed --replay`): a file that
is missing, of no format it knows, or whose first records do not parse stops the start with one line that
names the file, the line and the problem.

Times are rebased so the replay starts now, or just after the newest tick already in Redis (a restarted
replay never goes back in time), and `speed` compresses them: at speed 60 a minute of market passes in a
second of wall time. The engine runs on the data's clock in replay, so holding times mean market time.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

Bar = tuple[float, float, float, float, float]


def sample_path() -> Path:
    return Path(str(resources.files("feeds") / "sample" / "btc_perp_1m_sample.csv.gz"))


GZIP_MAGIC = b"\x1f\x8b"
BAR_COLUMNS = ("timestamp", "open", "high", "low", "close")
EXPECTED = ("1-minute bars as CSV with the header timestamp,open,high,low,close[,volume], or a Binance "
            "capture of lines `<receive time ns> <json>`, either optionally gzip-compressed")  # fmt: skip
_CAPTURE_LINE = re.compile(r"^\d+ \{")
CHECKED_RECORDS = 20  # records the start-up check parses
TRADE_SEARCH_LINES = 10_000  # lines of a capture searched for a first trade


class Format(Enum):
    BARS = "1-minute bars"
    CAPTURE = "Binance capture"


class RecordingError(ValueError):
    """A replay file that cannot be replayed. The message, one line, names the file, the line when there is
    one, and the problem."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


def check_recording(path: Path, warmup: int = 100) -> Format:
    """Before anything starts: the file exists, its format is recognised, its first records parse and it
    holds something to replay. Raises RecordingError; returns the format."""
    fmt = detect_format(path)
    if fmt is Format.BARS:
        _check_bars(path, warmup)
    else:
        _check_capture(path)
    return fmt


def detect_format(path: Path) -> Format:
    """The recording's format, told by its first line (gunzipped if need be), never by the file's name. The
    one place formats are told apart: a new one is recognised here and added to EXPECTED."""
    for number, text in _numbered_lines(path):
        if not text.strip():
            continue
        if set(BAR_COLUMNS) <= set(_csv_fields(text)):
            return Format.BARS
        if _CAPTURE_LINE.match(text):
            return Format.CAPTURE
        raise RecordingError(path, number, f"not a recording: expected {EXPECTED}; found {_excerpt(text)}")
    raise RecordingError(path, 0, f"empty: expected {EXPECTED}")


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the file, read errors turned into a RecordingError that says where."""
    number = 0
    try:
        with _open(path) as fh:
            for number, line in enumerate(fh, 1):  # the except clauses below name the line reached
                yield number, line.rstrip("\r\n")
    except FileNotFoundError:
        raise RecordingError(path, 0, "no such file") from None
    except IsADirectoryError:
        raise RecordingError(path, 0, "is a directory, not a recording") from None
    except PermissionError:
        raise RecordingError(path, 0, "cannot be read: permission denied") from None
    except UnicodeDecodeError:
        raise RecordingError(path, number + 1, f"is not text: expected {EXPECTED}") from None
    except (OSError, EOFError) as err:  # a corrupt or truncated gzip file
        raise RecordingError(path, number + 1, f"cannot be read: {err}") from None


def _csv_fields(text: str) -> list[str]:
    return next(csv.reader([text]), [])


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _bar(row: dict[str, str]) -> Bar:
    """One CSV row as a bar; ValueError naming the column that does not parse."""
    try:
        ts = _epoch(row["timestamp"])
    except ValueError:
        raise ValueError(f"timestamp {row['timestamp']!r} is neither epoch seconds or milliseconds nor an "
                         "ISO 8601 time") from None  # fmt: skip
    prices = []
    for column in BAR_COLUMNS[1:]:
        try:
            px = float(row[column])
        except ValueError:
            px = math.nan
        if not math.isfinite(px) or px <= 0:
            raise ValueError(f"{column} {row[column]!r} is not a positive number")
        prices.append(px)
    return (ts, *prices)  # type: ignore[return-value]


def _check_bars(path: Path, warmup: int) -> None:
    lines = ((n, t) for n, t in _numbered_lines(path) if t.strip())
    _, header = next(lines)
    columns = _csv_fields(header)
    bars = 0
    for number, text in lines:
        fields = _csv_fields(text)
        if len(fields) != len(columns):
            raise RecordingError(path, number, f"has {len(fields)} fields, the header {len(columns)}")
        try:
            _bar(dict(zip(columns, fields, strict=True)))
        except ValueError as err:
            raise RecordingError(path, number, str(err)) from None
        bars += 1
        if bars > max(warmup, CHECKED_RECORDS):
            return
    raise RecordingError(path, 0, f"has {bars} bars: the first {warmup} warm the indicators up, so no tick "
                         "would be replayed")  # fmt: skip


def _capture_data(text: str) -> dict[str, Any]:
    """The `data` object of a capture line; ValueError saying what is wrong with the line."""
    stamp, _, raw = text.partition(" ")
    if not stamp.isdigit():
        raise ValueError("it does not start with a receive time in nanoseconds")
    try:
        message = json.loads(raw)
    except json.JSONDecodeError as err:
        at = len(stamp) + 1 + err.pos
        raise ValueError(f"its JSON does not parse ({err.msg} at character {at})") from None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict):
        raise ValueError("its JSON is not an object with a `data` object")
    if data.get("e") == "trade":
        stamp_ms, price = data.get("T"), data.get("p")
        try:
            ok = isinstance(stamp_ms, int | float) and not isinstance(stamp_ms, bool) and float(price) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError("a trade without a numeric time `T` and a positive price `p`")
    return data


def _check_capture(path: Path) -> None:
    checked = 0
    for number, text in _numbered_lines(path):
        if not text.strip():
            continue
        checked += 1
        try:
            data = _capture_data(text)
        except ValueError as err:
            if checked <= CHECKED_RECORDS:  # later malformed lines are skipped by the replay
                raise RecordingError(path, number, f"not a capture line: {err}: {_excerpt(text)}") from None
            continue
        if data.get("e") == "trade":
            return
        if number >= TRADE_SEARCH_LINES:
            break
    raise RecordingError(path, 0, f"no trade in its first {TRADE_SEARCH_LINES} lines: only trades are "
                         "replayed, so no tick would be")  # fmt: skip


def _open(path: Path) -> io.TextIOBase:
    """The file as text, gunzipped when it is gzip-compressed (told by its content, not its name)."""
    with path.open("rb") as fh:
        compressed = fh.read(2) == GZIP_MAGIC
    return gzip.open(path, "rt") if compressed else path.open()  # type: ignore[return-value]


def _epoch(text: str) -> float:
    if text.replace(".", "", 1).isdigit():
        n = float(text)
        return n / 1000.0 if n > 1e11 else n
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def read_bars(path: Path) -> list[Bar]:
    with _open(path) as fh:
        return [_bar(r) for r in csv.DictReader(fh)]


def bar_ticks(bars: list[Bar]) -> Iterator[tuple[float, float]]:
    for ts, o, h, low, c in bars:
        first, second = (low, h) if c >= o else (h, low)
        for i, px in enumerate((o, first, second, c)):
            yield ts + 15.0 * i, px


def capture_ticks(path: Path) -> Iterator[tuple[float, float]]:
    """Trades of a Binance capture: (trade time s, price); malformed lines are skipped."""
    with _open(path) as fh:
        for line in fh:
            _, _, raw = line.partition(" ")
            try:
                data = json.loads(raw).get("data", {})
                if data.get("e") == "trade":
                    yield data["T"] / 1000.0, float(data["p"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue


class Replay:
    """Feeds one symbol from a recording. `run` blocks until the recording ends (or `stop_after` ticks)."""

    def __init__(self, writer, symbol: str, path: Path, *, speed: float = 60.0, warmup: int = 100,
                 sleep=time.sleep, wall=time.time,
                 stop: threading.Event | None = None) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
        self.writer, self.symbol, self.path = writer, symbol, path
        self.speed, self.warmup, self.wall = speed, warmup, wall
        self.stop = stop or threading.Event()  # set by a SIGTERM handler: the replay ends at once
        self.sleep = self.stop.wait if sleep is time.sleep else sleep

    def run(self, stop_after: int | None = None) -> int:
        if detect_format(self.path) is Format.BARS:
            bars = read_bars(self.path)
            history, live = bars[: self.warmup], bars[self.warmup :]
            ticks = list(bar_ticks(live))
            t0 = live[0][0] if live else 0.0
        else:
            history, ticks = [], list(capture_ticks(self.path))
            t0 = ticks[0][0] if ticks else 0.0
        start = max(self.wall(), self.writer.last_ts(self.symbol) + 60.0)
        start -= start % 60  # keep candle boundaries on whole minutes
        shift = start - t0
        if history:
            self.writer.history(self.symbol, [(ts + shift, o, h, low, c) for ts, o, h, low, c in history])
        wall0 = self.wall()
        n = 0
        for ts, px in ticks:
            if self.stop.is_set():
                break
            due = wall0 + (ts - t0) / self.speed
            delay = due - self.wall()
            if delay > 0:
                self.sleep(delay)
            self.writer.tick(self.symbol, ts + shift, px)
            n += 1
            if stop_after is not None and n >= stop_after:
                break
        return n

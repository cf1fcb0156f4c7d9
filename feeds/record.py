"""`scalper record OUT`: the live feed's ticks, read from the tick streams in Redis, appended to a file in
scalper's recording format (feeds/data/recording.py), so any live session can be replayed
(`scalper run --replay OUT`) and backtested (`scalper backtest OUT`).

Each stream is read with XREAD from a cursor, the id of the last entry written out: nothing that reaches a
stream between two reads is missed, and nothing is written twice. It starts after the newest tick already
there (`from_start`: with the oldest the stream still holds). On stop (Ctrl-C, SIGTERM, the duration) what the
streams hold up to then is read and written before the file is closed. The feed trims its streams (about an
hour of a busy symbol); a recorder that falls that far behind finds its cursor trimmed away, and says that
ticks may be missing there, instead of pretending the recording is whole.

Written gzip-compressed with `compress`; a compressed file is flushed after every read, so a recorder
killed outright leaves a file readable up to its last read. Appending to an existing recording keeps its
compression (told by its content) and adds no second header.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import redis

from feeds.data.detect import Format, detect
from feeds.data.errors import DataError
from feeds.data.recording import preamble, row
from feeds.data.source import Source
from statemachines.keys import Keys

log = logging.getLogger("scalper.record")

READ_COUNT = 10_000  # entries per stream per read: the feed's trim (50,000) is never reached in one
BLOCK_MS = 250  # how long a read waits for ticks: also how soon a stop is seen


@dataclass
class RecordSummary:
    ticks: dict[str, int] = field(default_factory=dict)  # written, by symbol
    overruns: dict[str, int] = field(default_factory=dict)  # times a stream was trimmed past the cursor

    @property
    def total(self) -> int:
        return sum(self.ticks.values())


class Recorder:
    """Reads the tick streams of `symbols` from their cursors and writes each entry as a recording row."""

    def __init__(self, client: redis.Redis, keys: Keys, symbols: Sequence[str], out: BinaryIO, *,
                 from_start: bool = False) -> None:  # fmt: skip
        self.client, self.out = client, out
        self.symbol_of = {keys.ticks(s): s for s in symbols}
        self.cursors = {key: "0-0" if from_start else self._newest(key) for key in self.symbol_of}
        self.summary = RecordSummary({s: 0 for s in symbols}, {s: 0 for s in symbols})

    def _newest(self, key: str) -> str:
        newest = self.client.xrevrange(key, count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def poll(self, block_ms: int | None = None) -> int:
        """One read of every stream (waiting up to `block_ms` for a tick; None: not at all); the rows are
        written and flushed. Returns the number of ticks written."""
        self._check_trimmed()
        # block=0 would mean "wait forever" to Redis: a non-blocking read leaves `block` out.
        found = self.client.xread(self.cursors, count=READ_COUNT, **({"block": block_ms} if block_ms else {}))
        written = 0
        for key, entries in found or []:
            key = _text(key)
            symbol = self.symbol_of[key]
            self.out.write(b"".join(row(symbol, fields) for _, fields in entries))
            self.cursors[key] = _text(entries[-1][0])
            self.summary.ticks[symbol] += len(entries)
            written += len(entries)
        if written:
            self.out.flush()
        return written

    def drain(self) -> int:
        """Everything the streams hold after the cursors, read without waiting."""
        total = 0
        while n := self.poll(None):
            total += n
        return total

    def _check_trimmed(self) -> None:
        """A stream whose oldest entry is newer than the cursor was trimmed past it. The next read goes on
        from the oldest entry left, so one gap is counted once."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.cursors:
            pipe.xrange(key, count=1)
        for (key, cursor), oldest in zip(self.cursors.items(), pipe.execute(), strict=True):
            if cursor != "0-0" and oldest and _id(_text(oldest[0][0])) > _id(cursor):
                symbol = self.symbol_of[key]
                self.summary.overruns[symbol] += 1
                log.warning("%s: the tick stream was trimmed past the recorder (after %s): ticks may be "
                            "missing there", symbol, cursor)  # fmt: skip


def record(
    client: redis.Redis,
    keys: Keys,
    symbols: Sequence[str],
    path: Path,
    *,
    stop: threading.Event,
    duration: float = 0.0,
    compress: bool = False,
    from_start: bool = False,
) -> RecordSummary:
    """Record until `stop` is set or `duration` seconds (0: no limit) have passed."""
    deadline = time.monotonic() + duration if duration else None
    with open_recording(path, compress=compress) as out:
        recorder = Recorder(client, keys, symbols, out, from_start=from_start)
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            wait = BLOCK_MS if left is None else max(1, min(BLOCK_MS, int(left * 1000)))
            recorder.poll(wait)
        recorder.drain()
    return recorder.summary


def open_recording(path: Path, *, compress: bool) -> BinaryIO:
    """The file to append rows to, its preamble written if it is new. An existing file must be a scalper
    recording, and keeps its own compression."""
    existing = path.exists() and path.stat().st_size > 0
    if existing:
        try:
            found = detect(Source(path))
        except DataError as err:
            problem = f"exists and is not a scalper recording ({err.problem}): choose another file"
            raise DataError(path, 0, problem) from None
        if found is not Format.SCALPER_TICKS:
            problem = f"exists and is a {found.value}, not a scalper recording: choose another file"
            raise DataError(path, 0, problem)
        compress = Source(path).compressed
    if compress:
        out: BinaryIO = gzip.open(path, "ab")  # type: ignore[assignment]  # noqa: SIM115 (the caller closes)
    else:
        out = path.open("ab")
        if existing and not _ends_with_newline(path):
            out.write(b"\n")  # a line cut off by a recorder killed mid-write stays a bad line of its own
    if not existing:
        out.write(preamble())
        out.flush()
    return out


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)

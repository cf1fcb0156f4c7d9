"""Replay of recorded market data as live ticks: the offline demo and the end-to-end tests.

Two formats are read:
- 1-minute bars, CSV `timestamp,open,high,low,close,volume` (optionally .gz): the first `warmup` bars go to
  the history stream, and every later bar becomes four ticks, open → the nearer extreme → the other
  extreme → close, 15 s apart;
- a raw Binance USDⓈ-M capture, lines `<recv ns> <json>` (.gz): each trade becomes a tick.

Times are rebased so the replay starts now, or just after the newest tick already in Redis (a restarted
replay never goes back in time), and `speed` compresses them: at speed 60 a minute of market passes in a
second of wall time. The engine runs on the data's clock in replay, so holding times mean market time.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

Bar = tuple[float, float, float, float, float]


def sample_path() -> Path:
    return Path(str(resources.files("feeds") / "sample" / "btc_perp_1m_sample.csv.gz"))


def _open(path: Path) -> io.TextIOBase:
    return gzip.open(path, "rt") if path.suffix == ".gz" else path.open()  # type: ignore[return-value]


def _epoch(text: str) -> float:
    if text.replace(".", "", 1).isdigit():
        n = float(text)
        return n / 1000.0 if n > 1e11 else n
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def read_bars(path: Path) -> list[Bar]:
    with _open(path) as fh:
        rows = csv.DictReader(fh)
        return [
            (_epoch(r["timestamp"]), *(float(r[k]) for k in ("open", "high", "low", "close"))) for r in rows
        ]


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
        if self.path.name.endswith((".csv", ".csv.gz")):
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

"""Ticks into Redis: one trimmed stream per symbol, and the history stream the engine warms up from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import redis

from statemachines.keys import Keys

TICKS_MAXLEN = 50_000  # about an hour of a busy symbol; the engine reads within milliseconds
HISTORY_MAXLEN = 500  # closed candles kept for warm-up: MACD(12,26,9) needs 34, the rest is margin


class TickWriter:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.published = 0

    def tick(
        self, symbol: str, ts: float, px: float, bid: float | None = None, ask: float | None = None
    ) -> str:
        """Publish one tick; returns its stream entry id."""
        fields = {"px": repr(px), "ts": repr(ts)}
        if bid is not None and ask is not None:
            fields |= {"bid": repr(bid), "ask": repr(ask)}
        entry = self.client.xadd(self.keys.ticks(symbol), fields, maxlen=TICKS_MAXLEN, approximate=True)
        self.published += 1
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    def history(self, symbol: str, candles: Iterable[tuple[float, float, float, float, float]]) -> int:
        """Closed candles (start ts, open, high, low, close), oldest first; those the stream already holds
        (a feed that started again warms up from the same candles) are left out."""
        after = float("-inf")
        for _, fields in self.client.xrevrange(self.keys.history(symbol), count=1):
            with contextlib.suppress(KeyError, ValueError):  # a record the engine quarantines: not a bound
                after = float(fields[b"ts"])
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for ts, o, h, low, c in candles:
            if ts <= after:
                continue
            pipe.xadd(
                self.keys.history(symbol),
                {"ts": repr(ts), "o": repr(o), "h": repr(h), "l": repr(low), "c": repr(c)},
                maxlen=HISTORY_MAXLEN,
                approximate=True,
            )
            n += 1
        pipe.execute()
        return n

    def last_ts(self, symbol: str) -> float:
        """Time of the newest tick or history candle, 0 if none (a replay restart continues after it). A
        record that cannot be parsed is the engine's to quarantine: it is skipped here, never a crash of the
        feed (the seeded chaos pass found one crash-looping it)."""
        latest = 0.0
        for key in (self.keys.ticks(symbol), self.keys.history(symbol)):
            for _, fields in self.client.xrevrange(key, count=100):
                with contextlib.suppress(KeyError, ValueError):
                    ts = float(fields[b"ts"])
                    if 0 < ts < float("inf"):
                        latest = max(latest, ts)
                        break
        return latest

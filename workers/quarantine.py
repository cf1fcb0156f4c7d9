"""Records that cannot be parsed are quarantined, never a crash loop.

A reader (the engine's ticks, events, operator commands, outbox, history, a position's hash) that meets a
record it cannot parse moves a copy to the dead-letter stream with the reason, counts it, logs it once per
source and reason, and goes on with the rest. One bad record must not stop a shard: before this, a malformed
control entry crashed the engine, its restart replayed the control stream, and it crashed again.

    {prefix}:dead-letter      STREAM  source reason ref record(JSON) process ts; trimmed to ~10,000
    {prefix}:quarantined      HASH    source -> records quarantined so far
    {prefix}:metrics:dropped  HASH    "source|reason" -> records dropped (the metric; e.g. ticks|outside_band)

    redis-cli XREVRANGE scalper:dead-letter + - COUNT 10
    redis-cli HGETALL scalper:quarantined
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import redis

from statemachines.keys import Keys
from workers.redis_trouble import diagnose

log = logging.getLogger("scalper.quarantine")

DEAD_LETTER_MAXLEN = 10_000
PENDING_MAX = 10_000  # entries kept in memory while Redis refuses them


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


class Quarantine:
    def __init__(self, client: redis.Redis, keys: Keys, process: str = "") -> None:
        self.client = client
        self.keys = keys
        self.process = process or f"pid{os.getpid()}"
        self.counts: dict[str, int] = {}
        self._logged: set[tuple[str, str]] = set()
        self._pending: list[dict[str, str]] = []
        self._refused = False  # the last flush was refused: said once

    def put(self, source: str, reason: str, record: Mapping[Any, Any] | str | bytes, *,
            ref: str = "") -> None:  # fmt: skip
        """Quarantine one record of `source` (e.g. "control", "events:BTC-USDT-SWAP") that failed with
        `reason`, "code: detail" (logged once per source and code); `ref` names it where it was (a stream
        entry id, a key). Buffered: `flush` writes what was put (the engine once per loop turn, so a flood of
        bad ticks costs one round trip a turn)."""
        if isinstance(record, Mapping):
            body = json.dumps({_text(k): _text(v) for k, v in record.items()}, sort_keys=True)
        else:
            body = _text(record)
        self.counts[source] = self.counts.get(source, 0) + 1
        kind = reason.split(":", 1)[0]
        first = (source, kind) not in self._logged
        self._logged.add((source, kind))
        (log.warning if first else log.debug)(
            "quarantined a %s record %s: %s%s", source, ref, reason,
            "" if not first else " (further ones of this kind are counted, not logged)",
        )  # fmt: skip
        self._pending.append({"source": source, "reason": reason[:500], "ref": ref, "record": body[:4000],
                              "process": self.process, "ts": repr(time.time())})  # fmt: skip

    def flush(self) -> None:
        """Write the buffered entries in one round trip. Never raises for Redis refusing them (out of
        memory, say): they stay buffered (up to PENDING_MAX, the oldest dropped first) and go with a later
        flush, and the reader goes on. One log line per refusal, not per flush."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            pipe = self.client.pipeline(transaction=False)
            for fields in pending:
                pipe.xadd(self.keys.dead_letter(), fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
                source = fields["source"].split(":", 1)[0]
                pipe.hincrby(self.keys.quarantined(), source, 1)
                code = fields["reason"].split(":", 1)[0][:40]  # the reason's code: a bounded label
                pipe.hincrby(self.keys.metric("dropped"), f"{source}|{code}", 1)
            pipe.execute()
        except redis.ResponseError as err:
            self._pending = (pending + self._pending)[-PENDING_MAX:]
            if not self._refused:
                trouble = diagnose(err)  # not redis-py's text: it quotes the pipeline's commands
                why = trouble.what if trouble is not None else str(err)
                log.error("could not write %d dead-letter entries (%s): kept until Redis takes them",
                          len(pending), why)  # fmt: skip
            self._refused = True
        else:
            self._refused = False


def read_quarantined(client: redis.Redis, keys: Keys, count: int = 20) -> list[dict[str, str]]:
    """The newest dead-letter entries, newest first (for `scalper` commands and the dashboard)."""
    rows = client.xrevrange(keys.dead_letter(), count=count)
    return [{"id": _text(i), **{_text(k): _text(v) for k, v in f.items()}} for i, f in rows]

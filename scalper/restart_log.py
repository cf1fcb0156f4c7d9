"""The supervisor's restarts, recorded in Redis for `scalper notify` (and anyone with redis-cli):

    {prefix}:restarts   STREAM  name code ran_s restarts error ts; trimmed to ~1,000

A child often exits because Redis is in trouble, so a record Redis refuses is kept and tried again on the
supervisor's next loop turn (at most PENDING_MAX kept), never an error of the supervisor's own.
"""

from __future__ import annotations

import time

import redis

from statemachines.keys import Keys

MAXLEN = 1_000
PENDING_MAX = 100


class RestartLog:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys
        self.pending: list[dict[str, str]] = []

    def add(self, name: str, code: str, ran_s: float, restarts: int, error: str) -> None:
        """One restart: `code` the exit in words, `error` the child's last stderr line (a log line: never a
        secret), cut to 300 characters."""
        self.pending.append({"name": name, "code": code, "ran_s": f"{ran_s:.1f}", "restarts": str(restarts),
                             "error": error[:300], "ts": repr(time.time())})  # fmt: skip
        self.pending = self.pending[-PENDING_MAX:]
        self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for fields in self.pending:
                pipe.xadd(self.keys.restarts(), fields, maxlen=MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.execute()
        except redis.RedisError:
            return  # tried again on the next turn
        self.pending = []

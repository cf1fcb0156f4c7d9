"""A lockstep replay: the next tick is fed only once the system is done with the last one.

A replay paced by the clock races the processes: on a busy machine an order decided on one tick may reach the
paper venue after the next, and fill on another price. In lockstep the feed waits, before each tick, until
the engine has stepped on the previous one and is idle (workers/engine.py `idle`, published in
`{prefix}:engine:lockstep`), no order job is queued, running or waiting for a retry, and every exchange
event has been read and applied. Then a replay decides exactly as a backtest of the same file does
(tests/test_backtest_parity.py), as fast as the processes go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from statemachines.keys import Keys
from workers.relay import QUEUE

log = logging.getLogger("scalper.feed")

_RQ_KEYS = (f"rq:queue:{QUEUE}", f"rq:wip:{QUEUE}", f"rq:scheduled:{QUEUE}", f"rq:deferred:{QUEUE}")


class Lockstep:
    def __init__(self, client: redis.Redis, keys: Keys, symbols: list[str], *, poll_s: float = 0.002,
                 sleep: Callable[[float], object] = time.sleep) -> None:  # fmt: skip
        self.client, self.keys, self.symbols = client, keys, symbols
        self.poll_s, self.sleep = poll_s, sleep
        # The engine keeps its mark only while a lockstep feed asks (an extra write per tick otherwise);
        # the mark of an earlier lockstep run may be stale, so it goes.
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.lockstep())
        pipe.set(keys.lockstep_on(), "1")
        pipe.execute()

    def settled(self, symbol: str, last_id: str) -> bool:
        """The engine stepped on `last_id` (the symbol's last tick fed, "" before the first) and is idle,
        and nothing of the order path is in flight."""
        cursor, idle = self.client.hmget(self.keys.lockstep(), [symbol, "idle"])
        if idle != b"1" or (last_id and (cursor or b"").decode() != last_id):
            return False
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(_RQ_KEYS[0])
        for key in _RQ_KEYS[1:]:
            pipe.zcard(key)
        for s in self.symbols:
            pipe.xinfo_groups(self.keys.events(s))  # created by the engine before it was ever idle
        replies = pipe.execute()
        counts, groups = replies[: len(_RQ_KEYS)], replies[len(_RQ_KEYS):]
        return not any(counts) and all(not g.get("pending") and not g.get("lag") for gs in groups for g in gs)

    def wait(self, symbol: str, last_id: str) -> None:
        start = time.monotonic()
        warned = False
        while not self.settled(symbol, last_id):
            self.sleep(self.poll_s)
            if not warned and time.monotonic() - start > 30:
                log.warning("lockstep: the engine has not settled tick %s of %s for 30 s; waiting", last_id,
                            symbol)  # fmt: skip
                warned = True

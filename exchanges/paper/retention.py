"""The paper venue's records, bounded: finished orders, stops that are no longer live, fills and served
requests are kept for the venue's history (`exchange.paper_history_s`, 7 days by default as OKX keeps its
orders history), then removed. Within it the venue answers `get_order` and `recent_orders` as before; the
reconciler needs an hour of them (workers/lost_records.py), the settings allow no less than a day.

Finished orders and stops wait in the account's `done` sorted sets, scored by when they finished
(state.py); each is removed with its queue entry in one script, and only while it is still finished by then.
The fills and served-request streams are trimmed by their entry ids (the Redis server's clock). Records
written before the queues existed are queued once, as finished now, by an incremental SCAN.

`run_once(now)` runs in the venue's loop (the account process, the account's single writer), does
something at most every EVERY_S and then a bounded amount of work.
"""

from __future__ import annotations

import logging
import re

import redis

from exchanges.paper.state import PaperState
from statemachines.redis_text import as_str

log = logging.getLogger("scalper.paper")

BATCH = 500  # finished orders, and finished stops, removed per call at most
TRIM_LIMIT = 5_000  # stream entries looked at per trim (XTRIM ... LIMIT): whole nodes of ~100 entries
SCAN_COUNT = 1_000  # keys looked at per call while queueing records written before the queues existed
EVERY_S = 10.0

# Remove finished records that are still finished and past the cutoff, with their queue entries.
# KEYS: the done zset, then one record hash per id; ARGV: cutoff, then the ids in the order of their keys
# -> how many were removed
_REMOVE_FINISHED = """
local n = 0
for i = 2, #KEYS do
  local when = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if when and tonumber(when) <= tonumber(ARGV[1]) then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""

# Queue a record written before the queues existed, if it is finished and not queued yet.
# KEYS: the record hash, the done zset; ARGV: id, now, the field holding its state, the live states (any)
_QUEUE_OLD = """
local state = redis.call('HGET', KEYS[1], ARGV[3])
if not state then
  return 0
end
for i = 4, #ARGV do
  if state == ARGV[i] then
    return 0
  end
end
return redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
"""

_LIVE = {"order": ("live", "partially_filled"), "stop": ("live",)}


class PaperRetention:
    def __init__(self, state: PaperState, served_key: str, history_s: float) -> None:
        """`history_s`: how long finished records are kept (0 = forever: `run_once` does nothing)."""
        self.state = state
        self.client = state.client
        self.served_key = served_key
        self.history_s = history_s
        self._remove = self.client.register_script(_REMOVE_FINISHED)
        self._queue_old = self.client.register_script(_QUEUE_OLD)
        self.last_run = float("-inf")  # the `now` of the last pass, once it is over
        self._scan: dict[str, int | None] = {"order": 0, "stop": 0}  # cursor; None once done

    def run_once(self, now: float) -> int | None:
        """One bounded pass when due: returns how many records it removed (stream entries included), None
        when not due or keeping everything."""
        if not self.history_s or 0 <= now - self.last_run < EVERY_S:
            return None
        try:
            return self._sweep(now)
        except redis.ResponseError as err:
            if _passing(err):  # BUSY, OOM, READONLY...: an outage the venue's loop waits out
                raise
            log.warning("paper: retention pass skipped: %s", err)
            return None
        finally:
            self.last_run = now

    def _sweep(self, now: float) -> int:
        cutoff = now - self.history_s
        removed = 0
        for kind in ("order", "stop"):
            self._queue_older_records(kind, now)
            done = self.state.key(f"{kind}s", "done")
            ids = [as_str(i) for i in self.client.zrangebyscore(done, "-inf", cutoff, start=0, num=BATCH)]
            if ids:
                keys = [done, *(self.state.key(kind, i) for i in ids)]
                removed += int(self._remove(keys=keys, args=[repr(cutoff), *ids]))
        min_id = f"{int(cutoff * 1000)}-0"
        pipe = self.client.pipeline(transaction=False)
        for stream in (self.state.key("fills"), self.served_key):
            pipe.xtrim(stream, minid=min_id, approximate=True, limit=TRIM_LIMIT)
        removed += sum(int(n) for n in pipe.execute())
        if removed:
            log.info("paper: removed %d records older than the venue's history", removed)
        return removed

    def _queue_older_records(self, kind: str, now: float) -> None:
        """Queue, as finished now, the finished records of `kind` that no queue holds (written before the
        queues existed): SCAN_COUNT keys per call until the keyspace has been walked once."""
        cursor = self._scan[kind]
        if cursor is None:
            return
        cursor, keys = self.client.scan(cursor, match=self.state.key(kind, "*"), count=SCAN_COUNT)
        self._scan[kind] = int(cursor) or None
        done = self.state.key(f"{kind}s", "done")
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            rid = as_str(key).rsplit(":", 1)[1]
            self._queue_old(keys=[key, done], args=[rid, repr(now), "state", *_LIVE[kind]], client=pipe)
        if keys:
            pipe.execute()


_PASSING = re.compile(r"(?:^|error: )(BUSY|OOM|READONLY|LOADING|MISCONF|MASTERDOWN|TRYAGAIN)\b")


def _passing(err: redis.ResponseError) -> bool:
    """A refusal that passes with the outage, alone or in a pipeline's words (the exchanges layer does not
    import workers/redis_trouble.py's diagnosis)."""
    return bool(_PASSING.search(str(err)))

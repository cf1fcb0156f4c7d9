"""What the OKX client counts in this process until the process writes it to Redis: WebSocket reconnects by
stream, rate-limit replies (50011/50013) by request kind.

The client has no Redis; the process that owns it adds `write_pending` to a pipeline it sends anyway (the
account process's events, an order job's outcome, the reconciler's verdict, the feed after a reconnect), and
`scalper web`'s /metrics exports the totals (statemachines/counters.py). Taken, not copied: whichever of a
process's writers sends them first, each is counted once. A pipeline that then fails loses those few.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from statemachines.keys import Keys

RECONNECTS: Counter[str] = Counter()  # connection name (okx-ws, okx-public, okx-business) -> reconnects
RATE_LIMITED: Counter[str] = Counter()  # request kind -> rate-limit replies


def pending() -> bool:
    return bool(RECONNECTS or RATE_LIMITED)


def write_pending(pipe: Any, keys: Keys) -> None:
    """HINCRBY what was counted since the last call onto `pipe` (nothing when nothing was)."""
    for counter, name in ((RECONNECTS, "reconnects"), (RATE_LIMITED, "rate-limited")):
        taken = dict(counter)
        counter.subtract(taken)
        for field, n in taken.items():
            if n > 0:
                pipe.hincrby(keys.metric(name), field, n)
        for field in [f for f, n in counter.items() if n == 0]:
            del counter[field]

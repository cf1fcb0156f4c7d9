"""The outbox relay: order intents written with their transitions are handed to RQ, then removed.

The enqueue is one MULTI (queue set, job hash, push: RQ's own commands), so the job reaches a worker one
round trip after the outbox is read; the XDEL follows only once that succeeded (in the same MULTI, a
failed push would not stop the XDEL). A crash between the enqueue and the removal enqueues the intent
again on the next pass; that is safe because the job id is the intent's (action + client order id) and
every job is idempotent: see workers/orders.py.
"""

from __future__ import annotations

import redis
from rq import Queue, Retry

from statemachines.intents import OrderIntent
from statemachines.keys import Keys

QUEUE = "orders"
JOB = "workers.orders.run_intent"
# A job that raised (exchange busy, unknown outcome still unknown) runs again after these pauses.
RETRY = Retry(max=6, interval=[0.2, 0.5, 1, 2, 5, 10])


def job_id(intent: OrderIntent) -> str:
    return f"{intent.action.value}-{intent.cl_ord_id}"


class Relay:
    def __init__(self, client: redis.Redis, keys: Keys, queue: Queue | None = None) -> None:
        self.client = client
        self.keys = keys
        self.queue = queue or Queue(QUEUE, connection=client)

    def flush(self, symbols: list[str], count: int = 100) -> int:
        """Move every pending intent of `symbols` to RQ; returns how many were handed over."""
        moved = 0
        keys = [self.keys.outbox(s) for s in symbols]
        pipe = self.client.pipeline(transaction=False)  # every outbox in one round trip
        for key in keys:
            pipe.xrange(key, count=count)
        for key, entries in zip(keys, pipe.execute() if keys else [], strict=True):
            for entry_id, raw in entries:
                intent = OrderIntent.from_fields(raw)
                with self.queue.connection.pipeline(transaction=True) as txn:
                    self.queue.enqueue(
                        JOB,
                        intent.to_fields(),
                        job_id=job_id(intent),
                        retry=RETRY,
                        result_ttl=3600,
                        failure_ttl=86400,
                        description=f"{intent.action.value} {intent.symbol} {intent.cl_ord_id}",
                        pipeline=txn,
                    )
                    txn.execute()  # raises if any command of it failed: the intent stays in the outbox
                self.client.xdel(key, entry_id)
                moved += 1
        return moved

"""Order intents to RQ: in the transition's own script (RqHandOff), or through the outbox (Relay).

The engine's store runs RQ's enqueue commands inside the transition script (statemachines/lua.py): the
decision and the job exist together or not at all, and the job reaches a worker with the transition's one
round trip. RqHandOff builds those commands with RQ's own enqueue, on a pipeline that is never executed, so
the job hash is exactly what `Queue.enqueue` writes.

A store without a hand-off (a tool, a test) writes the intent to the symbol's outbox instead, and the
engine's relay moves it to RQ, then removes it. The enqueue is one MULTI (queue set, job hash, push: RQ's
own commands), so the job reaches a worker one round trip after the outbox is read; the XDEL follows only
once that succeeded (in the same MULTI, a failed push would not stop the XDEL). A crash between the enqueue
and the removal enqueues the intent again on the next pass; that is safe because the job id is the
intent's (action + client order id) and every job is idempotent: see workers/orders.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from statemachines.intents import IntentAction, OrderIntent
from statemachines.keys import Keys
from workers.quarantine import Quarantine

QUEUE = "orders"
JOB = "workers.orders.run_intent"
# A live job settles its order within about 10 s (a 5 s REST timeout, then queries): one started longer ago
# than this was abandoned by a dead worker.
IN_FLIGHT_S = 30.0
# A job that raised (exchange busy, unknown outcome still unknown) runs again after these pauses.
RETRY = Retry(max=6, interval=[0.2, 0.5, 1, 2, 5, 10])


def job_id(intent: OrderIntent) -> str:
    return client_job_id(intent.action, intent.cl_ord_id)


def client_job_id(action: IntentAction, cl_ord_id: str) -> str:
    return f"{action.value}-{cl_ord_id}"


def job_in_flight(client: redis.Redis, action: IntentAction, cl_ord_id: str, now: float) -> bool:
    """A request for this client id may be on its way to the exchange: its job is sending it (started
    less than IN_FLIGHT_S ago), or an earlier run of it had an unknown outcome and it waits for its retry
    (scheduled, or queued with retries used). Its absence at the exchange then proves nothing yet.
    A job that has not run yet is not in flight: it loads the position first, and skips if the position
    moved on. (A job started longer ago belongs to a worker that died; RQ's registries deal with it.)"""
    try:
        job = Job.fetch(client_job_id(action, cl_ord_id), connection=client)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    retried = job.retries_left is not None and RETRY.max is not None and job.retries_left < RETRY.max
    if status == JobStatus.SCHEDULED or (status == JobStatus.QUEUED and retried):
        return True
    started = job.started_at
    return status == JobStatus.STARTED and started is not None and now - started.timestamp() < IN_FLIGHT_S


def enqueue(queue: Queue, intent: OrderIntent, pipeline: redis.client.Pipeline) -> None:
    """RQ's enqueue of the intent's job (deterministic id, retries, TTLs), onto `pipeline`."""
    queue.enqueue(
        JOB,
        intent.to_fields(),
        job_id=job_id(intent),
        retry=RETRY,
        result_ttl=3600,
        failure_ttl=86400,
        description=f"{intent.action.value} {intent.symbol} {intent.cl_ord_id}",
        pipeline=pipeline,
    )


class RqHandOff:
    """The store's `handoff` (statemachines/store.py): RQ's enqueue commands for an intent's job."""

    def __init__(self, client: redis.Redis, queue: Queue | None = None) -> None:
        self.queue = queue or Queue(QUEUE, connection=client)

    def __call__(self, fields: Mapping[str, str]) -> Sequence[Sequence[Any]]:
        pipe = self.queue.connection.pipeline(transaction=False)
        enqueue(self.queue, OrderIntent.from_fields(fields), pipe)
        return [args for args, _options in pipe.command_stack]  # recorded, never executed


class Relay:
    def __init__(self, client: redis.Redis, keys: Keys, queue: Queue | None = None) -> None:
        self.client = client
        self.keys = keys
        self.queue = queue or Queue(QUEUE, connection=client)

    def hand_over(self, intent: OrderIntent) -> None:
        """The intent's job to RQ now, in one MULTI (RQ's own enqueue commands)."""
        with self.queue.connection.pipeline(transaction=True) as txn:
            enqueue(self.queue, intent, txn)
            txn.execute()

    def flush(self, symbols: list[str], count: int = 100, quarantine: Quarantine | None = None) -> int:
        """Move every pending intent of `symbols` to RQ; returns how many were handed over. An entry that
        is not an intent is moved to `quarantine` (without one, the error propagates)."""
        moved = 0
        keys = [self.keys.outbox(s) for s in symbols]
        pipe = self.client.pipeline(transaction=False)  # every outbox in one round trip
        for key in keys:
            pipe.xrange(key, count=count)
        for key, entries in zip(keys, pipe.execute() if keys else [], strict=True):
            for entry_id, raw in entries:
                try:
                    intent = OrderIntent.from_fields(raw)
                except (KeyError, ValueError, ArithmeticError) as err:
                    if quarantine is None:
                        raise
                    ref = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                    why = f"not_intent: not an order intent: {err!r}"
                    quarantine.put(f"outbox:{Keys.symbol_of(key)}", why, raw, ref=ref)
                    quarantine.flush()  # written before the entry goes: a kill in between must not lose it
                    self.client.xdel(key, entry_id)
                    continue
                self.hand_over(intent)  # raises if any command of it failed: the intent stays in the outbox
                self.client.xdel(key, entry_id)
                moved += 1
        return moved

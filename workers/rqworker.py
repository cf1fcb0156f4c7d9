"""The order worker: RQ's `SimpleWorker` with fewer Redis round trips between taking a job and running it.

Stock RQ 2.x, after the BLMOVE that takes a job, does six round trips before the job function starts: the
job's HGETALL, a heartbeat (HSET, then EXPIRE), `prepare_execution` (a MULTI), `prepare_job_execution`
(another MULTI) and the PERSIST of `Job.perform`. On loopback each costs 0.1-0.2 ms, most of the order
path's budget. `OrderWorker` writes the same keys and fields, in the same order, with two:

- the heartbeat right after a dequeue is folded into the job's bookkeeping, which heartbeats anyway;
- `prepare_execution` and `prepare_job_execution` go out as one MULTI (atomic, so the worker, its
  execution, the StartedJobRegistry and the job's `started` status can never disagree), and the PERSIST
  of the job's key with them (`OrderJob.perform` leaves it out);
- a heartbeat outside a job (the idle loop) is one pipelined round trip instead of two.

And `preload`: hashes the job reads first (an order job's position) go out with that MULTI, read atomically
as the job is marked started, and reach the job as `job.preloaded`: one round trip less inside the job.

Nothing else changes: the job is registered in the StartedJobRegistry (with its execution and its TTL)
before the job function is called, so a killed worker's job is still found and failed or retried by RQ's
registry cleanup; retries with back-off, the FailedJobRegistry, results and deterministic job ids are
RQ's own code paths. Checked against the stock worker in tests/test_rqworker.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, _job_stack
from rq.utils import now
from rq.worker import WorkerStatus


class OrderJob(Job):
    """RQ's Job, but `perform` does not PERSIST the job's key: OrderWorker sent that with the job's
    bookkeeping. Otherwise `Job.perform` as it is (RQ 2.12): the job stack is what `get_current_job` reads.
    `preloaded`: key -> HGETALL reply, read with the bookkeeping (see OrderWorker's `preload`)."""

    preloaded: dict[str, dict[bytes, bytes]]

    def perform(self) -> Any:
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result


class OrderWorker(SimpleWorker):
    """`SimpleWorker` with the bookkeeping before a job in one MULTI (see the module doc)."""

    def __init__(
        self, *args: Any, preload: Callable[[Job], Sequence[str]] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("job_class", OrderJob)
        super().__init__(*args, **kwargs)
        self.preload = preload  # the hashes a job reads first: read with its bookkeeping
        # A stop was asked for (SIGTERM): `work()` returning without one means RQ's loop quit on an error.
        self.stop_requested = False
        self._dequeued = False  # a job was just taken: the next bare heartbeat goes with its bookkeeping
        self._prepared: str | None = None  # the job whose prepare_job_execution execute_job already did

    def request_stop(self, signum: Any = None, frame: Any = None) -> None:
        # RQ's SIGTERM/SIGINT handler. Idle, it raises StopRequested without setting _stop_requested.
        self.stop_requested = True
        super().request_stop(signum, frame)

    def reorder_queues(self, reference_queue: Queue) -> None:
        # RQ calls this right after a successful dequeue, just before its post-dequeue heartbeat.
        super().reorder_queues(reference_queue)
        self._dequeued = True

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        if self._dequeued:
            # execute_job's MULTI follows at once and heartbeats with the job's TTL.
            self._dequeued = False
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """`SimpleWorker.execute_job` with `prepare_execution` and `prepare_job_execution` in one MULTI."""
        self._dequeued = False
        ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            # rq.executions.prepare_execution
            self.execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            # BaseWorker.prepare_job_execution (perform_job runs it with this condition)
            self.set_current_job_id(job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.persist(job.key)  # Job.perform's first command (OrderJob leaves it out)
            keys = list(self.preload(job)) if self.preload is not None else []
            for key in keys:
                pipe.hgetall(key)
            replies = pipe.execute()
        job.preloaded = dict(zip(keys, replies[len(replies) - len(keys) :], strict=True))
        self._prepared = job.id
        self.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")
        try:
            self.perform_job(job, queue)
        finally:
            self._prepared = None
        self.set_state(WorkerStatus.IDLE)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if self._prepared == job.id:
            return  # written by execute_job's MULTI
        super().prepare_job_execution(job, remove_from_intermediate_queue)

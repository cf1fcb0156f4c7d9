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

And Redis trouble is waited out where it happens. Stock RQ retries only a lost connection, and only while
it waits for a job, after a wait that doubles up to 60 s (a job enqueued after Redis came back waited up to
a minute) and with an error logged per attempt; any other error (out of memory, MISCONF, a timeout, a busy
or loading server) quits its loop, and kills its scheduler process. OrderWorker and OrderScheduler wait out
every transient error (workers/redis_trouble.py) in the idle loop, heartbeats and maintenance, the
bookkeeping before a job and the scheduler's loop, trying again within `max_wait_s`, logging once per
outage.

Nothing else changes: the job is registered in the StartedJobRegistry (with its execution and its TTL)
before the job function is called, so a killed worker's job is still found and failed or retried by RQ's
registry cleanup; retries with back-off, the FailedJobRegistry, results and deterministic job ids are
RQ's own code paths. Checked against the stock worker in tests/test_rqworker.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import DequeueTimeout, StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, _job_stack
from rq.scheduler import RQScheduler
from rq.utils import now
from rq.worker import WorkerStatus

from config.settings import RedisSettings
from workers.protection import StopOutcomePending
from workers.redis_trouble import Outage, diagnose, transient

log = logging.getLogger("scalper.worker")


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


# How long the scheduler's lock outlives its last heartbeat (one a second). RQ's is 61 s: a scheduler that
# died without releasing it (killed with its worker while Redis refused the release) held back every
# scheduled retry that long. Another worker takes it over at its next maintenance pass after this.
SCHEDULER_LOCK_S = 5


class OrderScheduler(RQScheduler):
    """RQ's scheduler (it enqueues the jobs whose retry is due, in a process the worker forks), waiting out
    Redis trouble like the worker, under a short lock. RQ's dies with a traceback on the first error, and
    only the worker's next maintenance pass after the outage starts another."""

    def __init__(self, *args: Any, max_wait_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # INFO: the worker that forked it says the same at WARNING, once per outage is enough.
        self.outage = Outage("scheduler", log, max_wait_s, level=logging.INFO)
        # RQ 2.12 uses `interval` for the loop's sleep, which `work` below takes from `loop_s`, and, plus
        # 60, as the TTL of the lock and of the scheduler's record, in the three places it sets them.
        self.loop_s = float(self.interval)
        self.interval = SCHEDULER_LOCK_S - 60

    def work(self) -> None:
        """RQ 2.12's loop; a transient error waits (the stop request is seen between attempts)."""
        self._install_signal_handlers()
        born = False
        while not self._stop_requested:
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
            except redis.RedisError as err:
                trouble = diagnose(err)
                if trouble is None or not trouble.transient:
                    raise
                time.sleep(self.outage.failed(trouble))
                continue
            self.outage.over()
            time.sleep(self.loop_s)
        try:
            self.stop()  # releases its locks: they expire by themselves if Redis cannot take it now
        except redis.RedisError as err:
            if not transient(err):
                raise


class OrderWorker(SimpleWorker):
    """`SimpleWorker` with the bookkeeping before a job in one MULTI (see the module doc)."""

    def __init__(
        self, *args: Any, preload: Callable[[Job], Sequence[str]] | None = None,
        max_wait_s: float | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        kwargs.setdefault("job_class", OrderJob)
        super().__init__(*args, **kwargs)
        self.preload = preload  # the hashes a job reads first: read with its bookkeeping
        # Redis trouble: the longest wait between two attempts (redis.retry_max_wait_s).
        wait = RedisSettings().retry_max_wait_s if max_wait_s is None else max_wait_s
        self.outage = Outage("worker", log, wait)
        # A stop was asked for (SIGTERM): `work()` returning without one means RQ's loop quit on an error.
        self.stop_requested = False
        self._dequeued = False  # a job was just taken: the next bare heartbeat goes with its bookkeeping
        self._prepared: str | None = None  # the job whose prepare_job_execution execute_job already did

    @property
    def connection_timeout(self) -> int:
        # RQ raises the connection's socket timeout to this when it is lower: its dequeue wait + 10 s, which
        # would replace redis.socket_timeout_s (a black-holed Redis found later). A second over the wait is
        # enough for BLMOVE's reply; run_worker keeps the wait below the socket timeout.
        return self.dequeue_timeout + 1

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """A protective stop that may still land is a wait, not an error: one line, no traceback. RQ's
        retry of the job goes on as for any failure (workers/protection.py)."""
        if isinstance(exc_info[1], StopOutcomePending) and not self._exc_handlers:
            self.log.info("Worker %s: job %s waits: %s", self.name, job.id, exc_info[1])
            return
        super().handle_exception(job, *exc_info)

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
        self.outage.ride(lambda: self._heartbeat(timeout), before_wait=self._stop_if_asked)

    def _heartbeat(self, timeout: int | None) -> None:
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()

    # --- Redis trouble is waited out in place (see the module doc) ---

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
            return
        self.outage.ride(lambda: super(OrderWorker, self).set_state(state), before_wait=self._stop_if_asked)

    def check_for_suspension(self, burst: bool) -> None:
        self.outage.ride(lambda: super(OrderWorker, self).check_for_suspension(burst),
                         before_wait=self._stop_if_asked)  # fmt: skip

    def run_maintenance_tasks(self) -> None:
        self.outage.ride(super().run_maintenance_tasks, before_wait=self._stop_if_asked)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """RQ 2.12's, but every transient Redis error (not only a lost connection) is waited out, at most
        `max_wait_s` between attempts instead of up to 60 s, and logged once per outage."""
        result = None
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + ",".join(self.queue_names()))
        idle_since = now()
        idle_time_left = max_idle_time
        while True:
            if self.stop_requested:
                # A stop asked while a job ran, seen by RQ's loop only before this wait (a SIGTERM between the
                # two is only marked): without this the worker waited here for a next job, forever.
                return None
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                if timeout is not None and idle_time_left is not None:
                    timeout = min(timeout, idle_time_left)
                result = self.queue_class.dequeue_any(
                    self._ordered_queues, timeout, connection=self.connection, job_class=self.job_class,
                    serializer=self.serializer, death_penalty_class=self.death_penalty_class,
                )  # fmt: skip
                if result is not None:
                    job, queue = result
                    self.reorder_queues(reference_queue=queue)
                    job.redis_server_version = self.get_redis_server_version()
                self.outage.over()
                break
            except DequeueTimeout:
                self.outage.over()
                if max_idle_time is not None:
                    idle_time_left = math.ceil(max_idle_time - (now() - idle_since).total_seconds())
                    if idle_time_left <= 0:
                        break
            except redis.RedisError as err:
                trouble = diagnose(err)
                if trouble is None or not trouble.transient:
                    raise
                self._stop_if_asked()
                time.sleep(self.outage.failed(trouble))
        self.heartbeat()
        return result

    def _stop_if_asked(self) -> None:
        """Asked to stop: an idle wait for Redis ends, as RQ ends its loop on a stop (its teardown's Redis
        error, if Redis is still away, is one run_worker ends the process on quietly)."""
        if self.stop_requested:
            raise StopRequested()

    def _start_scheduler(
        self, burst: bool = False, logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:  # fmt: skip
        """RQ 2.12's, with an OrderScheduler; at start, like RQ's, a Redis error is the caller's."""
        self.scheduler = OrderScheduler(
            self.queues, connection=self.connection, max_wait_s=self.outage.max_wait_s,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format, log_format=log_format, serializer=self.serializer,
        )  # fmt: skip
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        # RQ's: a lost connection is retried every 2 s, logged each time; anything else ends the thread.
        # The main loop logs the outage; this thread (stop and kill commands) only waits for Redis.
        if transient(exc):
            time.sleep(self.outage.max_wait_s)
            return
        super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)

    # --- the job ---

    def execute_job(self, job: Job, queue: Queue) -> None:
        """`SimpleWorker.execute_job` with `prepare_execution` and `prepare_job_execution` in one MULTI."""
        self._dequeued = False
        ttl = self.get_heartbeat_ttl(job)
        # Made once: a MULTI sent again after Redis trouble writes the same execution, not a second one.
        execution = Execution(id=uuid4().hex, job_id=job.id, connection=job.connection, worker_name=self.name)
        keys = list(self.preload(job)) if self.preload is not None else []
        replies = self.outage.ride(lambda: self._bookkeeping(job, queue, execution, ttl, keys))
        self.execution = execution
        job.preloaded = dict(zip(keys, replies[len(replies) - len(keys) :], strict=True))
        self._prepared = job.id
        self.procline(f"Processing {job.func_name} from {job.origin} since {now().timestamp()}")
        try:
            self.perform_job(job, queue)
        finally:
            self._prepared = None
        self.set_state(WorkerStatus.IDLE)

    def _bookkeeping(
        self, job: Job, queue: Queue, execution: Execution, ttl: int, keys: list[str]
    ) -> list[Any]:
        with self.connection.pipeline() as pipe:
            # rq.executions.prepare_execution (Execution.create, with the execution made by the caller)
            execution.save(ttl=ttl, pipeline=pipe)
            ExecutionRegistry(job_id=job.id, connection=pipe).add(execution=execution, ttl=ttl, pipeline=pipe)
            job.started_job_registry.add_execution(execution, pipeline=pipe, ttl=ttl, xx=False)
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
            for key in keys:
                pipe.hgetall(key)
            return pipe.execute()  # type: ignore[no-any-return]

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if self._prepared == job.id:
            return  # written by execute_job's MULTI
        super().prepare_job_execution(job, remove_from_intermediate_queue)

"""Exchange I/O off the engine's tick path.

The engine decides exits on every tick from what it holds in memory; a REST call that takes 10 s (a slow or
failing exchange) must never sit between a tick crossing a stop and the close being decided. So everything
that reads the exchange runs here, on a thread of its own with its own exchange client and event loop:
measuring the exchange's clock, refreshing the balance and instruments the entry gates use, and the
reconciler's reads. The engine thread schedules the jobs and applies their results in its loop (`poll`), as
data: the I/O thread never touches a position.

A job: `prepare` (engine thread, optional: a snapshot of what the work needs), `work` (I/O thread: the
exchange calls, returns a result), `deliver` (engine thread: apply the result). Each job runs at most once at
a time, every `every_s`, or sooner when `request`ed. Inline mode (`threaded=False`) runs due jobs inside
`poll` on the caller's thread: for tests and one-shot tools.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.redis_trouble import Outage, diagnose

log = logging.getLogger("scalper.exchange_io")


@dataclass
class Job:
    name: str
    every_s: float
    work: Callable[[Any], Any]
    deliver: Callable[[Any], None]
    prepare: Callable[[], Any] | None = None
    next_at: float = 0.0
    running: bool = False
    requested: bool = False
    runs: int = 0
    errors: int = 0
    last_s: float = 0.0  # how long the last run took
    started_at: float = field(default=0.0, repr=False)


_FAILED = object()


class ExchangeIO:
    def __init__(self, *, threaded: bool = True, name: str = "exchange-io",
                 clock: Callable[[], float] = time.monotonic,
                 on_thread_start: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.threaded = threaded
        self.name = name
        self.clock = clock
        self.on_thread_start = on_thread_start  # e.g. make the thread's exchange client (its own loop)
        self.jobs: dict[str, Job] = {}
        self._inbox: queue.SimpleQueue[tuple[Job, Any] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[Job, Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Redis trouble met by a job (the paper venue is reached through Redis): INFO, as the engine's loop
        # reports the outage itself; a failed job runs again at its interval (the wait is not used).
        self.redis_outage = Outage(name, log, max_wait_s=1.0, level=logging.INFO)

    def add(self, name: str, every_s: float, work: Callable[[Any], Any], deliver: Callable[[Any], None],
            prepare: Callable[[], Any] | None = None, *, first_in_s: float = 0.0) -> Job:  # fmt: skip
        job = Job(name, every_s, work, deliver, prepare, next_at=self.clock() + first_in_s)
        self.jobs[name] = job
        return job

    def request(self, name: str) -> None:
        """Run the job at the next `poll`, whatever its interval (a reconcile after a reconnect)."""
        self.jobs[name].requested = True

    def busy(self, name: str) -> bool:
        return self.jobs[name].running

    # --- the engine thread ---

    def poll(self) -> int:
        """Deliver what finished, then hand out the jobs that are due. Returns the results delivered."""
        delivered = 0
        while True:
            try:
                job, result = self._done.get_nowait()
            except queue.Empty:
                break
            self._finish(job, result)
            delivered += 1
        now = self.clock()
        for job in self.jobs.values():
            if job.running or not (job.requested or now >= job.next_at):
                continue
            job.requested, job.running, job.started_at = False, True, now
            arg = job.prepare() if job.prepare is not None else None
            if self.threaded:
                self._ensure_thread()
                self._inbox.put((job, arg))
            else:
                self._finish(job, self._run(job, arg))
                delivered += 1
        return delivered

    def _finish(self, job: Job, result: Any) -> None:
        job.running = False
        job.runs += 1
        job.last_s = self.clock() - job.started_at
        job.next_at = self.clock() + job.every_s
        if result is _FAILED:
            job.errors += 1
            return
        job.deliver(result)

    def run_now(self, name: str) -> None:
        """Run one job to the end on the caller's thread and deliver it (engine start, one-shot tools)."""
        job = self.jobs[name]
        job.started_at = self.clock()
        arg = job.prepare() if job.prepare is not None else None
        self._finish(job, self._run(job, arg))

    # --- the I/O thread ---

    def _run(self, job: Job, arg: Any) -> Any:
        try:
            result = job.work(arg)
        except Exception as err:  # a job's failure is logged and retried at its interval: never fatal
            trouble = diagnose(err)
            if trouble is not None and trouble.transient:
                self.redis_outage.failed(trouble)  # one line per outage, not one per job and retry
            else:
                log.warning("%s failed: %s: %s", job.name, type(err).__name__, err)
            return _FAILED
        self.redis_outage.over()
        return result

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        if self.on_thread_start is not None:
            self.on_thread_start()
        while True:
            item = self._inbox.get()
            if item is None:
                return
            job, arg = item
            self._done.put((job, self._run(job, arg)))

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the thread to end after its current job (a job stuck on the network is left: daemon)."""
        if self._thread is not None and self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join(timeout_s)
        self._thread = None

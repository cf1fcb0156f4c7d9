"""OrderWorker (workers/rqworker.py) keeps what we rely on from RQ's SimpleWorker: the job is registered as
started before it runs, results and failures land where RQ puts them, retries with back-off still happen,
and a killed worker's job is still found by RQ's registry cleanup. Real redis-server throughout."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from tests.conftest import RealRedis
from workers.rqworker import OrderWorker

ROOT = Path(__file__).resolve().parents[1]
SEEN = "test:rqworker:seen"


def record_state(socket_path: str) -> str:
    """The job: what Redis says about this very job while it runs."""
    from rq import get_current_job

    job = get_current_job()
    assert job is not None
    r = redis.Redis(unix_socket_path=socket_path)
    registry = StartedJobRegistry(job.origin, connection=r)
    worker_key = f"rq:worker:{job.worker_name}"
    r.rpush(SEEN, f"status={r.hget(job.key, 'status').decode()}")
    r.rpush(SEEN, f"started={job.id in registry.get_job_ids()}")
    r.rpush(SEEN, f"current={r.hget(worker_key, 'current_job').decode()}")
    r.rpush(SEEN, f"state={r.hget(worker_key, 'state').decode()}")
    r.rpush(SEEN, f"intermediate={r.llen('rq:queue:orders:intermediate')}")
    r.rpush(SEEN, f"worker_ttl={int(r.ttl(worker_key) > 0)}")
    r.rpush(SEEN, f"job_ttl={r.ttl(job.key)}")  # -1: persisted while it runs, whatever TTL it was queued with
    return "done"


def fail() -> None:
    raise RuntimeError("exchange busy")


def sleep_long() -> None:
    time.sleep(30)


def _run(
    worker_cls: type[SimpleWorker], real_redis: RealRedis, func: str, **kw: object
) -> tuple[Job, list[str]]:
    client = real_redis.client
    queue = Queue("orders", connection=client)
    job = queue.enqueue(func, *kw.pop("args", ()), job_id="close-abc123c1", **kw)  # type: ignore[arg-type]
    worker_cls([queue], connection=client).work(burst=True, logging_level="WARNING")
    seen = [v.decode() for v in client.lrange(SEEN, 0, -1)]
    return Job.fetch(job.id, connection=client), seen


@pytest.mark.parametrize("worker_cls", [SimpleWorker, OrderWorker])
def test_a_job_is_registered_as_started_before_it_runs(
    worker_cls: type[SimpleWorker], real_redis: RealRedis
) -> None:
    job, seen = _run(
        worker_cls, real_redis, "tests.test_rqworker.record_state", args=(real_redis.socket_path,), ttl=600
    )
    assert seen == ["status=started", "started=True", "current=close-abc123c1", "state=busy",
                    "intermediate=0", "worker_ttl=1", "job_ttl=-1"]  # fmt: skip
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "done"
    assert job.started_at is not None and job.ended_at is not None and job.worker_name
    client = real_redis.client
    assert StartedJobRegistry("orders", connection=client).count == 0
    assert client.llen("rq:queue:orders:intermediate") == 0
    assert not client.keys("rq:execution:*")  # the execution record is cleaned up after the job


def test_order_worker_writes_what_simple_worker_writes(real_redis: RealRedis) -> None:
    """Same job, each worker in turn: the same job fields and the same keys afterwards."""
    client = real_redis.client
    snapshots = []
    for cls in (SimpleWorker, OrderWorker):
        client.flushall()
        job, _ = _run(cls, real_redis, "tests.test_rqworker.record_state", args=(real_redis.socket_path,))
        name = job.worker_name or ""
        fields = sorted(k.decode() for k in client.hkeys(job.key))
        worker = sorted(k.decode() for k in client.hkeys(f"rq:worker:{name}"))
        keys = sorted(k.decode().replace(name, "W") for k in client.keys("rq:*") if b"scheduler" not in k)
        snapshots.append((fields, worker, keys))
    assert snapshots[0] == snapshots[1]


def record_preloaded(socket_path: str) -> str:
    """The job: the hash OrderWorker read for it with its bookkeeping, against the hash now."""
    from rq import get_current_job

    job = get_current_job()
    r = redis.Redis(unix_socket_path=socket_path)
    got = getattr(job, "preloaded", None)
    r.rpush(SEEN, repr(got))
    return "done"


def test_preload_reads_the_job_s_hashes_with_its_bookkeeping(real_redis: RealRedis) -> None:
    client = real_redis.client
    client.hset("test:pos", mapping={"state": "closing", "version": "7"})
    queue = Queue("orders", connection=client)
    queue.enqueue("tests.test_rqworker.record_preloaded", real_redis.socket_path, job_id="close-p1")
    queue.enqueue("tests.test_rqworker.record_preloaded", real_redis.socket_path, job_id="other-p2")
    asked: list[str] = []

    def preload(job: Job) -> list[str]:
        asked.append(job.id)
        return ["test:pos", "test:missing"] if job.id.startswith("close-") else []

    OrderWorker([queue], connection=client, preload=preload).work(burst=True, logging_level="WARNING")
    seen = [v.decode() for v in client.lrange(SEEN, 0, -1)]
    assert asked == ["close-p1", "other-p2"]
    assert seen == [repr({"test:pos": {b"state": b"closing", b"version": b"7"}, "test:missing": {}}), "{}"]
    assert Job.fetch("close-p1", connection=client).get_status() == JobStatus.FINISHED


@pytest.mark.parametrize("worker_cls", [SimpleWorker, OrderWorker])
def test_a_failing_job_is_retried_with_back_off_then_failed(
    worker_cls: type[SimpleWorker], real_redis: RealRedis
) -> None:
    client = real_redis.client
    job, _ = _run(worker_cls, real_redis, "tests.test_rqworker.fail", retry=Retry(max=2, interval=[60, 120]))
    # Back-off: the retry is scheduled 60 s out, not run at once.
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == 1
    assert job.id in ScheduledJobRegistry("orders", connection=client).get_job_ids()
    # No back-off left: with retries exhausted the job ends in the FailedJobRegistry.
    job.retries_left = 0
    job.save()
    client.zrem("rq:scheduled:orders", job.id)
    Queue("orders", connection=client).enqueue_job(job)
    OrderWorker([Queue("orders", connection=client)], connection=client).work(
        burst=True, logging_level="WARNING"
    )
    assert job.get_status() == JobStatus.FAILED
    assert job.id in FailedJobRegistry("orders", connection=client).get_job_ids()
    assert "exchange busy" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]


def wait_for_a_stop() -> None:
    from workers.protection import StopOutcomePending

    raise StopOutcomePending("stop abc123abc123s1 not at the exchange yet; sent 0.4s ago")


def test_a_job_waiting_for_a_stop_is_retried_and_logged_in_one_line(
    real_redis: RealRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """The unprotect job's wait for a stop that may still land (workers/protection.py) is no error: RQ
    retries it as any failed job, and the worker says so in one line, with no traceback."""
    caplog.set_level(logging.INFO)
    queue = Queue("orders", connection=real_redis.client)
    job = queue.enqueue("tests.test_rqworker.wait_for_a_stop", job_id="unprotect-abc123abc123s1",
                        retry=Retry(max=2, interval=[60, 120]))  # fmt: skip
    OrderWorker([queue], connection=real_redis.client).work(burst=True, logging_level="INFO")
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 1
    lines = [r.getMessage() for r in caplog.records if job.id in r.getMessage()]
    assert any("waits: stop abc123abc123s1 not at the exchange yet" in line for line in lines), lines
    assert not any("Traceback" in line or "exception raised" in line for line in lines), lines


WORKER = """
import sys, redis
from rq import Queue
from workers.rqworker import OrderWorker
c = redis.Redis(unix_socket_path=sys.argv[1])
OrderWorker([Queue("orders", connection=c)], connection=c).work(logging_level="WARNING")
"""


def test_the_job_of_a_killed_worker_is_found_and_retried(real_redis: RealRedis) -> None:
    client = real_redis.client
    queue = Queue("orders", connection=client)
    job = queue.enqueue(
        "tests.test_rqworker.sleep_long", job_id="close-abc123c1", retry=Retry(max=3, interval=[0])
    )
    proc = subprocess.Popen([sys.executable, "-c", WORKER, real_redis.socket_path],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while job.get_status(refresh=True) != JobStatus.STARTED:
            assert time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    registry = StartedJobRegistry("orders", connection=client)
    assert job.id in registry.get_job_ids()
    # Once its execution's heartbeat has lapsed, RQ's cleanup fails the job and, with retries left,
    # requeues it for another worker.
    later = time.time() + 3600
    registry.cleanup(timestamp=int(later))
    assert job.id not in registry.get_job_ids()
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert job.id in queue.get_job_ids()


def _within(seconds: float, call: Callable[[], object]) -> tuple[bool, object]:
    """(whether `call()` ended within `seconds`, what it returned or raised)."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as err:  # what it raised is the result looked at
            out.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), out[0] if out else None


def test_a_stop_asked_while_a_job_ran_ends_the_next_idle_wait(real_redis: RealRedis) -> None:
    """Found by a benchmark's teardown: a SIGTERM while the worker was still busy (its job just done, its
    state not yet idle) is only marked by RQ, whose loop had already looked for it; the worker then waited
    for a next job for ever (and, once Redis was gone, for Redis for ever). The wait now sees the mark."""
    worker = OrderWorker([Queue("orders", connection=real_redis.client)], connection=real_redis.client)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        worker.set_state("busy")
        worker.request_stop(signal.SIGTERM, None)  # busy: RQ marks the stop, raises nothing
        ended, result = _within(10, lambda: worker.dequeue_job_and_maintain_ttl(timeout=1))
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert ended and result is None


def test_a_worker_asked_to_stop_does_not_wait_for_redis(real_redis: RealRedis) -> None:
    """Waiting out a Redis outage is right for a worker at work, not for one asked to stop: the wait ends
    with RQ's StopRequested (its loop stops on it; run_worker ends the process quietly)."""
    worker = OrderWorker([Queue("orders", connection=real_redis.client)], connection=real_redis.client,
                         max_wait_s=0.2)  # fmt: skip
    worker.connection = redis.Redis(unix_socket_path=str(Path(real_redis.socket_path).with_name("gone.sock")))
    worker.stop_requested = True
    for idle_call in (worker.heartbeat, lambda: worker.set_state("idle"), worker.run_maintenance_tasks):
        ended, raised = _within(10, idle_call)
        assert ended and isinstance(raised, StopRequested), raised
    worker.stop_requested = False  # at work it waits on, and says so
    ended, _ = _within(1.5, worker.heartbeat)
    assert not ended

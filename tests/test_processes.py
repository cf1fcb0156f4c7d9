"""Processes ride out a Redis outage: they start their work again from scratch instead of exiting. (The
real thing, Redis SIGKILLed under the running processes, is in tests/test_chaos_redis.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import redis
from rq import Queue

from exchanges.sync import until_stopped
from scalper.connect import NoRedis
from scalper.embedded import LocalRedis, alive
from scalper.processes import MAINTENANCE_S, ride_out_redis
from tests.conftest import RealRedis
from tests.system import System
from workers.engine import RedisRestarted
from workers.rqworker import SCHEDULER_LOCK_S

ROOT = Path(__file__).resolve().parents[1]


def _flaky(errors: list[Exception]) -> tuple[list[int], object]:
    calls: list[int] = []

    def run() -> int:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return 7

    return calls, run


def test_a_dropped_redis_runs_the_work_again_from_scratch() -> None:
    calls, run = _flaky([redis.ConnectionError("closed"), NoRedis("cannot connect"), redis.TimeoutError("t")])
    assert ride_out_redis("t", run, threading.Event(), max_wait_s=0.01) == 7  # type: ignore[arg-type]
    assert len(calls) == 4


def test_a_configuration_problem_at_the_very_first_start_is_an_error_not_a_wait() -> None:
    calls, run = _flaky([NoRedis("Redis at REDIS_URL=...: refused the credentials")])
    with pytest.raises(NoRedis, match="REDIS_URL"):
        ride_out_redis("t", run, threading.Event(), max_wait_s=0.01, startup_wait_s=60)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_redis_not_up_yet_at_the_first_start_is_waited_for_then_an_error() -> None:
    """A process manager may start the processes while Redis starts or restarts (seen in the OKX chaos pass:
    a process restarted just before a Redis restart exited 1)."""
    down = NoRedis("Redis at REDIS_URL=...: cannot connect", transient=True)
    calls, run = _flaky([down, down])
    assert ride_out_redis("t", run, threading.Event(), max_wait_s=0.01, startup_wait_s=60) == 7  # type: ignore[arg-type]
    assert len(calls) == 3
    calls, run = _flaky([down, down])
    with pytest.raises(NoRedis, match="cannot connect"):  # and no longer than startup_wait_s
        ride_out_redis("t", run, threading.Event(), max_wait_s=0.01, startup_wait_s=0)  # type: ignore[arg-type]


def test_a_stop_during_the_outage_ends_the_process_quietly() -> None:
    stop = threading.Event()
    stop.set()
    calls, run = _flaky([redis.ConnectionError("closed")])
    assert ride_out_redis("t", run, stop, max_wait_s=0.01) == 0  # type: ignore[arg-type]
    assert len(calls) == 1


def test_other_errors_are_not_swallowed() -> None:
    _calls, run = _flaky([ValueError("a bug")])
    with pytest.raises(ValueError):
        ride_out_redis("t", run, threading.Event(), max_wait_s=0.01)  # type: ignore[arg-type]


def test_a_forked_child_dies_with_its_parent_even_by_sigkill(tmp_path: Path) -> None:
    """Regression (chaos suite): each SIGKILLed worker left RQ's forked scheduler running as an orphan."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from scalper.processes import exit_with_parent_on_fork
        exit_with_parent_on_fork()
        child = os.fork()
        if child == 0:
            print(os.getpid(), flush=True)  # after the fork hooks: it is armed
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


def test_an_engine_notices_a_redis_that_restarted_between_two_commands(local_redis: LocalRedis) -> None:
    """The client reconnects on its own, so a quick Redis restart raises nothing; but the restarted server
    may have lost its last second, and the engine's positions in memory would be ahead of it. The engine
    checks the server's run_id before each reconcile and starts again (via ride_out_redis) on a change."""
    from tests.test_lease import engine as make_engine

    local_redis.start()
    eng = make_engine(local_redis.client())
    eng.start()
    eng.check_same_redis()  # the same server: nothing
    local_redis.stop()
    local_redis.start()
    with pytest.raises(RedisRestarted) as caught:
        eng.check_same_redis()
    assert isinstance(caught.value, redis.ConnectionError)  # what ride_out_redis starts again on


@pytest.mark.redis
def test_a_worker_takes_over_the_retry_scheduler_within_seconds_of_its_holder_dying(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """Regression (chaos suite): RQ hands the scheduler over in its maintenance pass, every ten minutes by
    default; after the worker holding it died, retries (an unknown outcome's re-query) waited that long,
    and an entry waiting on its retry stayed in opening. Order workers run maintenance every few seconds."""
    system = System(real_redis.socket_path, tmp_path)
    lock = "rq:scheduler-lock:orders"
    try:
        system.start("worker1", "worker")
        holder = system.wait("a scheduler", lambda: real_redis.client.get(lock), timeout=20)
        system.start("worker2", "worker")
        time.sleep(1.0)  # worker2 is up, without the scheduler
        system.kill("worker1")
        t0 = time.monotonic()
        system.wait("another scheduler", lambda: real_redis.client.get(lock) not in (None, holder), 30)
        assert time.monotonic() - t0 < MAINTENANCE_S + 10
    finally:
        system.stop_all()


def test_a_scheduler_killed_before_it_could_release_its_lock_is_replaced_within_seconds(
    real_redis: RealRedis, tmp_path: Path
) -> None:
    """Regression (paper CI chaos pass, seed 364066846): the scheduler was killed with its worker while
    Redis refused the release of its lock, which RQ keeps for 61 s; every scheduled retry waited that long.
    Our scheduler's lock lasts SCHEDULER_LOCK_S past its last heartbeat. Here both processes are SIGKILLed,
    the scheduler first, so nothing releases the lock."""
    system = System(real_redis.socket_path, tmp_path)
    lock = "rq:scheduler-lock:orders"
    try:
        system.start("worker1", "worker")
        holder = system.wait("a scheduler", lambda: real_redis.client.get(lock), timeout=20)
        record = f"rq:scheduler:{holder.decode()}"
        pid = system.wait("its pid", lambda: real_redis.client.hget(record, "pid"), timeout=10)
        system.start("worker2", "worker")
        time.sleep(1.0)  # worker2 is up, without the scheduler
        os.kill(int(pid), signal.SIGKILL)
        system.kill("worker1")
        assert real_redis.client.get(lock) == holder  # nobody released it
        t0 = time.monotonic()
        system.wait("another scheduler", lambda: real_redis.client.get(lock) not in (None, holder), 30)
        assert time.monotonic() - t0 < MAINTENANCE_S + SCHEDULER_LOCK_S + 3
    finally:
        system.stop_all()


def test_sigterm_stops_a_replay_feed_promptly(real_redis: RealRedis, tmp_path: Path) -> None:
    """The replay feed ignored SIGTERM until its recording ended (System.stop_all waited 10 s for it)."""
    system = System(real_redis.socket_path, tmp_path)
    system.start("feed", "feed", "--replay", "sample", "--speed", "1")
    system.wait("ticks", lambda: real_redis.client.xlen("scalper:{BTC-USDT-SWAP}:ticks") > 0, timeout=20)
    proc = system.procs.pop("feed")
    t0 = time.monotonic()
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 3.0, system.logs()


def test_until_stopped_cancels_a_coroutine_blocked_on_a_dead_connection() -> None:
    """What the OKX feed and account processes run in: a SIGTERM (the stop event) ends a loop that waits
    on a connection that never answers, instead of on its next message."""
    stop = threading.Event()

    async def blocked() -> str:
        await asyncio.Event().wait()  # nothing will ever set it
        return "never"

    async def main() -> tuple[str | None, float]:
        asyncio.get_running_loop().call_later(0.3, stop.set)
        t0 = time.monotonic()
        return await until_stopped(blocked(), stop, poll_s=0.05), time.monotonic() - t0

    got, took = asyncio.run(main())
    assert got is None and took < 1.0

    async def quick() -> str:
        return "done"

    assert asyncio.run(until_stopped(quick(), threading.Event())) == "done"


def test_a_worker_whose_redis_drops_during_a_job_keeps_running(
    local_redis: LocalRedis, tmp_path: Path
) -> None:
    """Redis goes down while a job runs and is back 2 s later: the worker process rides it out and runs the
    next job (RQ cannot record how the first ended: it is recovered like a killed worker's job)."""
    local_redis.start()
    client = local_redis.client()
    system = System(local_redis.socket_path, tmp_path)
    try:
        system.start("worker1", "worker")
        system.wait("the worker up", lambda: client.smembers("rq:workers"), timeout=20)
        Queue("orders", connection=client).enqueue("time.sleep", 1.0, job_id="sleep-1")
        system.wait("the job running", lambda: client.hget("rq:job:sleep-1", "status") == b"started", 10)
        local_redis.stop()
        time.sleep(2.0)  # the job ends while Redis is down: RQ cannot write its result
        local_redis.start()
        client = local_redis.client()
        Queue("orders", connection=client).enqueue("builtins.len", "abc", job_id="len-1")
        done = lambda: client.hget("rq:job:len-1", "status") == b"finished"  # noqa: E731
        system.wait("a job run after the outage", done, timeout=30)
        assert system.alive("worker1")
        worker = system.procs["worker1"]
        worker.terminate()  # idle now: SIGTERM still ends it (a quit loop restarts, a stop request does not)
        assert worker.wait(timeout=10) == 0
    finally:
        system.stop_all()


def test_a_worker_loop_that_quit_on_an_error_is_started_again(
    real_redis: RealRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (long chaos run: 2 of 21 Redis restarts). RQ's loop logs an error it cannot handle (Redis
    dropped during a job) and quits; when Redis was back by its teardown, `work()` returned normally and the
    worker process exited 0, which under honcho or foreman stops the whole formation. Only a stop request
    (SIGTERM) or a burst may end it; anything else starts it again, as after an outage."""
    from rq.exceptions import StopRequested

    from config.settings import Settings
    from scalper import processes
    from workers.rqworker import OrderWorker

    runs: list[int] = []

    def work(self: OrderWorker, *args: object, **kwargs: object) -> bool:
        runs.append(1)
        if len(runs) == 2:  # the second run is stopped as by SIGTERM (RQ's handler; its loop catches this)
            with contextlib.suppress(StopRequested):
                self.request_stop(signal.SIGTERM, None)
        return False  # the first: RQ's "found an unhandled exception, quitting..."

    monkeypatch.setattr(OrderWorker, "work", work)
    settings = Settings(_env_file=None, redis={"url": f"unix://{real_redis.socket_path}"})  # type: ignore[call-arg,arg-type]
    assert processes.run_worker(settings) == 0
    assert len(runs) == 2

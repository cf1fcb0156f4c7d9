"""Which Redis errors a process waits out and which stop it (workers/redis_trouble.py), read from the errors a
real redis-server gives: out of memory, MISCONF, READONLY and BUSY, as plain replies, inside a MULTI and
inside a Lua script (where redis-py reports them as a plain ResponseError); and how ride_out_redis and the
CLI use that (issue 10, defect 5)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from scalper.embedded import LocalRedis
from scalper.processes import ride_out_redis
from workers.redis_trouble import Outage, RedisTrouble, diagnose

WRITE_SCRIPT = "return redis.call('SET', KEYS[1], 'v')"


@pytest.fixture
def server(local_redis: LocalRedis) -> Iterator[redis.Redis]:
    """A private server: these tests change its configuration."""
    local_redis.start()
    client = redis.Redis(unix_socket_path=local_redis.socket_path, socket_timeout=5)
    yield client
    client.close()


def _errors(client: redis.Redis) -> dict[str, Callable[[], object]]:
    """A write as a command, in a MULTI, in a pipeline without one, and in a Lua script."""

    def multi(transaction: bool) -> object:
        with client.pipeline(transaction=transaction) as pipe:
            pipe.get("k")
            pipe.hset("h", "f", "v")
            return pipe.execute()

    return {
        "command": lambda: client.set("k", "v"),
        "multi": lambda: multi(True),
        "pipeline": lambda: multi(False),
        "script": lambda: client.eval(WRITE_SCRIPT, 1, "k"),
    }


def _raised(call: Callable[[], object]) -> BaseException:
    with pytest.raises(redis.RedisError) as caught:
        call()
    return caught.value


def test_out_of_memory_is_transient_however_it_arrives(server: redis.Redis) -> None:
    server.set("pad", "x" * 2_000_000)
    server.config_set("maxmemory-policy", "noeviction")
    server.config_set("maxmemory", "1mb")
    for how, call in _errors(server).items():
        trouble = diagnose(_raised(call))
        assert trouble is not None and (trouble.code, trouble.transient) == ("OOM", True), how
        assert trouble.what.startswith("Redis refused the write: out of memory (maxmemory reached)")
    assert server.get("pad") is not None  # reads still work: only writes wait


def test_misconf_is_transient(server: redis.Redis, tmp_path: Path) -> None:
    """A failed RDB save with stop-writes-on-bgsave-error: the directory is /proc, where nobody can write."""
    server.config_set("save", "3600 1")
    server.config_set("stop-writes-on-bgsave-error", "yes")
    server.config_set("dir", "/proc")
    server.bgsave()
    deadline = time.monotonic() + 10
    while server.info("persistence")["rdb_last_bgsave_status"] != "err":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        for how, call in _errors(server).items():
            trouble = diagnose(_raised(call))
            assert trouble is not None and (trouble.code, trouble.transient) == ("MISCONF", True), how
    finally:
        server.config_set("dir", str(tmp_path))
        server.config_set("save", "")


def test_a_read_only_replica_is_transient(server: redis.Redis) -> None:
    server.replicaof("127.0.0.1", "1")  # a primary that is not there: the server only turns read-only
    try:
        for how, call in _errors(server).items():
            trouble = diagnose(_raised(call))
            assert trouble is not None and (trouble.code, trouble.transient) == ("READONLY", True), how
    finally:
        server.replicaof("NO", "ONE")


def test_a_long_script_makes_redis_busy_and_that_is_transient(
    server: redis.Redis, local_redis: LocalRedis
) -> None:
    server.config_set("lua-time-limit", "50")
    runner = redis.Redis(unix_socket_path=local_redis.socket_path)
    looping = threading.Thread(target=lambda: _raised(lambda: runner.eval("while true do end", 0)))
    looping.start()
    time.sleep(0.3)
    try:
        for call in (lambda: server.get("k"), lambda: server.set("k", "v")):
            trouble = diagnose(_raised(call))
            assert trouble is not None and (trouble.code, trouble.transient) == ("BUSY", True)
    finally:
        server.script_kill()
        looping.join(10)


def test_a_stall_is_a_transient_timeout(server: redis.Redis, local_redis: LocalRedis) -> None:
    impatient = redis.Redis(unix_socket_path=local_redis.socket_path, socket_timeout=0.3)
    sleeper = threading.Thread(target=lambda: server.execute_command("DEBUG", "SLEEP", "1"))
    sleeper.start()
    time.sleep(0.1)
    trouble = diagnose(_raised(lambda: impatient.get("k")))
    sleeper.join(10)
    assert trouble is not None and (trouble.code, trouble.transient) == ("timeout", True)


def test_a_lost_connection_is_transient(local_redis: LocalRedis) -> None:
    local_redis.start()
    client = local_redis.client()
    client.ping()
    local_redis.stop()
    trouble = diagnose(_raised(lambda: client.get("k")))
    assert trouble is not None and (trouble.code, trouble.transient) == ("unreachable", True)


def test_permissions_and_unknown_commands_are_fatal(server: redis.Redis, local_redis: LocalRedis) -> None:
    server.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["*"], commands=["+get", "+ping"])
    reader = redis.Redis(unix_socket_path=local_redis.socket_path, username="reader", password="pw")
    trouble = diagnose(_raised(lambda: reader.set("k", "v")))
    assert trouble is not None and (trouble.code, trouble.transient) == ("NOPERM", False)
    trouble = diagnose(_raised(lambda: server.execute_command("NOSUCHCOMMAND")))
    assert trouble is not None and not trouble.transient
    wrong = redis.Redis(unix_socket_path=local_redis.socket_path, username="reader", password="nope")
    trouble = diagnose(_raised(wrong.ping))
    assert trouble is not None and not trouble.transient


def test_errors_that_are_not_redis_trouble_are_left_to_the_caller(server: redis.Redis) -> None:
    server.set("s", "v")
    assert diagnose(_raised(lambda: server.hget("s", "f"))) is None  # WRONGTYPE: a bug, not an outage
    server.xgroup_create("stream", "g", mkstream=True)
    assert diagnose(_raised(lambda: server.xgroup_create("stream", "g"))) is None  # BUSYGROUP is not BUSY
    assert diagnose(ValueError("not redis")) is None


# --- riding it out ---


def _failing(errors: list[Exception]) -> tuple[list[int], Callable[[], int]]:
    calls: list[int] = []

    def run() -> int:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return 7

    return calls, run


def _oom() -> redis.exceptions.OutOfMemoryError:
    return redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


def test_a_process_waits_out_out_of_memory_instead_of_exiting(caplog: pytest.LogCaptureFixture) -> None:
    """Regression: OutOfMemoryError is a ResponseError, not a ConnectionError: the engine, worker and feed
    exited on it."""
    script_oom = redis.ResponseError("Error running script (call to f_0): @user_script:1: @user_script: 1: "
                                     "-OOM command not allowed when used memory > 'maxmemory'.")  # fmt: skip
    calls, run = _failing([_oom(), script_oom, _oom(), _oom(), redis.ResponseError("MISCONF Redis is ...")])
    with caplog.at_level(logging.DEBUG, logger="scalper"):
        assert ride_out_redis("engine", run, threading.Event(), max_wait_s=0.01) == 7
    assert len(calls) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # one line for the outage, none per retry
    assert warnings[0].startswith("engine: Redis refused the write: out of memory (maxmemory reached)")
    changed = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(changed) == 1 and "now: Redis refused the write: it cannot persist (MISCONF" in changed[0]


def test_a_fatal_redis_error_still_stops_the_process() -> None:
    calls, run = _failing([redis.exceptions.NoPermissionError("this user has no permissions to run 'set'")])
    with pytest.raises(redis.exceptions.NoPermissionError):
        ride_out_redis("engine", run, threading.Event(), max_wait_s=0.01)
    assert len(calls) == 1


def test_an_outage_waits_twice_as_long_each_time_up_to_the_cap() -> None:
    outage = Outage("t", logging.getLogger("test"), max_wait_s=1.0, first_wait_s=0.1)
    trouble = RedisTrouble("OOM", True, "x")
    waits = [outage.failed(trouble) for _ in range(7)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    outage.over()
    assert outage.failed(trouble) == 0.1  # a new outage starts from the beginning


def test_ride_calls_again_until_redis_takes_it() -> None:
    outage = Outage("t", logging.getLogger("test"), max_wait_s=0.01)
    calls, run = _failing([_oom(), redis.TimeoutError("t"), redis.ConnectionError("c")])
    assert outage.ride(run) == 7 and len(calls) == 4
    with pytest.raises(ValueError):
        outage.ride(lambda: int("x"))

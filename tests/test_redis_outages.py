"""The real processes (`python -m scalper ...`) around a real redis-server that runs out of memory, cannot
persist, turns read-only, runs a long script, stalls, or goes away: every process waits and carries on
afterwards, logging one line per outage; an operator command says what happened in one line (issue 10,
defects 5 and 6)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue

from scalper.embedded import LocalRedis
from tests.system import System

SYMBOL = "BTC-USDT-SWAP"
PROCESSES = (("account", ("account",)), ("engine", ("engine", "--clock", "data")), ("worker", ("worker",)),
             ("feed", ("feed", "--replay", "sample", "--speed", "60")))  # fmt: skip


def _manual(local_redis: LocalRedis, tmp_path: Path, **extra: str) -> System:
    """Only manual entries and closes, exits switched off: the test decides every moment."""
    return System(local_redis.socket_path, tmp_path, symbols=json.dumps({SYMBOL: {}}),
                  engine__entries="manual", engine__reconcile_every_s="1", exits__close_timeout_s="2",
                  exits__max_hold_s="0",
                  exits__take_profit_pct="0", exits__trailing_activation_pct="0", exits__harvest_pct="0",
                  exits__drawdown_activation_pct="0", smart_exit__enabled="false",
                  exits__stop_loss_min_pct="10", exits__stop_loss_max_pct="10", risk__leverage="2",
                  **extra)  # fmt: skip


@pytest.fixture
def system(local_redis: LocalRedis, tmp_path: Path) -> Iterator[System]:
    local_redis.start()
    # The smallest socket timeout, so that a stall longer than it is seen as one.
    sys_ = _manual(local_redis, tmp_path, redis__socket_timeout_s="3")
    for name, args in PROCESSES:
        sys_.start(name, *args)
    yield sys_
    sys_.stop_all()


def _open_one(system: System) -> str:
    system.wait("ticks", lambda: system.client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5)
    done = system.cli("open", SYMBOL, "long")
    assert done.returncode == 0, done.stderr
    live = system.wait("an open position", lambda: [p for p in system.positions() if p.state == "open"])
    return live[0].id


def _all_alive_for(system: System, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dead = {n: p.returncode for n, p in system.procs.items() if p.poll() is not None}
        assert not dead, f"exited during the outage: {dead}\n{system.logs()}"
        time.sleep(0.1)


def _warnings(system: System, name: str) -> list[str]:
    """The process's WARNING and ERROR lines about Redis."""
    text = "".join(p.read_text(errors="replace") for p in sorted(system.workdir.glob(f"{name}.*.log")))
    return [line for line in text.splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) .*Redis", line)]


# redis-py's text of the errors provoked here: a process reports Redis trouble in its own words instead.
RAW = ("Error running script", "command not allowed when used memory", "not able to persist on disk",
       "You can't write against a read only replica", "You can only call SCRIPT KILL",
       "Timeout reading from")  # fmt: skip


def _clean_logs(system: System) -> None:
    """No traceback, and no Redis error text as redis-py words it."""
    for path in sorted(system.workdir.glob("*.log")):
        text = path.read_text(errors="replace")
        assert "Traceback" not in text, f"{path.name}:\n{text[-3000:]}"
        raw = [line for line in text.splitlines() if any(r in line for r in RAW)]
        assert not raw, (path.name, raw)


def test_the_processes_wait_out_redis_at_maxmemory_and_carry_on(system: System) -> None:
    """Regression: OutOfMemoryError is a ResponseError, not a ConnectionError: the engine, the worker and
    the feed exited on it, and `scalper close` printed the raw "-OOM" text of the Lua script."""
    client = system.client
    pid = _open_one(system)
    client.set("pad", "x" * 3_000_000)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1mb")

    refused = system.cli("close", pid)
    assert refused.returncode == 1
    assert refused.stderr.startswith("scalper: Redis refused the write: out of memory (maxmemory reached)")
    assert len(refused.stderr.splitlines()) == 1 and "script" not in refused.stderr, refused.stderr
    _all_alive_for(system, 8.0)  # every process meets the refusal: marks, ticks, heartbeats

    client.config_set("maxmemory", "0")
    client.delete("pad")
    ticks = client.xlen(f"scalper:{{{SYMBOL}}}:ticks")
    assert system.cli("close", pid).returncode == 0
    system.wait("closed", lambda: system.position(pid).state == "closed", timeout=30)
    system.wait("ticks again", lambda: client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > ticks, timeout=20)
    assert system.store.check_consistency(pid) == []
    for name in ("engine", "worker", "feed"):  # one line per process for the outage, none per retry
        lines = _warnings(system, name)
        assert len(lines) == 1 and "out of memory (maxmemory reached)" in lines[0], (name, lines)
    _clean_logs(system)


def _misconf(client: redis.Redis) -> Callable[[], None]:
    """An RDB save that fails (its directory is /proc) with stop-writes-on-bgsave-error: MISCONF."""
    home = client.config_get("dir")["dir"]
    client.config_set("save", "3600 1")
    client.config_set("stop-writes-on-bgsave-error", "yes")
    client.config_set("dir", "/proc")
    client.bgsave()
    _until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err")

    def end() -> None:
        client.config_set("dir", home)
        client.bgsave()
        _until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "ok")
        client.config_set("save", "")

    return end


def _read_only(client: redis.Redis) -> Callable[[], None]:
    client.replicaof("127.0.0.1", "1")  # a primary that is not there: the server only turns read-only
    return lambda: client.replicaof("NO", "ONE")


def _busy(client: redis.Redis) -> Callable[[], None]:
    client.config_set("lua-time-limit", "100")
    runner = redis.Redis(connection_pool=client.connection_pool)
    looping = threading.Thread(target=lambda: _quietly(lambda: runner.eval("while true do end", 0)))
    looping.start()

    def end() -> None:
        _until(lambda: _quietly(client.script_kill) is not None)
        looping.join(10)

    return end


def _stall(client: redis.Redis) -> Callable[[], None]:
    """Redis answers nothing for 6 s, twice the processes' socket timeout."""
    sleeper = threading.Thread(target=lambda: client.execute_command("DEBUG", "SLEEP", "6"))
    sleeper.start()
    return lambda: sleeper.join(15)


def _quietly(call: Callable[[], object]) -> object:
    try:
        return call() or True
    except redis.RedisError:
        return None


def _until(probe: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_processes_wait_out_misconf_read_only_busy_and_a_stall(system: System) -> None:
    """Each kind of Redis trouble in turn, four seconds of each: no process exits, each logs at most one
    line per outage, and afterwards an entry and a close go through."""
    client = system.client
    system.wait("ticks", lambda: client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5)
    for begin in (_misconf, _read_only, _busy, _stall):
        end = begin(redis.Redis(unix_socket_path=system.env["REDIS_URL"].removeprefix("unix://")))
        _all_alive_for(system, 4.0)
        end()
        _all_alive_for(system, 2.0)
    pid = _open_one(system)
    assert system.cli("close", pid).returncode == 0
    system.wait("closed", lambda: system.position(pid).state == "closed", timeout=30)
    for name, _ in PROCESSES:  # four outages: at most one line each
        lines = [line for line in _warnings(system, name) if "; waiting for Redis (trying again" in line]
        assert 1 <= len(lines) <= 4, (name, _warnings(system, name))
    assert "MISCONF" in _warnings(system, "engine")[0]
    # The worker's connection keeps the setting's socket timeout (RQ raised it to its dequeue wait + 10 s).
    assert any("did not answer in time" in line for line in _warnings(system, "worker"))
    _clean_logs(system)


def test_a_job_enqueued_after_a_long_outage_starts_within_seconds(
    local_redis: LocalRedis, tmp_path: Path
) -> None:
    """Regression (defect 6): RQ's reconnect wait doubles up to 60 s; after a 20 s outage a job enqueued as
    soon as Redis was back waited about ten seconds more (a manual close stayed `closing` for 40 s)."""
    local_redis.start()
    client = local_redis.client()
    system = System(local_redis.socket_path, tmp_path)
    try:
        system.start("worker", "worker")
        system.wait("the worker up", lambda: client.smembers("rq:workers"), timeout=20)
        local_redis.stop()
        _all_alive_for(system, 20.0)
        local_redis.start()
        client = local_redis.client()
        Queue("orders", connection=client).enqueue("builtins.len", "abc", job_id="len-1")
        t0 = time.monotonic()
        system.wait("the job run", lambda: client.hget("rq:job:len-1", "status") == b"finished", timeout=30)
        took = time.monotonic() - t0
        assert took < 5.0, f"the job ran {took:.1f} s after Redis came back\n{system.logs()}"
        lines = _warnings(system, "worker")
        assert len(lines) == 1 and "no connection to Redis" in lines[0], lines
    finally:
        system.stop_all()

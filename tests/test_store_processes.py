"""The store's atomicity across real OS processes on a real redis-server.

a. Two processes fire at the same position at the same moment: exactly one transition lands.
b. A process SIGKILLed at random moments of a burst of transitions never leaves a position whose hash,
   index sets and log disagree.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from statemachines.position import Position, new_position_id
from statemachines.store import PositionStore

if TYPE_CHECKING:
    from tests.conftest import RealRedis

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[1]
PROCS = Path(__file__).resolve().parent / "procs"
PREFIX = "t"
SYMBOL = "BTC-USDT-SWAP"
TIMEOUT = 20  # seconds any single wait may take before the test fails instead of hanging
DEST = {"entry_filled": "open", "entry_failed": "closed"}


def spawn(script: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """A separate Python process running tests/procs/<script>, importing the project from the checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, str(PROCS / script), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def blpop(r: redis.Redis, key: str, what: str, log: Path) -> str:
    got = r.blpop([key], timeout=TIMEOUT)
    if got is None:
        pytest.fail(f"timed out waiting for {what}; worker stderr:\n{log.read_text(errors='replace')}")
    return got[1]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=TIMEOUT)


@pytest.fixture
def client(real_redis: RealRedis) -> Iterator[redis.Redis]:
    r = redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=True)
    try:
        yield r
    finally:
        r.close()


def test_two_processes_same_transition_exactly_one_wins(
    real_redis: RealRedis, client: redis.Redis, tmp_path: Path
) -> None:
    rounds = 50
    store = PositionStore(client, prefix=PREFIX)
    log = tmp_path / "race.stderr"
    workers = [spawn("race.py", real_redis.socket_path, PREFIX, name, log=log) for name in ("a", "b")]
    rng = random.Random()
    wins: Counter[str] = Counter()
    try:
        assert {blpop(client, "race:hello", "worker start", log) for _ in workers} == {"a", "b"}
        for n in range(rounds):
            pos = Position(id=new_position_id(), symbol=SYMBOL, side="long")
            store.create(pos)
            # Even rounds: the same trigger; odd rounds: conflicting ones (fill vs. failure). Either way one.
            triggers = ("entry_filled", "entry_filled") if n % 2 == 0 else ("entry_filled", "entry_failed")
            for name, trigger in zip("ab", triggers, strict=True):
                client.rpush(f"race:job:{name}", f"{pos.id} {trigger}")
            for _ in workers:  # both have loaded the position at version 1
                blpop(client, "race:ready", "workers to load the position", log)
            order = rng.sample("ab", 2)
            with client.pipeline(transaction=True) as pipe:  # one EXEC releases both blocked workers
                for name in order:
                    pipe.rpush(f"race:go:{name}", "1")
                pipe.execute()
            results = sorted(blpop(client, "race:result", "a race result", log).split() for _ in workers)
            assert sorted(outcome for _, _, outcome in results) == ["stale", "won"], results
            assert {pid for _, pid, _ in results} == {pos.id}
            winner = next(name for name, _, outcome in results if outcome == "won")
            wins[winner] += 1

            won_with = triggers["ab".index(winner)]
            stored = store.load(pos.id)
            assert (stored.state, stored.version) == (DEST[won_with], 2)
            assert [e["trigger"] for e in store.log(pos.id)] == ["create", won_with]
            assert store.check_consistency(pos.id) == []
        for name in "ab":
            client.rpush(f"race:job:{name}", "stop")
        for w in workers:
            assert w.wait(timeout=TIMEOUT) == 0, log.read_text(errors="replace")
    finally:
        stop(workers)
    assert sum(wins.values()) == rounds
    print(f"wins per process: {dict(wins)}")


def test_sigkill_mid_burst_leaves_every_position_consistent(
    real_redis: RealRedis, client: redis.Redis, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store = PositionStore(client, prefix=PREFIX)
    log = tmp_path / "burst.stderr"
    # Different moments: just after start-up, mid-burst, well into it; shuffled so order is not a factor.
    delays = [
        rng.uniform(lo, hi) for lo, hi in [(0, 0.02), (0.02, 0.08), (0.08, 0.2), (0.2, 0.4), (0.4, 0.7)]
    ]
    rng.shuffle(delays)
    live_after_kill = 0
    for run, delay in enumerate(delays):
        proc = spawn("burst.py", real_redis.socket_path, PREFIX, f"{seed}-{run}", log=log)
        try:
            started = blpop(client, "burst:started", f"burst run {run} to start", log)
            # Recovery settled exactly what the previous kill left in flight.
            assert int(started.split()[1]) == live_after_kill, f"seed {seed} run {run}"
            time.sleep(delay)  # the child is bursting from here on
            assert proc.poll() is None, f"burst run {run} died on its own:\n{log.read_text(errors='replace')}"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
        finally:
            stop([proc])
        live_after_kill = len(store.load_live())
        # One position at a time per run, and the previous run's leftovers were closed first.
        assert live_after_kill <= 1, f"seed {seed} run {run}"

    ids = [pid for sym in store.symbols() for pid in store.ids(sym)]
    problems = {pid: p for pid in ids if (p := store.check_consistency(pid))}
    assert problems == {}, f"seed {seed}: {problems}"

    transitions = sum(store.load(pid).version - 1 for pid in ids)
    assert len(ids) > len(delays) and transitions > 10 * len(delays), f"seed {seed}: too little happened"
    # A kill between the global index entry and the creation script leaves at most an id without a hash.
    orphans = set(client.hkeys(store.keys.pos_symbol())) - set(ids)
    assert len(orphans) <= len(delays), orphans
    print(f"seed {seed}: {len(ids)} positions, {transitions} transitions, {len(orphans)} orphan ids")

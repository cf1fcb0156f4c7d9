"""The chaos suite's short pass for CI (issue 5): the real processes around a real redis-server, SIGKILLed
at random (seeded) moments, with paper-venue faults injected, then settled and checked against the
invariants of tests/chaos.py. The longer run is bench/chaos.py; the figures are in RELIABILITY.md."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import KINDS, SETTINGS, Chaos
from tests.conftest import RealRedis
from tests.system import System

pytestmark = pytest.mark.redis

# A fresh seed every run, so that CI explores new schedules; SCALPER_CHAOS_SEED=N reproduces run N's
# (the processes' own timing is not seeded: the same seed takes the market a different way).
SEED = int(os.environ.get("SCALPER_CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000_000))
KILLS = 50


@pytest.fixture
def system(real_redis: RealRedis, tmp_path: Path) -> Iterator[System]:
    sys_ = System(real_redis.socket_path, tmp_path, **SETTINGS)
    yield sys_
    sys_.stop_all()


def test_fifty_sigkills_venue_redis_and_poison_faults_leave_every_invariant_intact(system: System) -> None:
    print(f"\nchaos CI pass, paper: seed {SEED} (SCALPER_CHAOS_SEED={SEED} reproduces it)")
    t0 = time.monotonic()
    # Settling has room: an order job whose retry RQ scheduled waits for a scheduler, whose lock outlives a
    # dead one by 5 s now (61 s before: seed 364066846, RELIABILITY.md finding 25), on a loaded machine too.
    report = Chaos(system, SEED).run(kills=KILLS, max_seconds=120, settle_timeout=90)
    print(f"chaos CI pass: {report.summary()} total={time.monotonic() - t0:.1f}s")
    print(f"  transitions: {dict(sorted(report.triggers.items()))}")
    for line in report.crash_lines:
        print(f"  crash: {line}")
    seed = f"seed {SEED}: SCALPER_CHAOS_SEED={SEED} reproduces its schedule"
    assert report.violations == [], f"{seed}\n" + "\n".join(report.violations) + "\n" + system.logs()
    assert not report.crashes, f"{seed}: processes exited on their own: {report.crash_lines}"
    assert report.total_kills >= KILLS, f"{seed}: {report.summary()}"
    assert all(report.kills[k] >= 3 for k in KINDS), f"{seed}: {report.summary()}"
    # Every fault class of the paper pass happened: venue faults, Redis at its limit and stalled, poison.
    kinds = set(report.faults)
    assert {"redis_oom", "redis_stall"} <= kinds and any(k.startswith("poison_") for k in kinds), kinds
    assert sum(report.faults.values()) >= 10 and report.positions >= 3, f"{seed}: {report.summary()}"

"""The chaos suite's short pass for CI (issue 5): the real processes around a real redis-server, SIGKILLed
at random (seeded) moments, with paper-venue faults injected, then settled and checked against the
invariants of tests/chaos.py. The longer run is bench/chaos.py; the figures are in RELIABILITY.md."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import KINDS, SETTINGS, Chaos
from tests.conftest import RealRedis
from tests.system import System

pytestmark = pytest.mark.redis

SEED = 20261121
KILLS = 50


@pytest.fixture
def system(real_redis: RealRedis, tmp_path: Path) -> Iterator[System]:
    sys_ = System(real_redis.socket_path, tmp_path, **SETTINGS)
    yield sys_
    sys_.stop_all()


def test_fifty_sigkills_and_venue_faults_leave_every_invariant_intact(system: System) -> None:
    t0 = time.monotonic()
    report = Chaos(system, SEED).run(kills=KILLS, max_seconds=120, settle_timeout=45)
    print(f"\nchaos CI pass: {report.summary()} total={time.monotonic() - t0:.1f}s")
    print(f"  transitions: {dict(sorted(report.triggers.items()))}")
    for line in report.crash_lines:
        print(f"  crash: {line}")
    assert report.violations == [], "\n".join(report.violations) + "\n" + system.logs()
    assert not report.crashes, f"processes exited on their own: {report.crash_lines}"
    assert report.total_kills >= KILLS, report.summary()
    assert all(report.kills[k] >= 3 for k in KINDS), report.summary()
    assert sum(report.faults.values()) >= 10 and report.positions >= 5, report.summary()

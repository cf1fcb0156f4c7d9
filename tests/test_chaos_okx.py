"""The chaos suite's pass against the local fake OKX (issues 5 and 10): process kills as in
tests/test_chaos.py, plus the network's faults (WebSocket drops and 64008 notices, REST timeouts that did or
did not execute, late executions, 50011 rate limits, 503s, failed position reads, every REST answer 10 s
late for a while), OKX's clock off from the host's, Redis SIGKILLed and restarted on an append-only file up
to a second behind or with nothing at all, at its memory limit, stalled past the lease, and poison records
of every kind. The exchange's truth is the fake's, outside Redis, so the invariants check that the
reconciler brought Redis back into agreement with it. A fresh seed every run (SCALPER_CHAOS_SEED=N
reproduces run N's schedule)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalper.embedded import LocalRedis
from tests.chaos import KINDS
from tests.chaos_okx import OkxChaos, chaos_okx, okx_settings, summary
from tests.fakeokx.thread import FakeThread
from tests.system import System

pytestmark = pytest.mark.redis

SEED = int(os.environ.get("SCALPER_CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000_000))
KILLS = 62  # steps that kill something: processes, and Redis at one step in ten


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    fake = chaos_okx()
    yield fake
    fake.close()


def test_kills_network_faults_and_redis_restarts_leave_every_invariant_intact(
    local_redis: LocalRedis, tmp_path: Path, okx: FakeThread
) -> None:
    local_redis.start()
    system = System(local_redis.socket_path, tmp_path, **okx_settings(okx))
    chaos = OkxChaos(system, okx, SEED, redis=local_redis, redis_p=0.1)
    print(f"\nchaos CI pass, OKX: seed {SEED} (SCALPER_CHAOS_SEED={SEED} reproduces it)")
    t0 = time.monotonic()
    try:
        report = chaos.run(kills=KILLS, max_seconds=180, settle_timeout=90)
    finally:
        system.stop_all()
    print(f"chaos OKX pass: {summary(chaos)} total={time.monotonic() - t0:.1f}s")
    print(f"  transitions: {dict(sorted(report.triggers.items()))}")
    seed = f"seed {SEED}: SCALPER_CHAOS_SEED={SEED} reproduces its schedule"
    assert report.violations == [], f"{seed}\n" + "\n".join(report.violations) + "\n" + system.logs()
    assert not report.crashes, f"{seed}: processes exited on their own: {report.crash_lines}"
    processes = sum(report.kills[k] for k in KINDS)
    assert processes >= 50 and report.kills["redis"] >= 3, f"{seed}: {report.summary()}"
    assert all(report.kills[k] >= 3 for k in KINDS), f"{seed}: {report.summary()}"
    drops = report.faults["ws_drop_private"] + report.faults["ws_drop_public"]
    rest = sum(n for kind, n in report.faults.items() if not kind.startswith("ws_"))
    assert drops >= 5 and rest >= 10 and report.positions >= 1, f"{seed}: {report.summary()}"
    # Every fault class of issue 10 happened, Redis coming back empty among them.
    kinds = set(report.faults)
    assert {"redis_oom", "redis_stall", "rest_slow_10s"} <= kinds, f"{seed}: {kinds}"
    assert any(k.startswith("poison_") for k in kinds) and chaos.emptied >= 1, f"{seed}: {report.summary()}"
    assert abs(chaos.clock_skew) >= 5, chaos.clock_skew
    # Redis came back with at most the writes appendfsync everysec may lose: its last second, or up to two
    # more while a background fsync is slow and Redis postpones its writes (a busy disk, as under load here),
    # plus the harness's own beat and sleeps running late on a loaded machine (3.24 s seen at load 8).
    assert 0 <= max(chaos.lost_windows) <= 4.0, chaos.lost_windows

"""The chaos suite's pass against the local fake OKX (issue 5): process kills as in tests/test_chaos.py,
plus the network's faults (WebSocket drops and 64008 notices, REST timeouts that did or did not execute,
late executions, 50011 rate limits, 503s, failed position reads) and Redis itself SIGKILLed and restarted
on an append-only file up to a second behind. The exchange's truth is the fake's, outside Redis, so the
invariants check that the reconciler brought Redis back into agreement with it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalper.embedded import LocalRedis
from tests.chaos import KINDS
from tests.chaos_okx import KEY, PASSPHRASE, SECRET, OkxChaos, okx_market, okx_settings, summary
from tests.fakeokx.thread import FakeThread
from tests.system import System

pytestmark = pytest.mark.redis

SEED = 20261122
KILLS = 62  # steps that kill something: processes, and Redis at one step in ten


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    fake = FakeThread(KEY, SECRET, PASSPHRASE)
    okx_market(fake)
    fake.price("46000")
    yield fake
    fake.close()


def test_kills_network_faults_and_redis_restarts_leave_every_invariant_intact(
    local_redis: LocalRedis, tmp_path: Path, okx: FakeThread
) -> None:
    local_redis.start()
    system = System(local_redis.socket_path, tmp_path, **okx_settings(okx))
    chaos = OkxChaos(system, okx, SEED, redis=local_redis, redis_p=0.1)
    t0 = time.monotonic()
    try:
        report = chaos.run(kills=KILLS, max_seconds=180, settle_timeout=60)
    finally:
        system.stop_all()
    print(f"\nchaos OKX pass: {summary(chaos)} total={time.monotonic() - t0:.1f}s")
    print(f"  transitions: {dict(sorted(report.triggers.items()))}")
    assert report.violations == [], "\n".join(report.violations) + "\n" + system.logs()
    assert not report.crashes, f"processes exited on their own: {report.crash_lines}"
    assert sum(report.kills[k] for k in KINDS) >= 50 and report.kills["redis"] >= 3, report.summary()
    assert all(report.kills[k] >= 3 for k in KINDS), report.summary()
    drops = report.faults["ws_drop_private"] + report.faults["ws_drop_public"]
    rest = sum(n for kind, n in report.faults.items() if not kind.startswith("ws_"))
    assert drops >= 5 and rest >= 10 and report.positions >= 3, report.summary()
    # Redis came back with at most the last second of writes lost (what appendfsync everysec allows).
    assert 0 <= max(chaos.lost_windows) <= 1.1, chaos.lost_windows

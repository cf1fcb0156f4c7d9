"""The chaos suite's failover pass (issue 14): the OKX pass's process kills, network faults and poison
records, with Redis as a primary, a replica and three sentinels (real redis-server processes on loopback)
and the primary SIGKILLed three times mid-run, every other time with its replica up to 0.8 s behind (the
new primary lacks those writes). Every process reaches Redis through a redis+sentinel://
URL; the invariants of tests/chaos_okx.py must hold against the fake OKX's own records: no position lost,
no client order id producing a second order, none left half-way, every one protected, PnL equal to the
fills. A fresh seed every run (SCALPER_CHAOS_SEED=N reproduces run N's schedule)."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import KINDS
from tests.chaos_failover import FailoverChaos
from tests.chaos_okx import chaos_okx, okx_settings, summary
from tests.fakeokx.thread import FakeThread
from tests.sentinelkit import SentinelSet
from tests.system import System

pytestmark = pytest.mark.redis

SEED = int(os.environ.get("SCALPER_CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000_000))
STEPS = 24  # steps that kill something: a process, or the primary at one step in eight
FAILOVERS = 3


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    fake = chaos_okx()
    yield fake
    fake.close()


def test_primary_killed_mid_run_several_times_loses_no_position_and_duplicates_no_order(
    sentinel_set: SentinelSet, tmp_path: Path, okx: FakeThread
) -> None:
    system = System("", tmp_path, url=sentinel_set.url(), **okx_settings(okx))
    chaos = FailoverChaos(system, okx, SEED, kit=sentinel_set, failover_every=8)
    print(f"\nchaos failover pass: seed {SEED} (SCALPER_CHAOS_SEED={SEED} reproduces it)")
    t0 = time.monotonic()
    try:
        report = chaos.run(kills=STEPS, max_seconds=55, settle_timeout=90)
        # The CLI reaches Redis through the sentinels too, after the failovers.
        newest = max(system.positions(), key=lambda p: p.created_at, default=None)
        shown = system.cli_json("show", newest.id) if newest is not None else None
    finally:
        system.stop_all()
    print(f"chaos failover pass: {summary(chaos)} total={time.monotonic() - t0:.1f}s")
    print(f"  transitions: {dict(sorted(report.triggers.items()))}")
    seed = f"seed {SEED}: SCALPER_CHAOS_SEED={SEED} reproduces its schedule"
    assert report.violations == [], f"{seed}\n" + "\n".join(report.violations) + "\n" + system.logs()
    assert not report.crashes, f"{seed}: processes exited on their own: {report.crash_lines}"
    assert report.kills["primary"] >= FAILOVERS, f"{seed}: {report.summary()}"
    assert sum(report.kills[k] for k in KINDS) >= 15, f"{seed}: {report.summary()}"
    assert report.positions >= 1, f"{seed}: {report.summary()}"
    assert newest is not None and shown is not None and newest.id in json.dumps(shown)

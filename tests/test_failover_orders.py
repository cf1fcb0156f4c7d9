"""Orders after a failover (issue 14), with real processes on the fake OKX and Redis as a primary, a
replica and three sentinels (tests/failoverkit.py): a close asked for as the primary dies goes to OKX once,
the engine holds entries after the new primary (it takes it for a Redis restart) and then takes them again,
and every order has one client id. How long each takes is measured by bench/failover.py, not here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.failoverkit import CLOSE, HOLD_S, ORDER, FailoverRig
from tests.fakeokx.thread import FakeThread
from tests.okxkit import fake_okx
from tests.sentinelkit import SentinelSet

pytestmark = pytest.mark.redis


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    with fake_okx() as fake:
        yield fake


def test_a_close_asked_for_as_the_primary_dies_goes_once_and_entries_resume_after_the_hold(
    sentinel_set: SentinelSet, tmp_path: Path, okx: FakeThread
) -> None:
    rig = FailoverRig(tmp_path, sentinel_set, okx)
    rig.start()
    try:
        rounds = [rig.round() for _ in range(2)]
        logs = rig.system.logs()
        engine = "".join(p.read_text(errors="replace") for p in tmp_path.glob("engine.*.log"))
    finally:
        rig.stop()
    print(f"\nfailover rounds: {rounds}")
    for r in rounds:
        # The entry waited for the engine's hold after the new primary (it restarted on seeing it).
        assert r.entry_s >= HOLD_S, (r, logs)
    # The engine saw each new primary as a Redis restart and held entries (workers/engine.py).
    assert engine.count("Redis restarted") >= len(rounds) and "no entries for" in engine, logs
    # One order per client id at OKX (closes and entries), and every position over and flat.
    cids = Counter(r.body.get("clOrdId") for r in okx.fake.requests
                   if r.path in (ORDER, CLOSE) and isinstance(r.body, dict))  # fmt: skip
    orders = Counter(o.cl_ord_id for o in okx.fake.engine.orders.values() if o.cl_ord_id)
    assert all(n == 1 for n in orders.values()), orders
    assert sum(cids.values()) >= 6, cids
    assert not any(p.pos for p in okx.fake.engine.positions.values())

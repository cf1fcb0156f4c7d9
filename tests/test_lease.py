"""The shard lease (workers/lease.py) with real engines on a real redis-server.

Only the holder steps machines; a release hands the shard over on the other engine's next `run_once`; a
holder that dies (SIGKILL of a separate engine process) is taken over within the TTL; and a zombie that
lost the lease can neither renew nor release the new owner's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from config.settings import Settings
from statemachines import stepper
from statemachines.intents import open_intent
from statemachines.keys import Keys
from statemachines.machine import PositionMachine
from statemachines.position import Position, Side, new_position_id
from statemachines.store import PositionStore
from workers.engine import Engine
from workers.lease import Lease, held_leases

if TYPE_CHECKING:
    from tests.conftest import RealRedis

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[1]
PROCS = Path(__file__).resolve().parent / "procs"
PREFIX = "lt"
BTC = "BTC-USDT-SWAP"
TTL = 1.0  # the dying engine's lease
MARGIN = 0.5  # allowed on top of the TTL for the takeover: polling, process scheduling


def settings() -> Settings:
    return Settings(_env_file=None, redis={"prefix": PREFIX}, symbols={BTC: {}})  # type: ignore[call-arg, arg-type]


def engine(client: redis.Redis, ttl: float = 5.0, **kw: Any) -> Engine:
    return Engine(settings(), client, symbols=[BTC], lease_ttl_s=ttl, **kw)


def tick(client: redis.Redis, px: float = 50000.0) -> str:
    """A feed tick, as the feed writes it; returns its stream id."""
    entry_id = client.xadd(f"{PREFIX}:{{{BTC}}}:ticks", {"px": repr(px), "ts": repr(time.time())})
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def open_position(client: redis.Redis, *, close_request: str = "") -> Position:
    """An open position; with `close_request`, the holder's next tick must move it to closing."""
    store = PositionStore(client, PREFIX)
    pm = PositionMachine(store)
    now = time.time()
    pos = Position(id=new_position_id(now), symbol=BTC, side=Side.LONG, state_since=now, wall_since=now,
                   entry_size=D(1), entry_attempt=1)  # fmt: skip
    store.create(pos, reason="test entry", ts=now, intent=open_intent(pos, D(1)).to_fields())
    stepper.entry_filled(
        pm, pos, price=D(50000), size=D(1), atr=None, cfg=settings().for_symbol(BTC), now=now
    )
    if close_request:
        assert store.request_close(pos.id, close_request)
    return pos


def lease_key() -> str:
    return f"{PREFIX}:lease:all"


def holder(client: redis.Redis) -> str | None:
    raw = client.get(lease_key())
    return None if raw is None else raw.decode()


@pytest.fixture
def client(real_redis: RealRedis) -> Iterator[redis.Redis]:
    """The test's Redis; afterwards every stored position must be consistent (legal transitions only)."""
    yield real_redis.client
    store = PositionStore(real_redis.client, PREFIX)
    for symbol in store.symbols():
        for pid in store.ids(symbol):
            assert store.check_consistency(pid) == [], pid


# --- bare leases ---


def test_one_holder_at_a_time_and_renewal_extends_only_ones_own(client: redis.Redis) -> None:
    a, b = Lease(client, lease_key(), ttl_s=2.0, owner="a"), Lease(client, lease_key(), ttl_s=2.0, owner="b")
    assert a.acquire() and not b.acquire()
    assert holder(client) == a.token and a.token != b.token and a.token.startswith("a-")
    assert not b.renew() and not b.keep() and holder(client) == a.token
    client.pexpire(lease_key(), 500)
    assert a.renew() and client.pttl(lease_key()) > 1500
    b.held = True  # even believing it holds the lease, b cannot release a's
    b.release()
    assert holder(client) == a.token and not b.held
    a.release()
    assert holder(client) is None and not a.held and b.acquire()


def test_keep_renews_after_a_third_of_the_ttl(client: redis.Redis) -> None:
    lease = Lease(client, lease_key(), ttl_s=0.6)
    assert lease.keep()  # acquires
    time.sleep(0.25)  # past a third of the TTL
    assert lease.keep() and client.pttl(lease_key()) > 500


def test_a_zombie_that_lost_the_lease_can_neither_renew_nor_release_it(client: redis.Redis) -> None:
    zombie = Lease(client, lease_key(), ttl_s=0.2, owner="zombie")
    assert zombie.acquire()
    time.sleep(0.3)  # paused past its TTL (GC, SIGSTOP, a slow disk...)
    heir = Lease(client, lease_key(), ttl_s=5.0, owner="heir")
    assert heir.acquire()
    assert zombie.held  # it still believes it holds the lease
    zombie.release()  # ...and tries to hand it back
    assert holder(client) == heir.token
    zombie.held = True
    assert not zombie.renew() and not zombie.held  # renew reports the loss
    assert not zombie.keep()  # and keeping tries to acquire, which fails
    assert holder(client) == heir.token and client.pttl(lease_key()) > 4000  # heir's TTL untouched


# --- engines ---


def test_only_the_lease_holder_steps_machines(client: redis.Redis) -> None:
    pos = open_position(client, close_request="operator")
    a, b = engine(client), engine(client)
    assert a.run_once(block_ms=0) == 0 and a.lease.held and a.started  # no ticks yet
    assert b.run_once(block_ms=0) == 0 and not b.lease.held and not b.started
    assert [p.id for p in a.live_positions()] == [pos.id] and b.live_positions() == []

    for n in range(1, 6):
        tick(client, 50000.0 + n)
        assert b.run_once(block_ms=0) == 0
        assert a.run_once(block_ms=0) == 1
        assert (a.ticks_seen, b.ticks_seen) == (n, 0)

    log = PositionStore(client, PREFIX).log(pos.id)
    closes = [e for e in log if e["trigger"] == "close"]
    assert len(closes) == 1 and closes[0]["reason"] == "manual"  # fired once, by the holder
    assert PositionStore(client, PREFIX).load(pos.id).state == "closing"


def test_release_hands_the_shard_over_on_the_next_run_once(client: redis.Redis) -> None:
    pos = open_position(client)
    a, b = engine(client), engine(client)
    tick(client)
    assert a.run_once(block_ms=0) == 1 and b.run_once(block_ms=0) == 0
    a.stop()  # releases the lease
    assert holder(client) is None

    tick(client)
    store = PositionStore(client, PREFIX)
    store.request_close(pos.id, "operator")
    assert b.run_once(block_ms=0) == 1  # took over, loaded the shard, and went on from a's cursor
    assert b.lease.held and holder(client) == b.lease.token
    assert (a.ticks_seen, b.ticks_seen) == (1, 1)
    assert store.load(pos.id).state == "closing"
    assert a.run_once(block_ms=0) == 0 and not a.started  # a is now the one waiting


def test_an_engine_that_regains_the_shard_after_stop_reloads_it(client: redis.Redis) -> None:
    a, b = engine(client), engine(client)
    tick(client)
    assert a.run_once(block_ms=0) == 1
    a.stop()
    tick(client)
    assert b.run_once(block_ms=0) == 1  # b handles the second tick
    b.stop()
    a.run_once(block_ms=0)
    assert a.ticks_seen == 1  # the second tick was b's: a must start from the shared cursor


def test_a_zombie_engine_stops_stepping_and_cannot_touch_the_new_lease(client: redis.Redis) -> None:
    open_position(client)
    zombie, heir = engine(client, ttl=0.3), engine(client)
    tick(client)
    assert zombie.run_once(block_ms=0) == 1
    time.sleep(0.4)  # the zombie is paused past its TTL...
    assert heir.run_once(block_ms=0) == 0 and heir.lease.held  # ...and the heir takes the shard

    tick(client)
    assert zombie.run_once(block_ms=0) == 0  # it learns it lost the lease instead of stepping
    assert (zombie.lease.held, zombie.started, zombie.ticks_seen) == (False, False, 1)
    zombie.stop()
    assert holder(client) == heir.lease.token
    assert heir.run_once(block_ms=0) == 1 and heir.ticks_seen == 1


def test_a_killed_holder_is_taken_over_within_the_ttl(
    real_redis: RealRedis, client: redis.Redis, tmp_path: Path
) -> None:
    pos = open_position(client)
    err = tmp_path / "engine_proc.err"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(PROCS / "engine_proc.py"), real_redis.socket_path, PREFIX, repr(TTL)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        got = client.blpop([f"{PREFIX}:test:engine-proc"], timeout=20)
        if got is None:
            pytest.fail(f"the engine process never took the lease:\n{err.read_text(errors='replace')}")
        token = got[1].decode()
        assert holder(client) == token

        survivor = engine(client, ttl=TTL)
        first = tick(client)
        deadline = time.monotonic() + 10
        while client.hget(f"{PREFIX}:engine:cursor", BTC) != first.encode():  # the child steps it
            assert time.monotonic() < deadline, "the engine process never processed the tick"
            assert survivor.run_once(block_ms=0) == 0  # meanwhile the survivor does nothing
            time.sleep(0.01)
        # Alive, it keeps the lease past its TTL by renewing it, and the survivor keeps waiting.
        until = time.monotonic() + 1.5 * TTL
        while time.monotonic() < until:
            assert survivor.run_once(block_ms=20) == 0
        assert holder(client) == token
        assert survivor.ticks_seen == 0 and not survivor.started

        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(timeout=10)
        while not survivor.lease.held:
            assert time.monotonic() - killed_at < TTL + 5, "no takeover"
            survivor.run_once(block_ms=20)
        took = time.monotonic() - killed_at
        assert took <= TTL + MARGIN, f"takeover took {took:.3f} s with a {TTL} s lease"
        assert holder(client) == survivor.lease.token != token

        # The survivor goes on from the dead engine's cursor, with the shard's positions loaded.
        assert survivor.ticks_seen == 0 and [p.id for p in survivor.live_positions()] == [pos.id]
        tick(client)
        assert survivor.run_once(block_ms=0) == 1 and survivor.ticks_seen == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_malformed_events_are_counted_and_dropped_never_crash_the_engine(client: redis.Redis) -> None:
    eng = engine(client)
    tick(client)
    assert eng.run_once(block_ms=0) == 1
    key = eng.keys.events(BTC)
    for bad in ({"kind": "order", "inst_id": BTC}, {"kind": "order", "cl_ord_id": "x", "side": "buy",
                "state": "nonsense", "size": "1", "inst_id": BTC},
                {"kind": "position", "inst_id": BTC, "side": "long", "size": "NaNx"}):  # fmt: skip
        client.xadd(key, bad)
    eng.run_once(block_ms=0)
    assert eng.dropped_events == 3
    assert client.xpending(key, "engine")["pending"] == 0  # acknowledged: not redelivered forever


# --- the listing readers find leases by ---


def test_a_listed_lease_is_found_without_a_scan_and_its_lost_listing_comes_back_with_a_renewal(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`scalper web` finds the engines' leases through the set they are listed in (a SCAN of the keyspace a
    second cost it 100 round trips at a thousand keys). A listing a failover lost is written again by the
    next renewal; a lease that expired is listed but not held."""
    keys = Keys(PREFIX)

    def no_scan(*_: object, **__: object) -> None:
        raise AssertionError("held_leases scanned the keyspace")

    monkeypatch.setattr(client, "scan", no_scan)
    monkeypatch.setattr(client, "scan_iter", no_scan)
    lease = Lease(client, keys.lease("all"), ttl_s=3.0, owner="engine-all", listed_in=(keys.leases(), "all"))
    assert held_leases(client, keys) == {}
    assert lease.acquire()
    [(shard, (owner, ttl_ms))] = held_leases(client, keys).items()
    assert shard == "all" and owner == lease.token and 0 < ttl_ms <= 3000
    client.delete(keys.leases())  # lost with the last second before a failover
    assert held_leases(client, keys) == {}
    assert lease.renew() and set(held_leases(client, keys)) == {"all"}
    other = Lease(client, keys.lease("eth"), ttl_s=0.2, listed_in=(keys.leases(), "eth"))
    assert other.acquire() and set(held_leases(client, keys)) == {"all", "eth"}
    time.sleep(0.3)  # the eth engine died: its lease expired, its name stays listed
    assert client.sismember(keys.leases(), "eth") and set(held_leases(client, keys)) == {"all"}
    lease.release()
    assert held_leases(client, keys) == {}

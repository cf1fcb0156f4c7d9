"""Redis through Sentinel (issue 14): the redis+sentinel:// URL, its errors in one line without the password,
and a client that follows the primary through real failovers (a primary, a replica and three sentinels, real
redis-server processes on loopback: tests/sentinelkit.py), riding out what the switch answers."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from scalper.connect import NoRedis, connect
from scalper.sentinel import DEFAULT_PORT, parse
from tests.sentinelkit import SentinelSet
from workers.redis_trouble import Outage, diagnose

SECRET = "s3cr3t-Pa55"


def test_the_url_names_sentinels_service_db_password_and_tls_options() -> None:
    a = parse(f"rediss+sentinel://app:{SECRET}@10.0.0.1:26380,[::1],sentinel-c/prod/3"
              "?sentinel_password=other&ssl_ca_certs=/etc/ca.pem")  # fmt: skip
    assert a.sentinels == [("10.0.0.1", 26380), ("::1", DEFAULT_PORT), ("sentinel-c", DEFAULT_PORT)]
    assert (a.service, a.db, a.username, a.password, a.tls) == ("prod", 3, "app", SECRET, True)
    assert a.options == {"sentinel_password": "other", "ssl_ca_certs": "/etc/ca.pem"}
    plain = parse(f"redis+sentinel://:{SECRET}@h:1/mymaster")
    assert (plain.username, plain.password, plain.db, plain.tls) == (None, SECRET, 0, False)
    assert SECRET not in repr(plain)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"redis+sentinel://:{SECRET}@/mymaster", "names no sentinel"),
        (f"redis+sentinel://:{SECRET}@h:1", "names no service"),
        (f"redis+sentinel://:{SECRET}@h:1/mymaster/zero", "not a database number"),
        (f"redis+sentinel://:{SECRET}@h:port/mymaster", "port is not a port number"),
        (f"redis+sentinel://:{SECRET}@h:1/m?sentinel_pasword={SECRET}", "options it does not know"),
        (f"redis+sentinel://:{SECRET}@h:1/m?ssl_ca_certs=/ca.pem", "TLS options but is not rediss+sentinel"),
    ],
)
def test_a_bad_sentinel_url_is_one_line_naming_the_setting_without_the_password(url: str, says: str) -> None:
    with pytest.raises(NoRedis) as err:
        connect(url)
    message = str(err.value)
    assert message.startswith("REDIS_URL=redis+sentinel://") and says in message, message
    assert SECRET not in message and "\n" not in message and not err.value.transient


def test_no_sentinel_answering_is_transient_and_says_so(tmp_path: Path) -> None:
    from tests.sentinelkit import free_port

    with pytest.raises(NoRedis) as err:
        connect(f"redis+sentinel://:{SECRET}@127.0.0.1:{free_port()}/scalper")
    assert err.value.transient and "cannot connect" in str(err.value) and SECRET not in str(err.value)


@pytest.mark.redis
def test_a_client_follows_the_primary_through_failovers_riding_out_the_switch(
    sentinel_set: SentinelSet,
) -> None:
    """Writes go on from a thread while the primary is SIGKILLed twice, the second time with its replica
    0.8 s behind: every error the switch produces is transient (waited out, never raised), writes land on
    each new primary, and the lagging replica's promotion loses acknowledged writes."""
    client = connect(sentinel_set.url())
    outage = Outage("writer", logging.getLogger("test"), max_wait_s=0.5, first_wait_s=0.02)
    seen: Counter[str] = Counter()
    acked: list[int] = []
    stop = threading.Event()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                acked.append(int(outage.ride(lambda: client.incr("counter"))))
                time.sleep(0.005)
        except BaseException as err:
            failed.append(err)

    original = outage.failed

    def note(trouble):  # type: ignore[no-untyped-def]
        seen[trouble.code] += 1
        return original(trouble)

    outage.failed = note  # type: ignore[method-assign]
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    ports = [sentinel_set.primary_port()]
    try:
        for lag in (0.0, 0.8):
            time.sleep(0.5)
            sentinel_set.fail_over(lag_s=lag)
            before = len(acked)
            ports.append(sentinel_set.primary_port())
            deadline = time.monotonic() + 20
            while len(acked) < before + 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(acked) >= before + 100, f"writes did not resume after the failover: {seen}"
    finally:
        stop.set()
        writer.join(timeout=30)
    assert not failed, failed
    assert ports[0] != ports[1] != ports[2] and ports[0] == ports[2], ports
    # What outlasted redis-py's own short retries (scalper/sentinel.py RETRY) was transient, and waited out.
    assert set(seen) <= {"unreachable", "READONLY", "LOADING", "timeout"}, seen
    # The last primary holds the last write acknowledged. A value acknowledged twice is a write a failover
    # lost (replication is asynchronous: what the replica had not received when its primary died).
    assert int(sentinel_set.client().get("counter")) == acked[-1]
    # The second failover found its replica 0.8 s behind: acknowledged writes were lost (what the engine's
    # hold and the reconciler are for), and the counter went on from what the new primary had.
    assert len(acked) - len(set(acked)) > 0, "a replica 0.8 s behind lost nothing"
    print(f"\nwrites acknowledged {len(acked)}, lost to the failovers {len(acked) - len(set(acked))}, "
          f"errors ridden out {dict(seen)}, failovers {[round(s, 2) for s in sentinel_set.failovers]} s")


@pytest.mark.redis
def test_a_password_protected_deployment_connects_and_a_wrong_password_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    kit = SentinelSet(tmp_path / "auth", password=SECRET)
    try:
        kit.start()
        client = connect(kit.url())
        client.set("k", "v")
        assert kit.client().get("k") == b"v"
        with pytest.raises(NoRedis) as err:
            connect(kit.url().replace(SECRET, "wrong-password"))
        message = str(err.value)
        assert "refused the credentials" in message and not err.value.transient, message
        assert "wrong-password" not in message and SECRET not in message
    finally:
        kit.close()


def test_readonly_and_no_primary_are_transient() -> None:
    """What redis-py raises during the switch, as the processes diagnose it."""
    from redis.sentinel import MasterNotFoundError

    for err in (redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
                MasterNotFoundError("No master found for 'scalper'"),
                redis.ConnectionError("The previous master is now a slave"),
                redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory")):  # fmt: skip
        trouble = diagnose(err)
        assert trouble is not None and trouble.transient, err


@pytest.mark.redis
def test_the_replica_wait_returns_once_the_replica_has_the_new_position_and_counts_a_wait_that_timed_out(
    sentinel_set: SentinelSet,
) -> None:
    """redis.replica_wait: after a position is created the store WAITs for a replica; with the replica
    stalled (DEBUG SLEEP) it gives up after replica_wait_ms, counts it, and the write stands."""
    from decimal import Decimal

    from statemachines.position import Position, new_position_id
    from statemachines.store import PositionStore

    store = PositionStore(connect(sentinel_set.url()), replica_wait=(1, 2000))
    pos = Position(id=new_position_id(), symbol="BTC-USDT-SWAP", side="long", leverage=5,
                   entry_size=Decimal("3"))  # fmt: skip
    store.create(pos)
    replica = sentinel_set.replica().client(socket_timeout=5)
    assert replica.hget(store.keys.pos(pos.symbol, pos.id), "state") == b"opening"
    assert store.replicas_short == 0
    stalled = threading.Thread(target=lambda: sentinel_set.replica().client(socket_timeout=10)
                               .execute_command("DEBUG", "SLEEP", "1.5"))  # fmt: skip
    stalled.start()
    time.sleep(0.2)
    store.replica_wait = (1, 300)
    late = Position(id=new_position_id(), symbol="BTC-USDT-SWAP", side="long", leverage=5,
                    entry_size=Decimal("3"))  # fmt: skip
    t0 = time.monotonic()
    store.create(late)
    waited = time.monotonic() - t0
    stalled.join()
    assert store.replicas_short == 1 and 0.25 <= waited < 1.5, (store.replicas_short, waited)
    assert store.load(late.id).state == "opening"


@pytest.mark.redis
def test_the_web_process_follows_the_primary_through_a_failover(
    sentinel_set: SentinelSet, tmp_path: Path
) -> None:
    """`scalper web` through redis+sentinel://: it serves before and after the primary dies (its /ready
    reads Redis, so it answers from the new primary), and does not exit."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")}
    env |= {"REDIS_URL": sentinel_set.url(), "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "scalper", "web", "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    client = connect(sentinel_set.url())
    try:
        deadline, url = time.monotonic() + 30, None
        while time.monotonic() < deadline and not url:
            url = client.get("scalper:web:url")
            time.sleep(0.05)
        assert url, "no URL published"
        base = url.decode()

        def ready_reads_redis() -> bool:
            try:
                got = httpx.get(f"{base}/ready", timeout=5)
            except httpx.HTTPError:
                return False
            # No engine runs: not ready, for that reason, and not because Redis cannot be read.
            return got.status_code == 503 and not any(w.startswith("redis") for w in got.json()["why"])

        deadline = time.monotonic() + 20
        while not ready_reads_redis():
            assert time.monotonic() < deadline and proc.poll() is None, "web never read Redis"
            time.sleep(0.1)
        sentinel_set.fail_over()
        deadline = time.monotonic() + 30
        while not ready_reads_redis():
            assert time.monotonic() < deadline, "web did not read the new primary"
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0

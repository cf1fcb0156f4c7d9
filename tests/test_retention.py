"""Retention of closed positions on a real redis-server (issue 10, defect 12: unbounded growth).

A closed position gets its row in the day's trade ledger on the next pass and is removed, whole and in one
script, once it is past `engine.closed_retention_s`; nothing live is ever touched; the ledger adds up to the
positions it replaced; a Redis killed in the middle of a removal comes back with every position whole or
gone; the operator's commands still show removed positions from the ledger.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from decimal import Decimal as D
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import DAY_S, MIN_RETENTION_S, ConfigError, load_settings
from scalper import inspect
from statemachines.archive import ClosedArchive
from statemachines.ledger import TradeLedger, TradeRecord, utc_day
from statemachines.machine import PositionMachine
from statemachines.store import PositionNotFound, PositionStore
from tests.retentionkit import BTC, ETH, Clock, closed_position, holdings, mentions, open_position, settings
from workers.engine import Engine
from workers.lost_records import LOST_RECORD_MAX_AGE_S
from workers.retention import ClosedRetention
from workers.riskstate import RiskState

if TYPE_CHECKING:
    from scalper.embedded import LocalRedis
    from tests.conftest import RealRedis

pytestmark = pytest.mark.redis

PREFIX = "rt"
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
RETENTION = 3 * DAY_S  # the default


def no_handoff(_intent: object) -> list[list[str]]:
    return []  # the intents go nowhere: these tests are about the positions' own keys


@pytest.fixture
def world(real_redis: RealRedis) -> tuple[redis.Redis, PositionStore, PositionMachine, Clock]:
    clock = Clock(T0)
    store = PositionStore(real_redis.client, PREFIX, handoff=no_handoff)
    return real_redis.client, store, PositionMachine(store, clock=clock, wall=clock), clock


def retention(client: redis.Redis, symbols: list[str] | None = None) -> ClosedRetention:
    return ClosedRetention.from_settings(client, PositionStore(client, PREFIX).keys, symbols or [BTC, ETH],
                                         settings(PREFIX).engine)  # fmt: skip


def not_ledger(key: str) -> bool:
    return key.startswith(f"{PREFIX}:ledger:")


# --- the sweep ---


def test_a_position_past_the_retention_is_removed_with_everything_it_had_and_one_inside_it_is_kept(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    old = closed_position(store, pm, clock, pnl=D("1.5"), fee=D("-0.2"))
    clock.advance(2 * DAY_S)
    recent = closed_position(store, pm, clock, symbol=ETH)
    sweep = retention(client)
    assert sweep.run_once(clock()) is not None
    held = mentions(client, old.id, skip=not_ledger)
    assert f"{PREFIX}:{{{BTC}}}:pos:{old.id}" in held and f"{PREFIX}:pos-symbol (field)" in held

    result = sweep.run_once(clock.advance(RETENTION - 2 * DAY_S + 1))  # old: 3 days + 1 s ago; recent: 1 day

    assert result is not None and result.removed == 1
    assert mentions(client, old.id, skip=not_ledger) == []  # hash, log, index sets, queue, pos-symbol
    with pytest.raises(PositionNotFound):
        store.load(old.id)
    row = TradeLedger(client, store.keys).find(old.id)
    assert row is not None and row == TradeRecord.of(old)
    assert (row.pnl, row.fees, row.net) == (D("1.5"), D("-0.3250025"), D("1.1749975"))
    assert store.check_consistency(recent.id) == [] and store.load(recent.id).state == "closed"
    assert TradeLedger(client, store.keys).find(recent.id) == TradeRecord.of(recent)


def test_the_ledger_row_is_written_on_the_first_pass_after_the_close_and_nothing_is_removed_early(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    sweep = retention(client)
    pos = closed_position(store, pm, clock)
    assert sweep.run_once(clock.advance(1)) == (1, 0)
    assert sweep.run_once(clock.advance(0.5)) is None  # at most once a second
    assert sweep.run_once(clock.advance(RETENTION - 2)) == (0, 0)
    assert store.check_consistency(pos.id) == []
    assert sweep.run_once(clock.advance(1.5)) == (0, 1)


def test_a_removal_writes_the_ledger_row_first_when_it_is_missing(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    pos = closed_position(store, pm, clock, pnl=D("-4"), fee=D("-0.3"))
    sweep = retention(client)
    sweep.run_once(clock())
    client.delete(store.keys.ledger(utc_day(pos.state_since)))  # lost, expired too early: whatever the cause
    assert sweep.run_once(clock.advance(RETENTION + 1)) == (0, 1)
    assert TradeLedger(client, store.keys).find(pos.id) == TradeRecord.of(pos)
    assert TradeLedger(client, store.keys).days() == [utc_day(pos.state_since)]


def test_the_ledger_adds_up_to_the_positions_and_to_the_daily_risk_counters(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    rng = random.Random(7)
    risk = RiskState(client, PREFIX)
    clock.t = 1_700_006_400.0 - 5 * 3600  # five hours before 00:00 UTC: the closes span two UTC days
    closed = []
    for _ in range(40):
        clock.advance(rng.uniform(60, 900))
        pnl, fee = D(str(round(rng.uniform(-3, 3), 6))), D(str(round(-rng.uniform(0, 0.3), 7)))
        pos = closed_position(store, pm, clock, pnl=pnl, fee=fee, symbol=rng.choice([BTC, ETH]))
        risk.record_close(pos.symbol, pos.realized_pnl + pos.fees, pos.state_since, position_id=pos.id)
        closed.append(store.load(pos.id))
    days = sorted({utc_day(p.state_since) for p in closed})
    assert len(days) == 2
    sweep = retention(client)
    sweep.run_once(clock())
    sweep.run_once(clock.advance(RETENTION + 1))  # every one of them is past the retention
    assert store.symbols() == [BTC, ETH] and not any(store.ids(s) for s in store.symbols())

    ledger = TradeLedger(client, store.keys)
    assert ledger.days() == days
    for day in days:
        mine = [p for p in closed if utc_day(p.state_since) == day]
        rows = ledger.day(day)
        assert sorted(r.id for r in rows) == sorted(p.id for p in mine)
        assert sum(r.net for r in rows) == sum(p.realized_pnl + p.fees for p in mine)
        assert sum(r.fees for r in rows) == sum(p.fees for p in mine)
        assert sum(r.net for r in rows) == risk.day(mine[0].state_since).pnl
    assert ledger.malformed == []


def test_retention_never_removes_a_live_position(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    old_open = open_position(store, pm, clock)  # opened long before the retention ends, still open
    planted = open_position(store, pm, clock, symbol=ETH)
    # A queue entry for a live position (a hand edit, a bug) with an ancient close time.
    client.zadd(store.keys.archived(ETH), {planted.id: 1.0})
    sweep = retention(client)
    sweep.run_once(clock.advance(10 * RETENTION))
    sweep.run_once(clock.advance(10 * RETENTION))
    for pos in (old_open, planted):
        assert store.check_consistency(pos.id) == [] and store.load(pos.id).state == "open"
        assert TradeLedger(client, store.keys).find(pos.id) is None
    assert client.zcard(store.keys.archived(ETH)) == 0  # the stray entry left the queue, nothing else
    # Asked directly, the removal script refuses it as well.
    result = ClosedArchive(client, store.keys).remove([(BTC, old_open.id)])
    assert result.done == [] and result.refused == [old_open.id]
    assert store.check_consistency(old_open.id) == []


def test_keep_forever_archives_but_never_removes(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    pos = closed_position(store, pm, clock)
    keys = store.keys
    forever = ClosedRetention(client, keys, [BTC], retention_s=0, ledger_ttl_s=0)
    assert forever.run_once(clock()) == (1, 0)
    assert forever.run_once(clock.advance(1000 * DAY_S)) == (0, 0)
    assert store.check_consistency(pos.id) == []
    assert client.ttl(keys.ledger(utc_day(pos.state_since))) == -1


def test_a_day_ledger_expires_after_its_retention_and_is_forgotten(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    pos = closed_position(store, pm, clock)
    retention(client).run_once(clock())
    day_key = store.keys.ledger(utc_day(pos.state_since))
    assert 399 * DAY_S < client.ttl(day_key) <= 400 * DAY_S
    client.delete(day_key)  # as its TTL would
    assert TradeLedger(client, store.keys).forget_expired_days() == 1
    assert TradeLedger(client, store.keys).days() == []


def test_unparsable_or_orphaned_records_are_left_alone_and_the_rest_goes_on(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    client, store, pm, clock = world
    bad = closed_position(store, pm, clock)
    client.hset(store.keys.pos(BTC, bad.id), "realized_pnl", "garbage")
    client.sadd(store.keys.state(BTC, "closed"), "nohash000000")  # an index entry without its hash
    good = closed_position(store, pm, clock)
    sweep = retention(client)
    assert sweep.run_once(clock()) == (1, 0)
    assert sweep.run_once(clock.advance(RETENTION + 1)) == (0, 1)
    assert sweep.run_once(clock.advance(1)) == (0, 0)
    assert client.exists(store.keys.pos(BTC, bad.id)) and TradeLedger(client, store.keys).find(good.id)
    assert sum("left alone" in r.message for r in caplog.records) == 2  # logged once each


def test_at_maxmemory_removal_still_frees_memory_and_a_failed_archive_is_tried_again(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    client, store, pm, clock = world
    old = [closed_position(store, pm, clock).id for _ in range(20)]
    sweep = retention(client)
    assert sweep.run_once(clock()) == (20, 0)
    new = [closed_position(store, pm, clock).id for _ in range(20)]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 20_000)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", "x")  # Redis refuses writes that add memory
        # Archiving the new ones adds memory: refused. Removing the old ones does not: done.
        assert sweep.run_once(clock.advance(RETENTION + 1)) == (0, 20)
        assert sum("failed, tried again" in r.message for r in caplog.records) == 20
        assert sweep.run_once(clock.advance(1)) == (20, 0)  # below the limit again: archived now
    finally:
        client.config_set("maxmemory", 0)
    assert not any(client.exists(store.keys.pos(BTC, i)) for i in old)
    assert all(store.check_consistency(i) == [] for i in new)
    assert {r.id for r in TradeLedger(client, store.keys).all()} == set(old) | set(new)


# --- crash safety ---


def test_a_redis_killed_in_the_middle_of_a_removal_leaves_each_position_whole_or_gone(
    local_redis: LocalRedis,
) -> None:
    local_redis.start()
    client = local_redis.client()
    clock = Clock(T0)
    store = PositionStore(client, PREFIX, handoff=no_handoff)
    pm = PositionMachine(store, clock=clock, wall=clock)
    ids = [closed_position(store, pm, clock).id for _ in range(600)]
    archive = ClosedArchive(client, store.keys)
    assert len(archive.archive([(BTC, i) for i in ids], clock()).done) == 600
    assert client.zcard(store.keys.archived(BTC)) == 600

    worker = redis.Redis(unix_socket_path=local_redis.socket_path, retry=Retry(NoBackoff(), 0))

    def remove_all() -> None:
        with contextlib.suppress(redis.ConnectionError):  # the server dies under it: that is the test
            ClosedArchive(worker, store.keys).remove([(BTC, i) for i in ids])

    thread = threading.Thread(target=remove_all)
    thread.start()
    deadline = time.monotonic() + 30
    while client.scard(store.keys.state(BTC, "closed")) == 600 and time.monotonic() < deadline:
        client.execute_command("DEBUG", "SLEEP", "0.002")  # slows the server between chunks of the batch
    local_redis.kill()
    thread.join(timeout=30)
    local_redis.start()
    client = local_redis.client()
    store = PositionStore(client, PREFIX)
    ledger = TradeLedger(client, store.keys)

    kept = set(store.ids(BTC))
    assert 0 < len(kept) < 600, "the kill did not land in the middle of the batch"
    held = holdings(client, skip=not_ledger)
    rows = {r.id for r in ledger.all()}
    for pid in ids:
        if pid in kept:
            assert store.check_consistency(pid) == [], pid
            assert client.zscore(store.keys.archived(BTC), pid) is not None
        else:
            assert [where for where, text in held if pid in text] == [], pid
        assert pid in rows  # removed or not, its trade is in the ledger
    client.close()
    worker.close()


# --- the engine runs it ---


def test_the_engine_loop_archives_closed_positions_and_removes_them_after_the_retention(
    real_redis: RealRedis,
) -> None:
    client = real_redis.client
    clock = Clock(time.time())
    engine = Engine(settings(PREFIX), client, symbols=[BTC], wall=clock, hand_off_to_rq=False)
    pm = PositionMachine(engine.store, clock=clock, wall=clock)
    pos = closed_position(engine.store, pm, clock)
    engine.run_once(block_ms=1)
    row_key = engine.keys.ledger(utc_day(pos.state_since))
    assert client.hexists(row_key, pos.id)
    assert engine.store.check_consistency(pos.id) == []
    clock.advance(RETENTION + 1)
    engine.run_once(block_ms=1)
    assert not client.exists(engine.keys.pos(BTC, pos.id), engine.keys.log(BTC, pos.id))
    assert not client.hexists(engine.keys.pos_symbol(), pos.id) and client.hexists(row_key, pos.id)


# --- what the operator sees ---


def test_positions_all_and_show_still_show_a_removed_position_from_the_ledger(
    world: tuple[redis.Redis, PositionStore, PositionMachine, Clock],
) -> None:
    client, store, pm, clock = world
    gone = closed_position(store, pm, clock, pnl=D("2"), fee=D("-0.5"))
    clock.advance(2 * DAY_S)
    kept = closed_position(store, pm, clock)
    live = open_position(store, pm, clock)
    sweep = retention(client)
    sweep.run_once(clock())
    sweep.run_once(clock.advance(DAY_S + 1))

    rows = {r["id"]: r for r in inspect.positions(store, include_closed=True)}
    states = {i: r["state"] for i, r in rows.items()}
    assert states == {gone.id: "archived", kept.id: "closed", live.id: "open"}
    assert rows[gone.id]["gross"] == 2.0 and rows[gone.id]["net"] == 1.3749975
    assert [r["id"] for r in inspect.positions(store, include_closed=False)] == [live.id]
    assert gone.id in inspect.table(list(rows.values()))

    data = inspect.show(store, gone.id)
    text = inspect.show_text(data)
    assert "archived" in text and f"HGET '{PREFIX}:ledger:{{{utc_day(gone.state_since)}}}' {gone.id}" in text
    assert "+1.37" in text
    assert inspect.show(store, kept.id)["position"]["state"] == "closed"
    with pytest.raises(PositionNotFound, match="no trade ledger row"):
        inspect.show(store, "zzzzzzzzzzzz")


# --- settings ---


def test_the_retention_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().engine.closed_retention_s == RETENTION
    assert load_settings().exchange.paper_history_s == 7 * DAY_S
    monkeypatch.setenv("SCALPER_ENGINE__CLOSED_RETENTION_S", "3600")
    where = r"engine.closed_retention_s \(env SCALPER_ENGINE__CLOSED_RETENTION_S\): must be 0"
    with pytest.raises(ConfigError, match=where):
        load_settings()
    monkeypatch.setenv("SCALPER_ENGINE__CLOSED_RETENTION_S", "0")
    assert load_settings().engine.closed_retention_s == 0
    monkeypatch.setenv("SCALPER_ENGINE__CLOSED_RETENTION_S", str(30 * DAY_S))
    monkeypatch.setenv("SCALPER_ENGINE__LEDGER_RETENTION_DAYS", "10")
    with pytest.raises(ConfigError, match=r"ledger_retention_days must cover engine\.closed_retention_s"):
        load_settings()
    monkeypatch.setenv("SCALPER_EXCHANGE__PAPER_HISTORY_S", "60")
    with pytest.raises(ConfigError, match=r"exchange.paper_history_s"):
        load_settings()


def test_no_retention_can_make_a_removed_position_look_lost_to_the_reconciler() -> None:
    # The reconciler restores a position with no record from an entry order of the last
    # LOST_RECORD_MAX_AGE_S; a position is removed at the earliest MIN_RETENTION_S after it closed.
    assert MIN_RETENTION_S > 2 * LOST_RECORD_MAX_AGE_S


def test_a_passing_redis_refusal_propagates_and_a_bad_key_is_logged_in_words(
    real_redis: RealRedis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (clean-clone CI, test_redis_outages): a pass during a BUSY script logged redis-py's own
    text ("...of pipeline caused error: BUSY Redis is busy running a script"). A passing refusal now
    propagates, so the engine waits it out with its one line in words; a key of the wrong type is still
    logged once and the pass skipped."""
    sweep = retention(real_redis.client)
    busy = redis.ResponseError("Command # 1 (SCARD k) of pipeline caused error: BUSY Redis is busy running a "
                               "script")  # fmt: skip
    monkeypatch.setattr(sweep, "_sweep", lambda now: (_ for _ in ()).throw(busy))
    with pytest.raises(redis.ResponseError):
        sweep.run_once(1e9)
    wrong = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    monkeypatch.setattr(sweep, "_sweep", lambda now: (_ for _ in ()).throw(wrong))
    assert sweep.run_once(2e9) is None
    assert "retention pass skipped: WRONGTYPE" in caplog.text

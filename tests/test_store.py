"""PositionStore against a real redis-server: atomic transitions, guarded marks, indexes, readable keys."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

import fakeredis
import pytest
import redis
from redis.crc import key_slot
from transitions import MachineError

from statemachines import lua
from statemachines.keys import Keys
from statemachines.lifecycle import STATES
from statemachines.machine import PositionMachine, StaleTransition
from statemachines.position import Position, new_position_id
from statemachines.store import LOG_FIELDS, PositionExists, PositionNotFound, PositionStore

if TYPE_CHECKING:
    from tests.conftest import LocalRedis, RealRedis

SYMBOL = "BTC-USDT-SWAP"


def new_pos(symbol: str = SYMBOL, side: str = "long") -> Position:
    return Position(id=new_position_id(), symbol=symbol, side=side, leverage=5, entry_size=Decimal("3"))


@pytest.fixture(params=[False, True], ids=["bytes", "decoded"])
def store(request: pytest.FixtureRequest, real_redis: RealRedis) -> Iterator[PositionStore]:
    """The store on a clean real Redis, once with a bytes client and once with decode_responses=True."""
    client = redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=request.param)
    try:
        yield PositionStore(client, prefix="t")
    finally:
        client.close()


def opened(store: PositionStore, machine: PositionMachine, symbol: str = SYMBOL) -> Position:
    pos = new_pos(symbol)
    store.create(pos)
    fill = {"entry_price": Decimal("100.5"), "size": Decimal("3"), "opened_at": 1.0}
    machine.fire(pos, "entry_filled", reason="filled", price=100.5, fields=fill)
    return pos


def edges(store: PositionStore, pid: str) -> list[tuple[str, str, str]]:
    return [(e["from"], e["to"], e["trigger"]) for e in store.log(pid)]


# --- key schema and encoding (no server needed) ---


def test_keys_share_the_symbol_slot() -> None:
    k = Keys("scalper")
    assert k.pos("ETH-USDT-SWAP", "abc") == "scalper:{ETH-USDT-SWAP}:pos:abc"
    assert k.log("ETH-USDT-SWAP", "abc") == "scalper:{ETH-USDT-SWAP}:pos:abc:log"
    assert k.state("ETH-USDT-SWAP", "open") == "scalper:{ETH-USDT-SWAP}:state:open"
    assert k.positions("ETH-USDT-SWAP") == "scalper:{ETH-USDT-SWAP}:positions"
    assert (k.symbols(), k.pos_symbol()) == ("scalper:symbols", "scalper:pos-symbol")
    per_symbol = [k.pos("X", "i"), k.log("X", "i"), k.positions("X"), *(k.state("X", s) for s in STATES)]
    assert len({key_slot(key.encode()) for key in per_symbol}) == 1


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a b"])
def test_keys_reject_names_that_break_the_hash_tag(bad: str) -> None:
    with pytest.raises(ValueError):
        Keys(bad)
    with pytest.raises(ValueError):
        Keys().pos(bad, "id")
    with pytest.raises(ValueError):
        Keys().pos(SYMBOL, bad + ":x")


def test_position_hash_is_plain_strings(fake_redis: fakeredis.FakeRedis) -> None:
    pos = new_pos()
    pos.set_entry(Decimal("100.5"), Decimal("3"))
    pos.time_in["opening"] = 1.25
    fake_redis.hset("h", mapping=pos.to_hash())
    raw = fake_redis.hgetall("h")
    assert all(v.decode().isprintable() for v in raw.values())
    assert raw[b"entry_price"] == b"100.5" and raw[b"side"] == b"long" and raw[b"t_opening"] == b"1.25"
    back = Position.from_hash(raw)
    assert back.to_hash() == pos.to_hash()


# --- the store on a real redis-server ---


@pytest.mark.redis
def test_full_lifecycle_is_persisted_step_by_step(store: PositionStore) -> None:
    machine = PositionMachine(store=store)
    pos = opened(store, machine)
    machine.fire(pos, "harvest", reason="harvest 50%")
    machine.fire(pos, "harvest_filled", fields={"size": Decimal("1.5"), "harvests_done": 1})
    machine.fire(pos, "close", reason="trailing_stop", price=101.0)
    machine.fire(pos, "retry_close", reason="order gone", fields={"close_attempt": 1})
    machine.fire(pos, "close_filled", fields={"exit_reason": "trailing_stop", "realized_pnl": Decimal("1.2")})

    assert (pos.state, pos.version) == ("closed", 7)
    stored = store.load(pos.id)
    assert (stored.state, stored.version, stored.size) == ("closed", 7, Decimal("1.5"))
    assert stored.harvests_done == 1
    assert stored.exit_reason == "trailing_stop" and stored.realized_pnl == Decimal("1.2")
    assert set(stored.time_in) == {"opening", "open", "harvesting", "trailing", "closing"}
    assert edges(store, pos.id) == [
        ("", "opening", "create"),
        ("opening", "open", "entry_filled"),
        ("open", "harvesting", "harvest"),
        ("harvesting", "trailing", "harvest_filled"),
        ("trailing", "closing", "close"),
        ("closing", "closing", "retry_close"),
        ("closing", "closed", "close_filled"),
    ]
    log = store.log(pos.id)
    assert [e["version"] for e in log] == [str(v) for v in range(1, 8)]
    assert all(tuple(e) == LOG_FIELDS for e in log)
    assert log[4]["reason"] == "trailing_stop" and log[4]["price"] == "101.0"
    assert store.check_consistency(pos) == []
    assert store.ids(SYMBOL, "closed") == [pos.id]
    assert all(store.ids(SYMBOL, s) == [] for s in STATES if s != "closed")
    assert store.load_live() == []


@pytest.mark.redis
def test_create_refuses_an_existing_id(store: PositionStore) -> None:
    pos = new_pos()
    store.create(pos)
    assert pos.version == 1 and pos.created_at > 0 and pos.state_since == pos.created_at
    with pytest.raises(PositionExists):
        store.create(new_pos_with_id(pos.id, SYMBOL))
    with pytest.raises(PositionExists, match=SYMBOL):  # same id under another symbol: not re-pointed
        store.create(new_pos_with_id(pos.id, "ETH-USDT-SWAP"))
    assert store.load(pos.id).symbol == SYMBOL
    assert len(store.log(pos.id)) == 1 and store.check_consistency(pos.id) == []
    assert store.ids("ETH-USDT-SWAP") == []


def new_pos_with_id(pid: str, symbol: str) -> Position:
    return Position(id=pid, symbol=symbol, side="short")


@pytest.mark.redis
def test_create_only_in_opening(store: PositionStore) -> None:
    pos = new_pos()
    pos.state = "open"
    with pytest.raises(ValueError, match="opening"):
        store.create(pos)


@pytest.mark.redis
def test_loaded_position_resumes_in_its_stored_state(store: PositionStore) -> None:
    first = PositionMachine(store=store)
    pos = opened(store, first)
    first.fire(pos, "arm_trailing", fields={"trail_stop": 99.0})

    # A new process: fresh machine, position from Redis only.
    machine = PositionMachine(store=store)
    loaded = store.load(pos.id)
    assert (loaded.state, loaded.version, loaded.trail_stop) == ("trailing", 3, 99.0)
    with pytest.raises(MachineError):
        machine.fire(loaded, "harvest")  # TP and harvest no longer apply once trailing
    assert (loaded.state, loaded.version) == ("trailing", 3)
    machine.fire(loaded, "close", reason="smart_exit")
    assert (loaded.state, loaded.version) == ("closing", 4)
    assert store.load(pos.id).state == "closing"
    assert store.check_consistency(pos.id) == []


@pytest.mark.redis
def test_stale_copy_cannot_transition(store: PositionStore) -> None:
    pos = opened(store, PositionMachine(store=store))
    a_machine, b_machine = PositionMachine(store=store), PositionMachine(store=store)
    a = store.load(pos.id)
    b = store.load(pos.id)

    a_machine.fire(a, "close", reason="stop_loss", price=99.0)
    for trigger in ("close", "arm_trailing"):
        with pytest.raises(StaleTransition, match=r"stored state 'closing' version 3"):
            b_machine.fire(b, trigger)
        assert (b.state, b.version, b.trail_stop) == ("open", 2, 0.0)  # memory did not run ahead
    assert [e for e in edges(store, pos.id) if e[2] == "close"] == [("open", "closing", "close")]
    assert store.load(pos.id).version == 3 and store.check_consistency(pos.id) == []


@pytest.mark.redis
def test_transition_of_a_missing_position_is_stale(store: PositionStore) -> None:
    machine = PositionMachine(store=store)
    ghost = new_pos()
    ghost.version = 1
    with pytest.raises(StaleTransition, match="not stored"):
        machine.fire(ghost, "entry_filled")


@pytest.mark.redis
@pytest.mark.parametrize("field", ["state", "version", "symbol", "entry_px", "close", "to_hash"])
def test_transition_writes_only_position_fields(store: PositionStore, field: str) -> None:
    pos = new_pos()
    store.create(pos)
    # "close"/"to_hash" are a trigger and a method, not position fields.
    with pytest.raises(ValueError, match="may not write"):
        store.apply_transition(
            pos, source="opening", dest="open", trigger="entry_filled", reason="", price=0.0, ts=1.0,
            fields={field: "x"},
        )  # fmt: skip
    assert store.check_consistency(pos.id) == [] and store.load(pos.id).version == 1


@pytest.mark.redis
def test_update_marks_is_guarded_by_state_and_version(store: PositionStore) -> None:
    machine = PositionMachine(store=store)
    pos = opened(store, machine)
    stale = store.load(pos.id)

    assert store.update_marks(pos, {"peak_pnl_pct": 1.75, "liq_price": "80.5"})
    assert (pos.peak_pnl_pct, pos.liq_price) == (1.75, 80.5)  # "80.5" parsed as the float it is
    stored = store.load(pos.id)
    assert (stored.peak_pnl_pct, stored.liq_price, stored.version) == (1.75, 80.5, 2)
    assert len(store.log(pos.id)) == 2  # no log entry, no version bump

    machine.fire(pos, "arm_trailing")
    assert not store.update_marks(stale, {"peak_pnl_pct": 0.5})  # it still believes open v2
    assert store.load(pos.id).peak_pnl_pct == 1.75 and stale.peak_pnl_pct == 0.0
    for field in ("state", "version", "id", "symbol", "side", "entry_px", "sign", "time_in", "nonsense"):
        with pytest.raises(ValueError, match=field):
            store.update_marks(pos, {field: "x"})
    assert store.check_consistency(pos.id) == []


@pytest.mark.redis
def test_request_close_flags_live_positions_only(store: PositionStore, real_redis: RealRedis) -> None:
    machine = PositionMachine(store=store)
    pos = opened(store, machine)
    assert store.request_close(pos.id, "operator")
    assert store.load(pos.id).close_request == "operator"
    assert store.load(pos.id).version == 2

    machine.fire(pos, "close")
    machine.fire(pos, "close_filled")
    before = real_redis.client.hgetall(store.keys.pos(SYMBOL, pos.id))
    assert not store.request_close(pos.id, "again")
    assert real_redis.client.hgetall(store.keys.pos(SYMBOL, pos.id)) == before
    assert not store.request_close("nosuchid", "x")

    # An id whose creation died after the global entry: must not be resurrected as a half hash.
    real_redis.client.hset(store.keys.pos_symbol(), "orphan", SYMBOL)
    assert not store.request_close("orphan", "x")
    assert not real_redis.client.exists(store.keys.pos(SYMBOL, "orphan"))
    with pytest.raises(PositionNotFound):
        store.load("orphan")


@pytest.mark.redis
def test_index_sets_move_with_transitions(store: PositionStore) -> None:
    machine = PositionMachine(store=store)
    a = opened(store, machine)
    b = opened(store, machine)
    c = new_pos("ETH-USDT-SWAP")
    store.create(c)
    machine.fire(b, "close")

    assert store.ids(SYMBOL, "open") == [a.id]
    assert store.ids(SYMBOL, "closing") == [b.id]
    assert store.ids(SYMBOL) == sorted([a.id, b.id])
    assert store.ids("ETH-USDT-SWAP", "opening") == [c.id]
    assert [p.id for p in store.load_symbol(SYMBOL, ["open", "closing"])] == sorted([a.id, b.id])
    assert [p.id for p in store.load_symbol(SYMBOL, ["closed"])] == []
    assert sorted(p.id for p in store.load_live()) == sorted([a.id, b.id, c.id])
    assert store.symbols() == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]

    machine.fire(b, "close_filled")
    machine.fire(c, "external_close", reason="liquidated")
    assert store.ids(SYMBOL, "closing") == [] and store.ids(SYMBOL, "closed") == [b.id]
    assert [p.id for p in store.load_live()] == [a.id]
    assert all(store.check_consistency(p) == [] for p in (a, b, c))


@pytest.mark.redis
def test_check_consistency_reports_tampering(store: PositionStore, real_redis: RealRedis) -> None:
    pos = opened(store, PositionMachine(store=store))
    r, k = real_redis.client, store.keys
    r.sadd(k.state(SYMBOL, "trailing"), pos.id)
    assert any("state sets" in p for p in store.check_consistency(pos.id))
    r.srem(k.state(SYMBOL, "trailing"), pos.id)
    r.hset(k.pos(SYMBOL, pos.id), "version", "5")
    assert any("log entries" in p for p in store.check_consistency(pos.id))
    r.hset(k.pos(SYMBOL, pos.id), "version", "3")
    r.xadd(k.log(SYMBOL, pos.id), {"from": "open", "to": "open", "trigger": "harvest", "version": "3"})
    assert any("not a legal transition" in p for p in store.check_consistency(pos.id))
    assert store.check_consistency("nosuchid") != []


@pytest.mark.redis
def test_hash_and_log_read_as_plain_text_in_redis_cli(
    store: PositionStore, real_redis: RealRedis, redis_cli: str
) -> None:
    machine = PositionMachine(store=store)
    pos = opened(store, machine)
    machine.fire(pos, "close", reason="take_profit", price=102.25)

    def cli(*args: str) -> str:
        out = subprocess.run(
            [redis_cli, "-s", real_redis.socket_path, *args], capture_output=True, check=True, timeout=10
        ).stdout
        text = out.decode("utf-8")  # raises on binary
        assert "\\x" not in text and all(ch.isprintable() or ch == "\n" for ch in text)
        return text

    hash_lines = cli("HGETALL", store.keys.pos(SYMBOL, pos.id)).splitlines()
    fields = dict(zip(hash_lines[::2], hash_lines[1::2], strict=True))
    assert fields["state"] == "closing" and fields["symbol"] == SYMBOL and fields["side"] == "long"
    assert fields["entry_price"] == "100.5" and fields["version"] == "3"

    log = cli("XRANGE", store.keys.log(SYMBOL, pos.id), "-", "+").splitlines()
    for expected in ("from", "to", "trigger", "create", "entry_filled", "open", "close", "closing"):
        assert expected in log
    assert "take_profit" in log and "102.25" in log
    assert cli("SMEMBERS", store.keys.state(SYMBOL, "closing")).split() == [pos.id]
    assert cli("HGET", store.keys.pos_symbol(), pos.id).strip() == SYMBOL


@pytest.mark.redis
@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
def test_positions_survive_a_server_restart(local_redis: LocalRedis, how: str) -> None:
    """Append-only persistence: after a clean shutdown or a SIGKILL of redis-server, the same store object
    finds the position where it was and moves it on (its scripts re-sent if the server lost them)."""
    local_redis.start()
    client = local_redis.client(decode_responses=True)
    try:
        store = PositionStore(client, prefix="t")
        pos = opened(store, PositionMachine(store=store))
        store.update_marks(pos, {"peak_pnl_pct": 2.5})
        local_redis.stop() if how == "shutdown" else local_redis.kill()
        client.connection_pool.disconnect()

        local_redis.start()
        # Redis 6 replays SCRIPT LOAD from the AOF, Redis 7 does not; flush to be in the worse case.
        client.script_flush()
        assert client.script_exists(hashlib.sha1(lua.TRANSITION.encode()).hexdigest()) == [False]
        machine = PositionMachine(store=store)
        loaded = store.load(pos.id)
        assert (loaded.state, loaded.version, loaded.peak_pnl_pct) == ("open", 2, 2.5)
        machine.fire(loaded, "close", reason="max_hold")
        assert store.load(pos.id).version == 3 and store.check_consistency(pos.id) == []
    finally:
        client.close()

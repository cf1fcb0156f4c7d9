"""End to end: the real processes (feed, account/paper venue, engine, worker) as separate OS processes
around a real redis-server, over the shipped real capture; then SIGKILLs at the moments that matter."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachines.lifecycle import is_legal
from tests.conftest import RealRedis
from tests.system import System

SYMBOL = "BTC-USDT-SWAP"
ONE_SYMBOL = json.dumps({SYMBOL: {}})


@pytest.fixture
def system(real_redis: RealRedis, tmp_path: Path) -> Iterator[System]:
    sys_ = System(real_redis.socket_path, tmp_path, symbols=ONE_SYMBOL, engine__reconcile_every_s="1")
    yield sys_
    sys_.stop_all()


def _closed(system: System, n: int) -> list | None:
    done = [p for p in system.positions() if p.state == "closed" and p.exit_reason]
    return done if len(done) >= n else None


def test_paper_trading_end_to_end_over_a_real_capture(system: System, redis_cli: str) -> None:
    system.start("account", "account")
    system.start("engine", "engine", "--clock", "data")
    system.start("worker", "worker")
    system.start("feed", "feed", "--replay", "sample", "--speed", "3000")
    closed = system.wait("three positions through their lifecycle", lambda: _closed(system, 3), timeout=90)

    for pos in closed:
        log = system.store.log(pos.id)
        states = [e["to"] for e in log]
        assert states[0] == "opening" and states[-1] == "closed"
        assert "open" in states and "closing" in states, states
        for entry in log[1:]:
            assert is_legal(entry["from"], entry["to"], entry["trigger"]), entry
        assert system.store.check_consistency(pos.id) == []
        assert pos.fees < 0  # charged by the paper venue, taken from its fills
    # The venue's own record: an entry fill and a reduce-only close fill per closed position.
    fill_ids = {f.get("cl_ord_id", "") for f in system.fills()}
    for pos in closed:
        assert f"{pos.id}o1" in fill_ids and any(i.startswith(f"{pos.id}c") for i in fill_ids)

    # What the CLI shows is what Redis holds, and the bundled redis-cli reads the same plain text.
    listed = {r["id"]: r for r in system.cli_json("positions", "--all")}
    pos = closed[0]
    assert listed[pos.id]["state"] == "closed" and listed[pos.id]["exit_reason"] == pos.exit_reason
    shown = system.cli_json("show", pos.id)
    assert [e["to"] for e in shown["log"]] == [e["to"] for e in system.store.log(pos.id)]
    socket = system.env["REDIS_URL"].removeprefix("unix://")
    hget = subprocess.run([redis_cli, "-s", socket, "HGET", shown["keys"]["hash"], "state"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert hget.strip() == "closed"
    text = system.cli("show", pos.id).stdout
    assert "close_filled" in text and pos.id in text


def _one(system: System, state: str) -> object:
    live = [p for p in system.positions() if p.state == state]
    return live[0] if live else None


def _manual_system(real_redis: RealRedis, tmp_path: Path) -> System:
    sys_ = System(real_redis.socket_path, tmp_path, symbols=ONE_SYMBOL, engine__entries="manual",
                  engine__reconcile_every_s="1", exits__close_timeout_s="2", exits__max_hold_s="0",
                  exits__take_profit_pct="0", exits__trailing_activation_pct="0", exits__harvest_pct="0",
                  exits__drawdown_activation_pct="0", smart_exit__enabled="false",
                  exits__stop_loss_min_pct="10", exits__stop_loss_max_pct="10",
                  risk__leverage="2")  # fmt: skip
    return sys_


@pytest.fixture
def manual(real_redis: RealRedis, tmp_path: Path) -> Iterator[System]:
    """Only manual entries and closes, exits switched off: the test decides every moment."""
    sys_ = _manual_system(real_redis, tmp_path)
    sys_.start("account", "account")
    sys_.start("engine", "engine", "--clock", "data")
    sys_.start("worker", "worker")
    sys_.start("feed", "feed", "--replay", "sample", "--speed", "60")
    yield sys_
    sys_.stop_all()


def _open_one(system: System):  # type: ignore[no-untyped-def]
    system.wait("ticks", lambda: system.client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5)
    assert system.cli("open", SYMBOL, "long").returncode == 0
    return system.wait("an open position", lambda: _one(system, "open"))


def _close_orders(system: System, pid: str) -> list[dict[str, str]]:
    return [f for f in system.fills() if f.get("cl_ord_id", "").startswith(f"{pid}c")]


def _exchange_flat(system: System) -> bool:
    return not any(k for k in system.client.keys("scalper:paper:{main}:pos:*")
                   if system.client.hget(k, "pos") not in (None, b"0"))  # fmt: skip


def test_engine_sigkilled_while_open_continues_and_closes_exactly_once(manual: System) -> None:
    pos = _open_one(manual)
    version = manual.position(pos.id).version
    manual.kill("engine")
    manual.start("engine", "engine", "--clock", "data")
    # Still open after the restart, nothing rewritten: the stored state is the truth.
    manual.wait("the new engine to own the shard", lambda: manual.client.get("scalper:lease:all"))
    assert manual.position(pos.id).state == "open" and manual.position(pos.id).version == version
    assert manual.cli("close", pos.id).returncode == 0
    manual.wait("closed", lambda: manual.position(pos.id).state == "closed")
    assert len(_close_orders(manual, pos.id)) == 1
    assert manual.store.check_consistency(pos.id) == []
    manual.wait("the exchange flat", lambda: _exchange_flat(manual))


def test_engine_sigkilled_while_closing_completes_the_close_once(manual: System) -> None:
    pos = _open_one(manual)
    manual.kill("worker")  # nobody executes the close yet: the position waits in closing
    assert manual.cli("close", pos.id, "--wait", "0").returncode == 0
    manual.wait("closing", lambda: manual.position(pos.id).state == "closing")
    manual.kill("engine")
    manual.start("engine", "engine", "--clock", "data")
    manual.start("worker", "worker")
    manual.wait("closed", lambda: manual.position(pos.id).state == "closed", timeout=40)
    assert len(_close_orders(manual, pos.id)) == 1
    assert manual.store.check_consistency(pos.id) == []
    manual.wait("the exchange flat", lambda: _exchange_flat(manual))


def test_worker_sigkilled_in_the_middle_of_a_close_job(manual: System) -> None:
    pos = _open_one(manual)
    # The venue will sit on the next close order for 3 s: the worker is inside the job, waiting.
    manual.client.rpush("scalper:paper:faults",
                        json.dumps({"kind": "delay", "op": "close_position", "seconds": 3}))  # fmt: skip
    assert manual.cli("close", pos.id, "--wait", "0").returncode == 0
    manual.wait("the close job to start", lambda: manual.client.llen("rq:queue:orders") == 0
                and manual.position(pos.id).state == "closing", timeout=10)  # fmt: skip
    manual.wait("the worker to send the close", lambda: manual.client.xlen("scalper:paper:requests") > 0
                or _close_orders(manual, pos.id), timeout=10)  # fmt: skip
    manual.kill("worker")
    manual.start("worker", "worker")
    manual.wait("closed", lambda: manual.position(pos.id).state == "closed", timeout=40)
    assert len(_close_orders(manual, pos.id)) == 1  # executed once, although its worker died
    assert manual.store.check_consistency(pos.id) == []
    manual.wait("the exchange flat", lambda: _exchange_flat(manual))


def test_the_cli_prints_what_became_of_an_open_and_of_a_close(manual: System) -> None:
    manual.wait("ticks", lambda: manual.client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5)
    opened = manual.cli("open", SYMBOL, "long")
    assert opened.returncode == 0 and opened.stdout.startswith("opened: position "), opened
    pid = opened.stdout.split()[2]
    assert manual.position(pid).state == "open"  # the command's id is the position's
    closed = manual.cli("close", pid)
    assert closed.returncode == 0, closed
    assert closed.stdout.startswith(f"closed: position {pid} (manual), net PnL "), closed.stdout


def test_the_cli_prints_the_gate_that_refused_an_open(real_redis: RealRedis, tmp_path: Path) -> None:
    """A 10 % stop loss at leverage 5: liquidation is ~19.6 % away, inside twice the stop distance."""
    sys_ = System(real_redis.socket_path, tmp_path, symbols=ONE_SYMBOL, engine__entries="manual",
                  exits__stop_loss_min_pct="10", exits__stop_loss_max_pct="10",
                  risk__leverage="5")  # fmt: skip
    try:
        for name in ("account", "engine"):
            sys_.start(name, name, *(["--clock", "data"] if name == "engine" else []))
        sys_.start("feed", "feed", "--replay", "sample", "--speed", "60")
        sys_.wait("ticks", lambda: sys_.client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5)
        refused = sys_.cli("open", SYMBOL, "long")
        assert refused.returncode == 1 and sys_.positions() == []
        assert "refused by the risk gate liq_too_close" in refused.stderr, refused
    finally:
        sys_.stop_all()

"""Sharding beyond one Redis (issue 14): two deployments, each with its own redis-server and its own feed,
account, engine and worker, on one OKX account (the local fake), split by symbol (README, Deployment). Each
trades its own symbol; neither's reconciler adopts, restores or cancels anything of the other's, though
both read the same account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scalper.embedded import LocalRedis
from tests.fakeokx.thread import FakeThread
from tests.okxkit import fake_okx, okx_system_settings
from tests.system import System

pytestmark = pytest.mark.redis

SHARDS = {"a": "BTC-USDT-SWAP", "b": "ETH-USDT-SWAP"}
PRICES = {"BTC-USDT-SWAP": "50000", "ETH-USDT-SWAP": "3000"}


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    with fake_okx(PRICES) as fake:
        yield fake


def shard(redis_: LocalRedis, workdir: Path, symbol: str, okx: FakeThread) -> System:
    return System(redis_.socket_path, workdir, **okx_system_settings(okx, [symbol], risk__leverage="3"))


def test_two_shards_on_two_redis_servers_trade_their_own_symbols_and_leave_each_other_alone(
    tmp_path: Path, okx: FakeThread
) -> None:
    servers = {name: LocalRedis(tmp_path / f"redis-{name}") for name in SHARDS}
    systems: dict[str, System] = {}
    try:
        for name, symbol in SHARDS.items():
            servers[name].start()
            (tmp_path / name).mkdir()
            systems[name] = shard(servers[name], tmp_path / name, symbol, okx)
            for proc in ("account", "engine", "worker", "feed"):
                systems[name].start(proc, proc)

        def tick() -> None:
            for inst, px in PRICES.items():
                okx.price(px, inst)

        opened = {}
        for name, symbol in SHARDS.items():
            sys_ = systems[name]
            ticks = f"scalper:{{{symbol}}}:ticks"
            sys_.wait(f"{symbol} ticks", lambda s=sys_, t=ticks: tick() or s.client.xlen(t))
            assert sys_.cli("open", symbol, "long").returncode == 0, sys_.logs()
            opened[name] = sys_.wait(f"{symbol} open", lambda s=sys_: tick() or next(
                (p for p in s.positions() if p.state == "open"), None))  # fmt: skip
        # Both engines read the same account for a few reconcile passes: each sees the other's position and
        # stop at OKX, and must leave them alone.
        for sys_ in systems.values():
            passes = sys_.client.hget(sys_.store.keys.exchange(), "settled_at")
            sys_.wait("three more reconcile passes", lambda s=sys_, p=passes: tick() or float(
                s.client.hget(s.store.keys.exchange(), "settled_at") or 0) > float(p or 0) + 3, timeout=30)
        for name, symbol in SHARDS.items():
            sys_ = systems[name]
            held = sys_.positions()
            assert [(p.id, p.symbol, p.state) for p in held] == [(opened[name].id, symbol, "open")], held
            assert sys_.store.symbols() == [symbol]
        at_okx = {k[0]: p.pos for k, p in okx.fake.engine.positions.items() if p.pos}
        assert set(at_okx) == set(SHARDS.values()), at_okx
        live_stops = {a.algo_cl_ord_id for a in okx.fake.engine.algos.values() if a.state == "live"}
        assert live_stops == {f"{p.id}s1" for p in opened.values()}, live_stops
        # Each closes its own; the other's stays open.
        a, b = systems["a"], systems["b"]
        assert a.cli("close", opened["a"].id).returncode == 0, a.logs()
        a.wait("a closed", lambda: tick() or a.position(opened["a"].id).state == "closed")
        assert b.position(opened["b"].id).state == "open"
        assert {k[0] for k, p in okx.fake.engine.positions.items() if p.pos} == {SHARDS["b"]}
    finally:
        for sys_ in systems.values():
            sys_.stop_all()
        for server in servers.values():
            server.close()

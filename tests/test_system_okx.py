"""End to end against the local fake OKX (real v5 protocol, signatures verified): the real processes
— the live feed on its public WebSocket, the account process on its private one, the engine, a worker
placing orders over REST — take a position through opening → open → trailing → closing → closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachines.lifecycle import is_legal
from tests.conftest import RealRedis
from tests.fakeokx.thread import FakeThread
from tests.okxkit import fake_okx, okx_system_settings
from tests.system import System

BTC = "BTC-USDT-SWAP"


@pytest.fixture
def okx() -> Iterator[FakeThread]:
    with fake_okx() as fake:
        yield fake


@pytest.fixture
def system(real_redis: RealRedis, tmp_path: Path, okx: FakeThread) -> Iterator[System]:
    settings = okx_system_settings(okx, risk__leverage="3", exits__stop_loss_min_pct="3",
                                   exits__stop_loss_max_pct="3", exits__trailing_activation_pct="0.3",
                                   exits__trailing_distance_pct="0.2")  # fmt: skip
    sys_ = System(real_redis.socket_path, tmp_path, **settings)
    yield sys_
    sys_.stop_all()


def test_okx_end_to_end_through_the_lifecycle(system: System, okx: FakeThread) -> None:
    system.start("account", "account")
    system.start("engine", "engine")
    system.start("worker", "worker")
    system.start("feed", "feed")
    ticks = f"scalper:{{{BTC}}}:ticks"
    px = [50000]

    def tick() -> None:  # the market keeps moving a little, as a live one does
        okx.price(str(px[0]))

    system.wait("ticks from the public WebSocket", lambda: tick() or system.client.xlen(ticks) > 3)
    assert system.cli("open", BTC, "long").returncode == 0
    pos = system.wait("an open position", lambda: tick() or next(
        (p for p in system.positions() if p.state == "open"), None))  # fmt: skip
    assert pos.entry_price > 0 and pos.size > 0
    # The entry went to OKX over REST with our deterministic client order id, and a protective stop too.
    entries = [r.body for r in okx.fake.calls("POST", "/api/v5/trade/order")]
    assert [b["clOrdId"] for b in entries] == [f"{pos.id}o1"]
    system.wait("the protective stop at OKX",
                lambda: okx.fake.count("POST", "/api/v5/trade/order-algo") >= 1)  # fmt: skip

    for up in (50100, 50200, 50300, 50400):  # +0.8%: trailing arms at +0.3%, follows 0.2% behind
        px[0] = up
        tick()
    system.wait("trailing", lambda: tick() or system.position(pos.id).state == "trailing")
    px[0] = 50250  # back through the trailing stop (~50299)
    system.wait("closed", lambda: tick() or system.position(pos.id).state == "closed", timeout=40)

    got = system.position(pos.id)
    log = system.store.log(pos.id)
    assert [e["to"] for e in log][:5] == ["opening", "open", "trailing", "closing", "closed"]
    assert all(is_legal(e["from"], e["to"], e["trigger"]) for e in log[1:])
    assert got.exit_reason == "trailing_stop" and got.realized_pnl > 0
    assert system.store.check_consistency(pos.id) == []
    # The full close went to close-position (OKX sizes it from what it holds), once, under our client id:
    # nothing but the entry went through place-order.
    assert [r.body["clOrdId"] for r in okx.fake.calls("POST", "/api/v5/trade/order")] == [f"{pos.id}o1"]
    closes = [r.body for r in okx.fake.calls("POST", "/api/v5/trade/close-position")]
    assert closes == [{"instId": BTC, "mgnMode": "isolated", "clOrdId": f"{pos.id}c1", "autoCxl": True}]
    close = okx.fake.engine.find_order(cl_ord_id=f"{pos.id}c1")
    assert close is not None and close.state == "filled" and close.reduce_only
    assert close.acc_fill_sz == pos.size and close.pnl > 0
    assert not [p for p in okx.fake.engine.positions.values() if p.pos != 0]  # flat at the exchange
    system.wait("the protective stop cancelled",
                lambda: okx.fake.count("POST", "/api/v5/trade/cancel-algos") >= 1)  # fmt: skip


@pytest.mark.parametrize("exchange_ahead_s", [-45.0, 40.0, -70.0])
def test_a_host_clock_off_from_okx_changes_no_exit(system: System, okx: FakeThread,
                                                  exchange_ahead_s: float) -> None:  # fmt: skip
    """Issue 10, defect 3, through the real processes: OKX's clock (every time the fake gives, /public/time
    included) is off from this host's. Before, a host 6-59 s ahead held every bot-side exit on stale_price,
    and 61 s or more ahead emergency-closed every position. The engine measures the offset at start."""
    okx.fake.clock_offset = exchange_ahead_s
    for name in ("account", "engine", "worker", "feed"):
        system.start(name, name)
    ticks = f"scalper:{{{BTC}}}:ticks"
    px = [50000]

    def tick() -> None:
        okx.price(str(px[0]))

    system.wait("ticks", lambda: tick() or system.client.xlen(ticks) > 3)
    opened = system.cli("open", BTC, "long")
    assert opened.returncode == 0, opened
    pos = system.wait("an open position", lambda: tick() or next(
        (p for p in system.positions() if p.state == "open"), None))  # fmt: skip
    for _ in range(20):  # a few seconds of market: no stale-price emergency
        tick()
        assert system.position(pos.id).state == "open"
    px[0] = 48000  # through the 3 % stop loss
    system.wait("closed", lambda: tick() or system.position(pos.id).state == "closed", timeout=40)
    assert system.position(pos.id).exit_reason == "stop_loss"

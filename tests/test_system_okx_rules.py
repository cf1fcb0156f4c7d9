"""The bot's real processes against the fake OKX where OKX's rules matter (issue 10, "the fake OKX hides what
OKX would do"): a position's margin mode after a restart with other settings; the protective stop after a
harvest; positions snapshots that arrive after the fills they predate. Each test checks the bot's books
against the fake's (PnL and fees of every fill, per position)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from statemachines.lifecycle import is_legal
from statemachines.position import Position
from tests.chaos_okx import Venue, check_pnl, check_positions_match
from tests.conftest import RealRedis
from tests.fakeokx.engine import FAlgo, FOrder
from tests.fakeokx.thread import FakeThread
from tests.system import System

pytestmark = pytest.mark.redis

KEY, SECRET, PASSPHRASE = "rulesKey5e2a", "rulesSecret7c3d", "rulesPass1b9f"
BTC = "BTC-USDT-SWAP"
ALGO, CLOSE = "/api/v5/trade/order-algo", "/api/v5/trade/close-position"
PROCS = ("account", "engine", "worker", "feed")


def settings(okx: FakeThread, **overrides: str) -> dict[str, str]:
    port = okx.fake.port
    return {
        "symbols": json.dumps({BTC: {}}), "engine__entries": "manual", "engine__reconcile_every_s": "1",
        "exchange__venue": "okx", "exchange__api_key": KEY, "exchange__api_secret": SECRET,
        "exchange__passphrase": PASSPHRASE, "exchange__demo": "true",
        "exchange__rest_url": f"http://127.0.0.1:{port}", "exchange__ws_url": f"ws://127.0.0.1:{port}/ws/v5",
        "risk__leverage": "3", "risk__protective_stop_pct": "2", "exits__take_profit_pct": "0",
        "exits__harvest_pct": "0", "exits__max_hold_s": "0", "exits__drawdown_activation_pct": "0",
        "smart_exit__enabled": "false", "exits__stop_loss_min_pct": "3", "exits__stop_loss_max_pct": "3",
        "exits__trailing_activation_pct": "5", "exits__close_timeout_s": "2", **overrides,
    }  # fmt: skip


class Market:
    """The fake's price, re-sent on every poll so the feed keeps ticking (a live market moves)."""

    def __init__(self, okx: FakeThread, px: str = "50000") -> None:
        self.okx, self.px = okx, px

    def __call__(self, px: str | None = None) -> None:
        self.px = px or self.px
        self.okx.price(self.px)

    def until(self, system: System, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        return system.wait(what, lambda: self() or probe(), timeout=timeout)


def venue(okx: FakeThread) -> Venue:
    e = okx.fake.engine
    return okx.sync(lambda: Venue(dict(e.positions), dict(e.orders), dict(e.algos)))


def algo(okx: FakeThread, cl: str) -> FAlgo | None:
    return okx.sync(lambda: okx.fake.engine.find_algo(algo_cl_ord_id=cl))


def stop_orders(okx: FakeThread, cl: str) -> list[FOrder]:
    return okx.sync(lambda: [o for o in okx.fake.engine.orders.values() if o.algo_cl_ord_id == cl])


def held(okx: FakeThread) -> dict[tuple[str, str, str], Decimal]:
    return okx.sync(lambda: {k: p.pos for k, p in okx.fake.engine.positions.items() if p.pos})


def books_agree(system: System, okx: FakeThread) -> None:
    positions = system.positions()
    assert check_positions_match(venue(okx), positions) == []
    assert check_pnl(venue(okx), positions) == []
    for p in positions:
        assert system.store.check_consistency(p.id) == []
        assert all(is_legal(e["from"], e["to"], e["trigger"]) for e in system.store.log(p.id)[1:])


def start_all(system: System) -> None:
    system.workdir.mkdir(parents=True, exist_ok=True)
    for name in PROCS:
        system.start(name, name)


def open_long(system: System, market: Market) -> Position:
    market.until(system, "ticks", lambda: system.client.xlen(f"scalper:{{{BTC}}}:ticks") > 3)
    assert system.cli("open", BTC, "long").returncode == 0
    return market.until(system, "an open position",
                        lambda: next((p for p in system.positions() if p.state == "open"), None))  # fmt: skip


@pytest.fixture
def okx(request: pytest.FixtureRequest) -> Iterator[FakeThread]:
    fake = FakeThread(KEY, SECRET, PASSPHRASE, **getattr(request, "param", {}))
    fake.price("50000")
    yield fake
    fake.close()


@pytest.fixture
def systems() -> Iterator[list[System]]:
    made: list[System] = []
    yield made
    for s in made:
        s.stop_all()


def test_an_isolated_position_gets_its_stop_and_close_after_a_restart_with_td_mode_cross(
    real_redis: RealRedis, tmp_path: Path, okx: FakeThread, systems: list[System]
) -> None:
    isolated = settings(okx, exchange__td_mode="isolated")
    before = System(real_redis.socket_path, tmp_path / "isolated", **isolated)
    systems.append(before)
    market = Market(okx)
    # The stop's placement does not get through (OKX busy) before the bot is stopped: its job waits for
    # its retry, which the restarted bot runs.
    okx.sync(okx.fake.fault, ALGO, method="POST", code="50001", http_status=503, count=1000)
    start_all(before)
    pos = open_long(before, market)
    assert held(okx) == {(BTC, "net", "isolated"): pos.size}
    market.until(before, "the stop's placement refused", lambda: okx.fake.count("POST", ALGO) >= 1)
    before.stop_all()
    okx.sync(okx.fake.faults.clear)
    assert algo(okx, f"{pos.id}s1") is None

    after = System(real_redis.socket_path, tmp_path / "cross", **settings(okx, exchange__td_mode="cross"))
    systems.append(after)
    start_all(after)
    stop = market.until(after, "the protective stop, placed after the restart",
                        lambda: (a := algo(okx, f"{pos.id}s1")) and a.state == "live" and a)  # fmt: skip
    assert stop.td_mode == "isolated" and stop.sz == pos.size  # where the position is: it can close it
    assert after.cli("close", pos.id).returncode == 0
    market.until(after, "closed", lambda: after.position(pos.id).state == "closed")
    assert held(okx) == {}
    closes = [r.body["mgnMode"] for r in okx.fake.calls("POST", CLOSE)]
    assert closes == ["cross", "isolated"]  # the settings' mode found nothing; the position's closed it
    market.until(after, "the stop cancelled", lambda: algo(okx, f"{pos.id}s1").state == "canceled")
    books_agree(after, okx)


@pytest.mark.parametrize("okx", [{"oversize": "resize"}, {"oversize": "cancel"}], indirect=True,
                         ids=["resized", "rest-cancelled"])  # fmt: skip
def test_after_a_harvest_the_stop_closes_exactly_what_is_held_and_its_fill_is_booked(
    real_redis: RealRedis, tmp_path: Path, okx: FakeThread, systems: list[System]
) -> None:
    system = System(real_redis.socket_path, tmp_path, **settings(okx, exits__harvest_pct="0.3"))
    systems.append(system)
    market = Market(okx)
    start_all(system)
    pos = open_long(system, market)
    stop_id = f"{pos.id}s1"
    market.until(system, "the stop", lambda: (a := algo(okx, stop_id)) and a.sz == pos.size)
    market("50200")  # +0.4%: the harvest takes half
    harvested = market.until(system, "the harvest", lambda: (p := system.position(pos.id)).state == "trailing"
                             and p)  # fmt: skip
    assert 0 < harvested.size < pos.size and held(okx) == {(BTC, "net", "isolated"): harvested.size}
    market.until(system, "the stop resized to what is held", lambda: algo(okx, stop_id).sz == harvested.size)
    # With no ticks reaching the bot (its feed down), the market falls through the exchange's stop: the
    # stop alone closes the position, and the bot learns it from its private stream.
    system.kill("feed")
    okx.price("48950")
    [order] = stop_orders(okx, stop_id)
    assert (order.sz, order.acc_fill_sz, order.state) == (harvested.size, harvested.size, "filled")
    assert held(okx) == {}
    got = system.wait("settled", lambda: (p := system.position(pos.id)).state == "closed" and p)
    assert got.exit_reason == "exchange shows no position (protective stop filled)"
    assert got.realized_pnl == pos_pnl(okx, pos.id) and got.realized_pnl < 0
    books_agree(system, okx)


@pytest.mark.parametrize("okx", [{"snapshot_interval": 0.1, "snapshot_lag": 0.08}], indirect=True)
def test_snapshots_taken_before_a_fill_and_arriving_after_it_never_settle_wrongly(
    real_redis: RealRedis, tmp_path: Path, okx: FakeThread, systems: list[System]
) -> None:
    """Regular snapshots every 0.1 s, each delivered 0.08 s after it was taken, and one taken just before
    the harvest's fill sent just after it: the engine sees sizes older than the fills it already has."""
    trailing = settings(okx, exits__harvest_pct="0.3", exits__trailing_activation_pct="0.3",
                        exits__trailing_distance_pct="0.2")  # fmt: skip
    system = System(real_redis.socket_path, tmp_path, **trailing)
    systems.append(system)
    market = Market(okx)
    start_all(system)
    pos = open_long(system, market)
    stale = okx.sync(okx.fake.take_snapshot)  # the position at its full size
    market("50200")
    harvested = market.until(system, "the harvest's fill at OKX",
                             lambda: (h := held(okx)) and max(h.values()) < pos.size and h)  # fmt: skip
    okx.call(okx.fake.send_snapshot(stale))  # after the fill's own pushes: the old size
    got = market.until(system, "trailing", lambda: (p := system.position(pos.id)).state == "trailing" and p)
    assert got.size == next(iter(harvested.values()))
    for px in ("50300", "50400", "50200"):  # the trailing stop (0.2 % behind the high) closes it
        market(px)
    closed = market.until(system, "closed", lambda: (p := system.position(pos.id)).state == "closed" and p)
    log = system.store.log(pos.id)
    assert [e["to"] for e in log] == ["opening", "open", "harvesting", "trailing", "closing", "closed"]
    assert not [e for e in log if e["trigger"] in ("resync", "external_close")]
    assert closed.exit_reason == "trailing_stop" and closed.realized_pnl == pos_pnl(okx, pos.id)
    assert held(okx) == {}
    books_agree(system, okx)


def pos_pnl(okx: FakeThread, pid: str) -> Decimal:
    """A position's realized PnL at OKX (fees apart): every order it sent, and its stop's."""
    orders = okx.sync(lambda: list(okx.fake.engine.orders.values()))
    return sum((o.pnl for o in orders if (o.cl_ord_id or o.algo_cl_ord_id)[:12] == pid), Decimal(0))

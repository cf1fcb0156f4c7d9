"""The risk memory in Redis, and the daily-loss stop and loss-streak breaker refusing real entries.

The bot this replaces had both breakers in its code and neither ever ran; here they are driven end to end:
closes recorded in a real redis-server, read back by a fresh RiskState (a restarted bot), fed to the
entry gates, which must refuse.
"""

from __future__ import annotations

import subprocess
import threading
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
import redis

from config.settings import RiskSettings, Settings
from exchanges.base import Instrument
from statemachines.position import Side
from statemachines.risk import EntryContext, check_entry, estimate_liq_price, position_size
from tests.conftest import RealRedis
from workers.riskstate import DAY_TTL_S, RiskSnapshot, RiskState, utc_day

pytestmark = pytest.mark.redis

D = Decimal
# 2023-11-14 22:13:20 UTC: 6400 s before the next UTC day starts.
NOW = 1_700_000_000.0
MIDNIGHT = 1_700_006_400.0
BTC_SYM, ETH_SYM = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
BTC = Instrument(BTC_SYM, D("0.01"), D("0.01"), D("0.01"), D("0.1"), 100)
RISK = RiskSettings(daily_loss_limit=D(200), loss_streak_limit=3, loss_streak_cooldown_s=900)


def s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def entry(rs: RiskState, symbol: str, now: float, risk: RiskSettings = RISK) -> str | None:
    """The engine's path for one candidate entry: snapshot the risk memory, size, gate."""
    snap = rs.snapshot(symbol, now)
    price, balance = D(50000), D(1000)
    ctx = EntryContext(
        now=now,
        symbol=symbol,
        side=Side.LONG,
        price=price,
        price_ts=now,
        size=position_size(balance, price, BTC, risk),
        instrument=BTC,
        balance_available=balance,
        open_positions=0,
        open_positions_symbol=0,
        open_notional=D(0),
        daily_pnl=snap.daily_pnl,
        loss_streak=snap.loss_streak,
        cooldown_until=snap.cooldown_until,
        last_order_ts=snap.last_order_ts,
        exchange_state_known=True,
        panic=False,
        stop_distance_pct=0.3,
        liq_price=estimate_liq_price(Side.LONG, price, risk.leverage),
    )
    refusal = check_entry(ctx, risk)
    return None if refusal is None else refusal.code


def test_utc_day() -> None:
    assert utc_day(NOW) == "20231114"
    assert utc_day(MIDNIGHT - 0.001) == "20231114"
    assert utc_day(MIDNIGHT) == "20231115"


def test_fresh_state_reads_as_zeros(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t")
    assert rs.snapshot(BTC_SYM, NOW) == RiskSnapshot(D(0), 0, 0.0, 0.0)
    assert entry(rs, BTC_SYM, NOW) is None


def test_record_close_writes_plain_strings_under_the_prefix(real_redis: RealRedis) -> None:
    r = real_redis.client
    rs = RiskState(r, "t", RISK)
    assert rs.record_close(BTC_SYM, D("-12.345678"), NOW, position_id="p1") is True
    assert rs.record_close(BTC_SYM, D("2.3"), NOW + 1, position_id="p2") is True
    day = {s(k): s(v) for k, v in r.hgetall("t:risk:daily:{20231114}").items()}
    assert day == {"pnl": "-10.045678", "closes": "2", "wins": "1", "losses": "1"}
    assert {s(m) for m in r.smembers("t:risk:daily:{20231114}:ids")} == {"p1", "p2"}
    sym = {s(k): s(v) for k, v in r.hgetall("t:{BTC-USDT-SWAP}:risk").items()}
    assert sym == {
        "loss_streak": "0",
        "cooldown_until": "0.0",
        "last_close_ts": repr(NOW + 1),
        "last_close_pnl": "2.3",
        "last_position": "p2",
    }
    assert 0 < r.ttl("t:risk:daily:{20231114}") <= DAY_TTL_S
    assert 0 < r.ttl("t:risk:daily:{20231114}:ids") <= DAY_TTL_S
    assert 0 < r.ttl("t:{BTC-USDT-SWAP}:risk:ids:20231114") <= DAY_TTL_S
    assert r.ttl("t:{BTC-USDT-SWAP}:risk") == -1  # a streak spans days
    assert all(s(k).startswith("t:") for k in r.keys("*"))
    stats = rs.day(NOW)
    assert (stats.day, stats.pnl, stats.closes) == ("20231114", D("-10.045678"), 2)
    assert (stats.wins, stats.losses) == (1, 1)


def test_decimal_sum_is_exact(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t")
    for i in range(10):
        rs.record_close(BTC_SYM, D("-0.1"), NOW + i, position_id=f"p{i}")
    assert rs.snapshot(BTC_SYM, NOW).daily_pnl == D("-1.0")  # not -0.9999999999999999


def test_record_close_is_idempotent_per_position(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t", RISK)
    assert rs.record_close(BTC_SYM, D(-50), NOW, position_id="p1") is True
    for _ in range(3):
        assert rs.record_close(BTC_SYM, D(-50), NOW, position_id="p1") is False
    other = RiskState(real_redis.client, "t", RISK)
    assert other.record_close(BTC_SYM, D(-50), NOW, position_id="p1") is False
    snap = rs.snapshot(BTC_SYM, NOW)
    assert (snap.daily_pnl, snap.loss_streak, snap.cooldown_until) == (D(-50), 1, 0.0)
    assert rs.day(NOW).closes == 1


def test_a_half_recorded_close_is_completed_not_doubled(real_redis: RealRedis) -> None:
    """A crash between the day's and the symbol's transaction: recording again finishes the missing half."""
    rs = RiskState(real_redis.client, "t", RISK)
    rs._record_day(utc_day(NOW), "p1", D(-40))  # the bot died right after this
    assert rs.snapshot(BTC_SYM, NOW).loss_streak == 0
    assert rs.record_close(BTC_SYM, D(-40), NOW, position_id="p1") is False  # the day had counted it
    snap = rs.snapshot(BTC_SYM, NOW)
    assert (snap.daily_pnl, snap.loss_streak) == (D(-40), 1)
    assert rs.record_close(BTC_SYM, D(-40), NOW, position_id="p1") is False


def test_loss_streak_sets_and_extends_the_cooldown_and_a_win_resets_it(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t", RISK)
    rs.record_close(BTC_SYM, D(-1), NOW, position_id="a")
    rs.record_close(BTC_SYM, D(0), NOW + 5, position_id="b")  # flat: neither a win nor a loss
    rs.record_close(BTC_SYM, D(-1), NOW + 10, position_id="c")
    assert rs.snapshot(BTC_SYM, NOW + 10) == RiskSnapshot(D(-2), 2, 0.0, 0.0)
    rs.record_close(BTC_SYM, D(-1), NOW + 20, position_id="d")  # third in a row: the limit
    assert rs.snapshot(BTC_SYM, NOW + 20).cooldown_until == NOW + 20 + 900
    rs.record_close(BTC_SYM, D(-1), NOW + 2000, position_id="e")  # still losing after the cooldown
    snap = rs.snapshot(BTC_SYM, NOW + 2000)
    assert (snap.loss_streak, snap.cooldown_until) == (4, NOW + 2000 + 900)
    rs.record_close(BTC_SYM, D("0.01"), NOW + 3000, position_id="f")  # a win
    snap = rs.snapshot(BTC_SYM, NOW + 3000)
    assert (snap.loss_streak, snap.cooldown_until) == (0, NOW + 2900)  # the running cooldown ends as set
    rs.record_close(BTC_SYM, D(-1), NOW + 3100, position_id="g")
    assert rs.snapshot(BTC_SYM, NOW + 3100).loss_streak == 1


def test_record_order_only_moves_forward(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t")
    rs.record_order(NOW)
    rs.record_order(NOW - 5)  # a slower process reporting an older order
    assert rs.snapshot(BTC_SYM, NOW).last_order_ts == NOW
    rs.record_order(NOW + 0.25)
    assert rs.snapshot(ETH_SYM, NOW).last_order_ts == NOW + 0.25
    assert s(real_redis.client.get("t:risk:last_order")) == repr(NOW + 0.25)


def test_record_close_rejects_bad_input(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t")
    with pytest.raises(ValueError, match="position_id"):
        rs.record_close(BTC_SYM, D(-1), NOW, position_id="")
    with pytest.raises(ValueError, match="Decimal"):
        rs.record_close(BTC_SYM, -1.5, NOW, position_id="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Decimal"):
        rs.record_close(BTC_SYM, D("NaN"), NOW, position_id="x")
    with pytest.raises(ValueError):
        RiskState(real_redis.client, "bad prefix")
    assert real_redis.client.dbsize() == 0


# --- the breakers refuse real entries, and survive a restart ---


def test_daily_loss_stop_refuses_entries_until_the_next_utc_day(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t", RISK)
    rs.record_close(BTC_SYM, D("-120"), NOW - 600, position_id="l1")
    rs.record_close(ETH_SYM, D("50"), NOW - 500, position_id="w1")
    rs.record_close(ETH_SYM, D("-129.99"), NOW - 400, position_id="l2")
    assert rs.snapshot(BTC_SYM, NOW).daily_pnl == D("-199.99")
    assert entry(rs, BTC_SYM, NOW) is None  # 199.99 lost: still under the limit
    rs.record_close(ETH_SYM, D("-0.01"), NOW - 300, position_id="l3")
    assert entry(rs, BTC_SYM, NOW) == "daily_loss"  # exactly 200: stop
    assert entry(rs, ETH_SYM, NOW) == "daily_loss"  # every symbol

    # A restarted bot: new client, new RiskState, same Redis.
    client = redis.Redis(unix_socket_path=real_redis.socket_path)
    restarted = RiskState(client, "t", RISK)
    assert entry(restarted, BTC_SYM, NOW + 3000) == "daily_loss"
    assert entry(restarted, BTC_SYM, MIDNIGHT - 0.001) == "daily_loss"
    assert entry(restarted, BTC_SYM, MIDNIGHT) is None  # a new UTC day
    client.close()


def test_loss_streak_breaker_refuses_the_symbol_until_the_cooldown_ends(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t", RISK)
    for i in range(3):
        assert entry(rs, BTC_SYM, NOW + 60 * i) is None
        rs.record_close(BTC_SYM, D("-5"), NOW + 60 * i + 30, position_id=f"loss{i}")
    until = NOW + 150 + 900
    assert entry(rs, BTC_SYM, NOW + 200) == "loss_streak_cooldown"
    assert entry(rs, ETH_SYM, NOW + 200) is None  # another symbol is not affected

    client = redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=True)
    restarted = RiskState(client, "t", RISK)
    assert restarted.snapshot(BTC_SYM, NOW + 200) == RiskSnapshot(D(-15), 3, until, 0.0)
    assert entry(restarted, BTC_SYM, until - 0.001) == "loss_streak_cooldown"
    assert entry(restarted, BTC_SYM, until) is None
    client.close()


def test_breakers_survive_a_redis_restart(local_redis: Any) -> None:
    """Not just a bot restart: the redis-server itself stops and starts on its append-only file."""
    local_redis.start()
    rs = RiskState(local_redis.client(), "t", RISK)
    for i in range(3):
        rs.record_close(BTC_SYM, D("-70"), NOW + i, position_id=f"p{i}")
    rs.record_order(NOW + 3)
    before = rs.snapshot(BTC_SYM, NOW + 10)
    local_redis.stop()
    local_redis.start()
    after = RiskState(local_redis.client(), "t", RISK)
    assert after.snapshot(BTC_SYM, NOW + 10) == before == RiskSnapshot(D(-210), 3, NOW + 2 + 900, NOW + 3)
    assert entry(after, ETH_SYM, NOW + 10) == "daily_loss"
    assert after.record_close(BTC_SYM, D("-70"), NOW + 2, position_id="p2") is False


def test_min_order_interval_from_recorded_orders(real_redis: RealRedis) -> None:
    rs = RiskState(real_redis.client, "t", RISK)
    rs.record_order(NOW)
    assert entry(rs, BTC_SYM, NOW + 0.5) == "order_interval"
    assert entry(RiskState(real_redis.client, "t", RISK), ETH_SYM, NOW + 0.999) == "order_interval"
    assert entry(rs, BTC_SYM, NOW + 1.0) is None


def test_per_symbol_settings(real_redis: RealRedis) -> None:
    settings = Settings(
        symbols={BTC_SYM: {}, ETH_SYM: {"risk": {"loss_streak_limit": 1, "loss_streak_cooldown_s": 60}}}
    )
    rs = RiskState.from_settings(real_redis.client, settings)
    assert rs.prefix == "scalper"
    rs.record_close(ETH_SYM, D(-1), NOW, position_id="e1")
    rs.record_close(BTC_SYM, D(-1), NOW, position_id="b1")
    assert rs.snapshot(ETH_SYM, NOW).cooldown_until == NOW + 60
    assert rs.snapshot(BTC_SYM, NOW).cooldown_until == 0.0


# --- concurrency ---


def test_concurrent_closes_lose_no_update(real_redis: RealRedis) -> None:
    """Eight processes' worth of clients closing at once: every PnL counted exactly once."""
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        client = redis.Redis(unix_socket_path=real_redis.socket_path)
        try:
            rs = RiskState(client, "t", RISK)
            barrier.wait()
            for i in range(per_thread):
                pnl = D(f"-{t}.{i:02d}") if i % 2 else D(f"0.0{t}")
                rs.record_close(BTC_SYM, pnl, NOW, position_id=f"t{t}i{i}")
                # and a duplicate of the previous close, racing the other threads
                if i:
                    prev = D(f"-{t}.{i - 1:02d}") if (i - 1) % 2 else D(f"0.0{t}")
                    rs.record_close(BTC_SYM, prev, NOW, position_id=f"t{t}i{i - 1}")
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    expected = sum(
        (D(f"-{t}.{i:02d}") if i % 2 else D(f"0.0{t}") for t in range(n_threads) for i in range(per_thread)),
        D(0),
    )
    rs = RiskState(real_redis.client, "t", RISK)
    stats = rs.day(NOW)
    assert stats.pnl == expected
    assert stats.closes == n_threads * per_thread
    assert real_redis.client.scard("t:{BTC-USDT-SWAP}:risk:ids:20231114") == n_threads * per_thread


def test_concurrent_duplicates_count_once(real_redis: RealRedis) -> None:
    n = 12
    barrier = threading.Barrier(n)
    results: list[bool] = []

    def worker() -> None:
        with redis.Redis(unix_socket_path=real_redis.socket_path) as client:
            rs = RiskState(client, "t", RISK)
            barrier.wait()
            results.append(rs.record_close(BTC_SYM, D("-33.3"), NOW, position_id="same"))

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert sorted(results) == [False] * (n - 1) + [True]
    snap = RiskState(real_redis.client, "t", RISK).snapshot(BTC_SYM, NOW)
    assert (snap.daily_pnl, snap.loss_streak) == (D("-33.3"), 1)


# --- other clients ---


def test_works_on_fakeredis_without_lua() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    rs = RiskState(client, "f", RISK)
    for i in range(3):
        rs.record_close(BTC_SYM, D(-80), NOW + i, position_id=str(i))
    rs.record_order(NOW + 5)
    assert rs.snapshot(BTC_SYM, NOW + 5) == RiskSnapshot(D(-240), 3, NOW + 2 + 900, NOW + 5)
    assert entry(rs, BTC_SYM, NOW + 10) == "daily_loss"


def test_readable_with_redis_cli(real_redis: RealRedis, redis_cli: str) -> None:
    rs = RiskState(real_redis.client, "scalper", RISK)
    rs.record_close(BTC_SYM, D("-12.5"), NOW, position_id="mwpz0c1k9a2f")

    def cli(*args: str) -> str:
        out = subprocess.run(
            [redis_cli, "-s", real_redis.socket_path, *args], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    assert cli("HGET", "scalper:risk:daily:{20231114}", "pnl") == "-12.5"
    assert cli("HGET", "scalper:{BTC-USDT-SWAP}:risk", "loss_streak") == "1"

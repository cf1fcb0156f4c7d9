"""The web process reads the closed trades by their changes (scalper/web/closed.py); what it shows must be
what a whole read shows, whatever happened in between: positions closing, archived to the ledger, removed
after the retention, rows of other days, a row that cannot be parsed, a day that expired."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

import pytest
import redis

from scalper import inspect
from scalper.web import closed as closed_book
from scalper.web.closed import ClosedBook
from scalper.web.views import Views
from statemachines.archive import ClosedArchive
from statemachines.ledger import TradeRecord, utc_day
from statemachines.position import new_position_id
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import stored_position

pytestmark = pytest.mark.redis
BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
DAY_S = 86_400


Totals = dict[str, Any]


def _whole_read(store: PositionStore, today: str) -> tuple[list[dict[str, Any]], Totals, Totals]:
    """The closed rows (oldest entry first), all trades' and today's totals, from every stored position and
    the whole ledger (what `scalper positions --all` reads)."""
    rows = [r for r in inspect.positions(store, include_closed=True) if r["state"] in ("closed", "archived")]

    def totals(of: list[dict[str, Any]]) -> dict[str, Any]:
        gross = sum((Decimal(str(r["gross"])) for r in of), Decimal(0))
        fees = sum((Decimal(str(r["fees"])) for r in of), Decimal(0))
        return {"trades": len(of), "net": float(gross + fees), "gross": float(gross), "fees": float(fees),
                "wins": sum(1 for r in of if r["net"] > 0)}  # fmt: skip

    todays = [r for r in rows if r["closed"] and r["closed"][:10].replace("-", "") == today]
    return rows, totals(rows), totals(todays)


def _old_row(client: redis.Redis, store: PositionStore, day_ago: int, pnl: str, fees: str) -> str:
    """A ledger row of a trade closed `day_ago` days ago whose position is long gone, as REMOVE_CLOSED
    writes it."""
    exit_ts = time.time() - day_ago * DAY_S
    rec = TradeRecord(id=new_position_id(exit_ts - 60), symbol=ETH, side="short", entry_ts=exit_ts - 60,
                      exit_ts=exit_ts, entry_price=Decimal("2500"), size=Decimal("3"),
                      exit_reason="stop_loss", pnl=Decimal(pnl), fees=Decimal(fees))  # fmt: skip
    client.hset(store.keys.ledger(rec.day), rec.id, rec.encode())
    client.sadd(store.keys.ledger_days(), rec.day)
    return rec.day


@pytest.mark.parametrize("seed", [random.randrange(1 << 30) for _ in range(2)])
def test_what_is_read_by_its_changes_is_what_a_whole_read_gives(real_redis: RealRedis, seed: int) -> None:
    rnd = random.Random(seed)
    client = real_redis.client
    store = PositionStore(client)
    archive = ClosedArchive(client, store.keys)
    book = ClosedBook(client, store)
    closed: list[tuple[str, str]] = []  # (symbol, id) of the closed positions still stored
    old_days: set[str] = set()
    garbage: set[str] = set()
    today = utc_day(time.time())
    for step in range(60):
        op = rnd.choices(["close", "archive", "remove", "old", "garbage", "expire", "live"],
                         weights=[8, 4, 3, 3, 1, 1, 2])[0]  # fmt: skip
        if op == "close":
            symbol = rnd.choice([BTC, ETH])
            pnl, fees = f"{rnd.uniform(-5, 5):.4f}", f"-{rnd.uniform(0, 1):.4f}"
            pos = stored_position(store, symbol, pnl=pnl, fees=fees)
            closed.append((symbol, pos.id))
            if rnd.random() < 0.1:  # a closed hash that cannot be parsed: left out, as by a whole read (a
                # closed hash never changes after its close, so this is the only time it can go bad)
                client.hset(store.keys.pos(symbol, pos.id), "side", "sideways")
        elif op == "archive" and closed:
            archive.archive(rnd.sample(closed, min(len(closed), 3)), now=time.time())
        elif op == "remove" and closed:
            gone = rnd.sample(closed, min(len(closed), 2))
            archive.remove(gone)
            closed = [c for c in closed if c not in gone]
        elif op == "old":
            old_days.add(_old_row(client, store, rnd.randint(1, 5), f"{rnd.uniform(-5, 5):.4f}", "-0.1"))
        elif op == "garbage":
            client.hset(store.keys.ledger(today), f"bad{step}", "{not json")
            client.sadd(store.keys.ledger_days(), today)
            garbage.add(f"{today}/bad{step}")
        elif op == "expire" and old_days:
            client.delete(store.keys.ledger(rnd.choice(sorted(old_days))))  # expired, still listed
            # Read before the day could be written anew: a day expires ledger_retention_days after its last
            # write, never within the second between two reads (closed.py's limit, written down there).
            book.refresh()
        elif op == "live":
            stored_position(store, BTC, steps=rnd.randint(0, 2))
        if rnd.random() < 0.6:  # the web reads about once a second: not after every write
            book.refresh()
            rows, everything, todays = _whole_read(store, today)
            got_all, got_today = book.tallies(today)
            assert got_all.as_json() == pytest.approx(everything), (seed, step, op)
            assert got_today.as_json() == pytest.approx(todays), (seed, step, op)
            n = rnd.randint(1, 8)
            assert book.latest(n) == rows[-n:][::-1], (seed, step, op)
    book.refresh()
    assert book.malformed == garbage  # left out of the totals and named, day/id


def test_the_board_is_shared_by_readers_within_its_age_and_read_anew_after(real_redis: RealRedis) -> None:
    """The dashboard's stream and /metrics share one read a second: a board asked again within `max_age_s`
    is the same read; a later one is a new read that sees what changed."""
    store = PositionStore(real_redis.client)
    views = Views(real_redis.client, store, [BTC])
    first = views.board(max_age_s=60.0)  # (a minute: a loaded host must not make this test flaky)
    assert views.board(max_age_s=60.0) is first
    stored_position(store, BTC, pnl="3", fees="-1")
    assert views.board(max_age_s=60.0)["summary"]["all"]["trades"] == 0  # shared, within its age
    fresh = views.board(max_age_s=0.0)
    assert fresh is not first and fresh["summary"]["all"] == {"trades": 1, "net": 2.0, "gross": 3.0,
                                                               "fees": -1.0, "wins": 1}  # fmt: skip
    assert [r["id"] for r in fresh["closed"]] == [r["id"] for r in views.positions(include_closed=True)]


def test_what_the_counts_cannot_see_is_read_anew_after_a_redis_error_and_every_rebuild(
    real_redis: RealRedis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis that came back from a restart or a failover with other rows than the book read, as many of
    them: the counts cannot see it. A Redis error and REBUILD_S make the book read everything anew."""
    client = real_redis.client
    store = PositionStore(client)
    book = ClosedBook(client, store)
    day = _old_row(client, store, 2, "5", "-1")
    book.refresh()
    assert book.tallies(utc_day(time.time()))[0].as_json()["net"] == 4.0
    client.delete(store.keys.ledger(day))  # rolled back, and another trade closed on that day since
    _old_row(client, store, 2, "-7", "-1")
    book.refresh()
    assert book.tallies(utc_day(time.time()))[0].as_json()["net"] == 4.0  # the limit, as written down

    def refused(*_: object, **__: object) -> None:
        raise redis.ConnectionError("Redis went away")

    with monkeypatch.context() as m:
        m.setattr(store, "symbols", refused)
        with pytest.raises(redis.ConnectionError):
            book.refresh()
    book.refresh()
    assert book.tallies(utc_day(time.time()))[0].as_json()["net"] == -8.0
    client.delete(store.keys.ledger(day))
    _old_row(client, store, 2, "3", "0")
    monkeypatch.setattr(closed_book, "REBUILD_S", 0.0)
    book.refresh()
    assert book.tallies(utc_day(time.time()))[0].as_json()["net"] == 3.0

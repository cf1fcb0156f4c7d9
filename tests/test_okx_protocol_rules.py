"""OKX's protocol where the fake used to differ (issue 10, "the fake OKX hides what OKX would do", points
3-6), and the adapter and the feed against it.

- positions and account are pushed as a snapshot on subscribe and again every few seconds (eventType
  "snapshot", paged), not only on events; `updateInterval: "0"` turns the regular ones off. A snapshot taken
  before a fill can arrive after the fill's event push: the adapter reports it as it is (the engine never
  settles from it, see tests/test_system_okx_rules.py).
- "order does not exist" on GET /trade/order is a top-level code 51603 with an empty data[]; the adapter
  answers None for it, and for the per-item shape too.
- GET /market/candles serves the 1-minute bars: the live feed's REST warm-up fills the history stream.
- a WebSocket connection with no traffic for the idle time is closed (4004), and the adapter's pings keep
  its connection open.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import fakeredis
import httpx
import pytest
import websockets

from exchanges.base import EventKind, ExchangeEvent, OrderRequest, OrderSide
from exchanges.okx.auth import Credentials
from exchanges.okx.orders import OrderDesk
from exchanges.okx.rest import OkxRest
from feeds.live import warm_history
from feeds.ticks import TickWriter
from statemachines.keys import Keys
from tests.fakeokx import FakeOkx, eventually
from tests.fakeokx.handlers import sign
from tests.fakeokx.harness import BTC, FAST, KEY, PASSPHRASE, SECRET, Venue

D = Decimal


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    v = Venue()
    yield v
    await v.aclose()


def snapshots(items: list[ExchangeEvent], kind: EventKind) -> list[ExchangeEvent]:
    return [e for e in items if e.kind is kind and e.snapshot]


# --- 3. regular positions / account snapshots ---


async def test_positions_and_account_snapshots_come_regularly_not_only_on_events(venue: Venue) -> None:
    _, ex, events = await venue.start(fake_kw={"snapshot_interval": 0.1})
    await ex.place_order(OrderRequest(BTC, "snap1", OrderSide.BUY, D(1)))
    await eventually(lambda: len(snapshots(events.items, EventKind.POSITION)) >= 4, timeout=3)
    await eventually(lambda: len(snapshots(events.items, EventKind.ACCOUNT)) >= 4, timeout=3)
    last = snapshots(events.items, EventKind.POSITION)[-1]
    assert [(p.size, p.mgn_mode) for p in last.positions] == [(1, "isolated")]
    # With nothing happening, they keep coming: OKX sends them whether anything changed or not.
    seen = len(snapshots(events.items, EventKind.POSITION))
    await eventually(lambda: len(snapshots(events.items, EventKind.POSITION)) >= seen + 2, timeout=3)


async def test_update_interval_zero_means_the_snapshot_on_subscribe_only(venue: Venue) -> None:
    fake = await venue.fake(snapshot_interval=0.05)
    ex = venue.adapter(fake)
    await ex.start()
    async with websockets.connect(fake.ws_url("private")) as ws:
        ts = str(int(time.time()))
        login = {"apiKey": KEY, "passphrase": PASSPHRASE, "timestamp": ts,
                 "sign": sign(SECRET, ts + "GET/users/self/verify")}  # fmt: skip
        await ws.send(json.dumps({"op": "login", "args": [login]}))
        assert json.loads(await ws.recv())["event"] == "login"
        arg = {"channel": "positions", "instType": "SWAP", "extraParams": '{"updateInterval": "0"}'}
        await ws.send(json.dumps({"op": "subscribe", "args": [arg]}))
        got = [json.loads(await ws.recv()) for _ in range(2)]
        assert got[0]["event"] == "subscribe" and got[1]["eventType"] == "snapshot"
        with pytest.raises(asyncio.TimeoutError):  # no regular snapshot follows
            await asyncio.wait_for(ws.recv(), 0.4)


async def test_a_snapshot_taken_before_a_fill_can_arrive_after_it(venue: Venue) -> None:
    fake, ex, events = await venue.start()
    await ex.place_order(OrderRequest(BTC, "stale1", OrderSide.BUY, D(2)))
    await events.position(lambda p: p.size == 2)
    stale = fake.take_snapshot()
    await ex.place_order(OrderRequest(BTC, "stale2", OrderSide.SELL, D(1), reduce_only=True))
    await events.position(lambda p: p.size == 1)
    await fake.send_snapshot(stale)
    late = await events.wait(lambda e: e.kind is EventKind.POSITION and e.snapshot and
                             any(p.size == 2 for p in e.positions))  # fmt: skip
    fill = events.index(lambda e: e.kind is EventKind.POSITION and any(p.size == 1 for p in e.positions))
    assert events.items.index(late) > fill  # what the engine sees: the old size, after the new one
    assert [(p.size, p.mgn_mode) for p in await ex.positions()] == [(1, "isolated")]


# --- 4. "order does not exist": top-level 51603 ---


async def test_order_not_found_is_a_top_level_51603_and_reads_as_none(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    path = f"/api/v5/trade/order?instId={BTC}&clOrdId=neverSent1"
    headers = Credentials(KEY, SECRET, PASSPHRASE).rest_headers("GET", path, "", demo=True, now=time.time())
    async with httpx.AsyncClient(base_url=fake.rest_url) as http:
        reply = (await http.get(path, headers=headers)).json()
    assert (reply["code"], reply["data"]) == ("51603", [])  # not code "1" with data[].sCode
    assert await ex.get_order(BTC, "neverSent1") is None
    assert await ex.stop_fill(BTC, "neverSentStop") is None  # GET order-algo: likewise top-level


@pytest.mark.parametrize(
    "body",
    [
        {"code": "51603", "msg": "Order does not exist", "data": []},
        {"code": "1", "msg": "", "data": [{"sCode": "51603", "sMsg": "Order does not exist"}]},
    ],
    ids=["top-level", "per-item"],
)
async def test_order_not_found_reads_as_none_in_either_shape(body: dict[str, object]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    rest = OkxRest(Credentials(KEY, SECRET, PASSPHRASE), "http://okx.invalid", transport=transport)

    async def no_instrument(inst_id: str) -> object:
        raise AssertionError("not needed")

    desk = OrderDesk(rest, no_instrument, pos_mode="net", queries=1, query_delay=0)  # type: ignore[arg-type]
    try:
        assert await desk.get(BTC, "x") is None
    finally:
        await rest.aclose()


# --- 5. REST candles: the live feed's warm-up ---


async def test_the_live_feed_warms_the_history_stream_from_rest_candles(venue: Venue) -> None:
    fake = await venue.fake()
    minute = int(time.time()) // 60 * 60_000
    bars = [(minute - (5 - i) * 60_000, D(50000 + i), D(50010 + i), D(49990 + i), D(50005 + i))
            for i in range(5)]  # fmt: skip
    fake.engine.candles.seed(BTC, bars)
    await fake.set_price(BTC, "50100")  # the forming bar: served with confirm "0", left out by the feed
    client = fakeredis.FakeRedis()
    keys = Keys("warm")
    rest = OkxRest(None, fake.rest_url)
    try:
        assert await warm_history(rest, TickWriter(client, keys), BTC) == 5
    finally:
        await rest.aclose()
    [request] = fake.calls("GET", "/api/v5/market/candles")
    assert request.query == {"instId": BTC, "bar": "1m", "limit": "300"}
    stored = [{k.decode(): float(v) for k, v in f.items()} for _, f in client.xrange(keys.history(BTC))]
    assert [(r["ts"], r["o"], r["h"], r["l"], r["c"]) for r in stored] == [
        (ts / 1000, float(o), float(h), float(low), float(c)) for ts, o, h, low, c in bars]  # fmt: skip


async def test_candles_are_served_newest_first_and_paged(venue: Venue) -> None:
    fake = await venue.fake()
    minute = int(time.time()) // 60 * 60_000
    fake.engine.candles.seed(BTC, [(minute - n * 60_000, D(1), D(2), D(1), D(2)) for n in range(10, 0, -1)])
    async with httpx.AsyncClient(base_url=fake.rest_url) as http:
        rows = (await http.get("/api/v5/market/candles", params={"instId": BTC, "limit": "3"})).json()["data"]
        older = (await http.get("/api/v5/market/history-candles",
                                params={"instId": BTC, "after": rows[-1][0]})).json()["data"]  # fmt: skip
        bad = (await http.get("/api/v5/market/candles", params={"instId": BTC, "bar": "1H"})).json()
    assert [r[8] for r in rows] == ["0", "1", "1"]  # the forming bar first
    assert [int(r[0]) for r in rows] == sorted((int(r[0]) for r in rows), reverse=True)
    assert len(older) == 8 and int(older[0][0]) < int(rows[-1][0])
    assert bad["code"] == "51000"


# --- 6. the idle close of a silent WebSocket ---


async def test_a_silent_connection_is_closed_and_the_adapter_pings_keep_its_own_open(venue: Venue) -> None:
    fake, _, events = await venue.start(fake_kw={"idle_timeout": 0.6})
    async with websockets.connect(fake.ws_url("public")) as silent:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(silent.recv(), 3)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
    await asyncio.sleep(1.5)  # more than twice the idle time, with no push on the private channels
    assert fake.connects["private"] == 1 and fake.pings > 0  # FAST pings every 0.2 s: never idle
    assert not any(e.kind is EventKind.RECONNECTED for e in events.items)


async def test_a_client_that_pings_too_rarely_is_closed_and_reconnects(venue: Venue) -> None:
    fake = await venue.fake(idle_timeout=0.4)
    ex = venue.adapter(fake, ws_options=replace(FAST, ping_interval=5.0, pong_timeout=5.0))
    await ex.start()
    await eventually(lambda: fake.idle_closes >= 1 and fake.connects["private"] >= 2, timeout=5)


def test_the_fake_defaults_to_okx_figures() -> None:
    """Snapshots about every 5 s, idle connections closed after 30 s, oversized closes resized."""
    fake = FakeOkx(KEY, SECRET, PASSPHRASE)
    assert (fake.snapshot_interval, fake.idle_timeout, fake.engine.oversize) == (5.0, 30.0, "resize")

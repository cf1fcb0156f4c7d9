"""The fake OKX against a client nobody here wrote: ccxt (REST) and ccxt.pro (WebSockets), pointed at the fake
on loopback in demo mode (x-simulated-trading), over every endpoint and channel the bot uses. ccxt must
parse each answer without error and read the values the fake's books hold; so the fake cannot drift from
OKX's protocol unnoticed (issue 10). No request leaves loopback: every URL ccxt is given is the fake's, and
each request and connection is checked against it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from tests.fakeokx import FakeOkx
from tests.fakeokx.harness import BTC, KEY, PASSPHRASE, SECRET, Venue

SYMBOL = "BTC/USDT:USDT"  # ccxt's name for BTC-USDT-SWAP
D = Decimal


@pytest.fixture
async def fake() -> AsyncIterator[FakeOkx]:
    venue = Venue()
    yield await venue.fake(snapshot_interval=0.2)
    await venue.aclose()


def _local(ex: Any, fake: FakeOkx) -> Any:
    """Demo mode (the x-simulated-trading header), every URL the fake's, and a check on each request."""
    ex.set_sandbox_mode(True)
    ex.urls["api"] = {"rest": fake.rest_url, "ws": f"ws://127.0.0.1:{fake.port}/ws/v5"}
    fetch = ex.fetch

    async def loopback_only(url: str, *args: Any, **kw: Any) -> Any:
        assert url.startswith(fake.rest_url), f"ccxt tried to leave loopback: {url}"
        return await fetch(url, *args, **kw)

    ex.fetch = loopback_only
    if isinstance(ex, ccxt_pro.okx):
        client = ex.client
        ws_base = ex.urls["api"]["ws"]

        def loopback_ws(url: str) -> Any:
            assert url.startswith(ws_base), f"ccxt.pro tried to leave loopback: {url}"
            return client(url)

        ex.client = loopback_ws
    return ex


def _options() -> dict[str, Any]:
    # The endpoints the bot uses: single orders (ccxt would batch them), SWAP instruments only.
    options = {"fetchMarkets": {"types": ["swap"]}, "createOrder": "privatePostTradeOrder"}
    creds = {"apiKey": KEY, "secret": SECRET, "password": PASSPHRASE}
    return {**creds, "enableRateLimit": False, "options": options}


@pytest.fixture
async def rest(fake: FakeOkx) -> AsyncIterator[Any]:
    ex = _local(ccxt_async.okx(_options()), fake)
    yield ex
    await ex.close()


@pytest.fixture
async def pro(fake: FakeOkx) -> AsyncIterator[Any]:
    ex = _local(ccxt_pro.okx(_options()), fake)
    yield ex
    await ex.close()


async def test_rest_market_data_and_account(fake: FakeOkx, rest: Any) -> None:
    server_ms = await rest.fetch_time()
    assert abs(server_ms - time.time() * 1000) < 5000
    markets = await rest.load_markets()
    btc = markets[SYMBOL]
    inst = fake.engine.instruments[BTC]
    assert (btc["id"], btc["contractSize"], btc["precision"]["amount"], btc["precision"]["price"]) == (
        BTC, float(inst["ctVal"]), float(inst["lotSz"]), float(inst["tickSz"]))  # fmt: skip
    fake.engine.candles.seed(BTC, [(int(time.time()) // 60 * 60_000 - 120_000, D(1), D(3), D(1), D(2))])
    ohlcv = await rest.fetch_ohlcv(SYMBOL, "1m", limit=5)
    assert ohlcv[0][1:5] == [1.0, 3.0, 1.0, 2.0] and ohlcv[-1][4] == 50000.0  # oldest first, then forming
    [account] = await rest.fetch_accounts()  # GET account/config: the bot checks posMode there at start
    assert account["info"]["posMode"] == "net_mode"
    balance = await rest.fetch_balance()
    assert balance["USDT"]["total"] == float(fake.engine.equity())
    assert await rest.fetch_positions([SYMBOL]) == []
    lever = await rest.set_leverage(5, SYMBOL, {"marginMode": "isolated"})
    assert lever["data"][0]["lever"] == "5" and fake.engine.levers[(BTC, "isolated")] == 5


async def test_rest_orders_positions_and_close(fake: FakeOkx, rest: Any) -> None:
    await rest.load_markets()
    iso = {"tdMode": "isolated"}
    opened = await rest.create_order(SYMBOL, "market", "buy", 2, None, {**iso, "clOrdId": "ccxtOpen1"})
    assert opened["clientOrderId"] == "ccxtOpen1"
    got = await rest.fetch_order(opened["id"], SYMBOL)
    book = fake.engine.orders[opened["id"]]
    assert (got["status"], got["filled"], got["average"], got["fee"]["cost"]) == (
        "closed", 2.0, float(book.avg_px or 0), float(-book.fee))  # fmt: skip
    [pos] = await rest.fetch_positions([SYMBOL])
    assert (pos["contracts"], pos["side"], pos["marginMode"], pos["entryPrice"]) == (2.0, "long", "isolated",
                                                                                    50000.0)  # fmt: skip
    resting = await rest.create_order(SYMBOL, "limit", "sell", 1, 52000, {**iso, "reduceOnly": True})
    [pending] = await rest.fetch_open_orders(SYMBOL)
    assert (pending["id"], pending["price"], pending["reduceOnly"]) == (resting["id"], 52000.0, True)
    await rest.cancel_order(resting["id"], SYMBOL)
    assert fake.engine.orders[resting["id"]].state == "canceled"
    with pytest.raises(ccxt_async.OrderNotFound):  # top-level 51603, as OKX answers it
        await rest.fetch_order("123456789", SYMBOL)
    await fake.set_price(BTC, "50100")
    await rest.close_position(SYMBOL, None, {"marginMode": "isolated", "clientOrderId": "ccxtClose1"})
    assert [p for p in fake.engine.positions.values() if p.pos] == []
    closed = await rest.fetch_closed_orders(SYMBOL)
    close = next(o for o in closed if o["clientOrderId"] == "ccxtClose1")
    assert (close["filled"], close["side"], close["reduceOnly"]) == (2.0, "sell", True)
    assert close["info"]["pnl"] == "2"  # (50100 - 50000) * 2 * 0.01
    with pytest.raises(ccxt_async.ExchangeError):  # nothing held any more
        await rest.close_position(SYMBOL, None, {"marginMode": "isolated"})


async def test_rest_stop_orders_place_amend_list_cancel_and_history(fake: FakeOkx, rest: Any) -> None:
    await rest.load_markets()
    await rest.create_order(SYMBOL, "market", "buy", 2, None, {"tdMode": "isolated"})
    sl = {"tdMode": "isolated", "reduceOnly": True, "stopLossPrice": 49000, "algoClOrdId": "ccxtStop1"}
    stop = await rest.create_order(SYMBOL, "market", "sell", 2, None, sl)
    algo = fake.engine.algos[stop["id"]]
    assert (algo.algo_cl_ord_id, algo.sl_trigger_px, algo.sz, algo.td_mode) == (
        "ccxtStop1", 49000, 2, "isolated")  # fmt: skip
    one = await rest.fetch_order(stop["id"], SYMBOL, {"trigger": True})  # GET order-algo
    assert (one["id"], one["status"], one["amount"]) == (stop["id"], "open", 2.0)
    amend = {"stopLossPrice": 48500, "newSlOrdPx": -1}
    await rest.edit_order(stop["id"], SYMBOL, "conditional", "sell", 1, None, amend)  # amend-algos
    assert (algo.sz, algo.sl_trigger_px) == (1, 48500)
    stops = {"trigger": True, "ordType": "conditional"}  # the algo endpoints, for the bot's kind of stop
    [listed] = await rest.fetch_open_orders(SYMBOL, None, None, stops)
    assert (listed["id"], listed["amount"], listed["stopLossPrice"]) == (stop["id"], 1.0, 48500.0)
    await rest.cancel_order(stop["id"], SYMBOL, {"trigger": True})
    assert algo.state == "canceled"
    assert await rest.fetch_open_orders(SYMBOL, None, None, stops) == []
    history = await rest.fetch_canceled_orders(SYMBOL, None, None, stops)
    assert [(o["id"], o["status"]) for o in history] == [(stop["id"], "canceled")]
    algo_paths = {"order-algo", "amend-algos", "orders-algo-pending", "cancel-algos", "orders-algo-history"}
    assert {r.path.rsplit("/", 1)[1] for r in fake.requests} >= algo_paths


async def test_websockets_public_and_private(fake: FakeOkx, pro: Any, rest: Any) -> None:
    await pro.load_markets()
    ticker = asyncio.ensure_future(pro.watch_ticker(SYMBOL))
    trades = asyncio.ensure_future(pro.watch_trades(SYMBOL))
    balance = asyncio.ensure_future(pro.watch_balance())
    positions = asyncio.ensure_future(pro.watch_positions([SYMBOL]))
    await _subscribed(fake, {"tickers", "trades", "account", "positions"})
    await fake.set_price(BTC, "50500")
    assert (await asyncio.wait_for(ticker, 5))["last"] == 50500.0
    assert (await asyncio.wait_for(trades, 5))[-1]["price"] == 50500.0
    assert (await asyncio.wait_for(balance, 5))["USDT"]["total"] == float(fake.engine.equity())
    await asyncio.wait_for(positions, 5)  # the snapshot on subscribe (flat)
    orders = asyncio.ensure_future(pro.watch_orders(SYMBOL))
    await _subscribed(fake, {"orders"})
    await rest.load_markets()
    placed = await rest.create_order(SYMBOL, "market", "buy", 1, None, {"tdMode": "isolated"})
    pushed = await asyncio.wait_for(orders, 5)
    assert placed["id"] in {o["id"] for o in pushed}
    held = await asyncio.wait_for(pro.watch_positions([SYMBOL]), 5)
    assert [(p["contracts"], p["side"], p["marginMode"]) for p in held] == [(1.0, "long", "isolated")]
    assert fake.logins >= 1 and fake.connects["public"] >= 1 and fake.connects["private"] >= 1


async def _subscribed(fake: FakeOkx, channels: set[str]) -> None:
    deadline = time.monotonic() + 5
    while not channels <= {a.get("channel") for _, args in fake.subscribe_requests for a in args}:
        assert time.monotonic() < deadline, f"not subscribed: {channels}"
        await asyncio.sleep(0.01)

"""PaperClient ↔ PaperVenue over Redis (exchanges/paper/client.py, venue.py, wire.py): one round trip per
request, replies matched to their requests even when calls overlap, an abandoned call leaves no stale reply
behind, and the venue claims order requests (at most once) but not reads. Real redis-server, the venue in a
thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import msgspec
import pytest
import redis

from exchanges.base import (
    ExchangeUnavailable,
    NothingToClose,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
)
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.paper.client import PaperClient
from exchanges.paper.venue import PaperVenue
from statemachines.keys import Keys
from tests.conftest import RealRedis

BTC = "BTC-USDT-SWAP"


def _venue(client: redis.Redis) -> PaperVenue:
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=Decimal("0.0005"), maker_fee=Decimal("0.0002"))
    return PaperVenue(client, ex, Keys(), [BTC])


@pytest.fixture
def venue(real_redis: RealRedis) -> Iterator[PaperVenue]:
    """A running venue (its own client and loop, in a thread) with a BTC quote."""
    client = redis.Redis(unix_socket_path=real_redis.socket_path)
    client.xadd(Keys().ticks(BTC), {"px": "50000", "ts": repr(time.time())})
    venue = _venue(client)
    stop = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(venue.start())
        while not stop.is_set():
            loop.run_until_complete(venue.run_once(block_ms=5))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield venue
    stop.set()
    thread.join(timeout=5)
    client.close()


def _buy(cid: str, size: str = "1", reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(
        inst_id=BTC, cl_ord_id=cid, side=OrderSide.BUY, size=Decimal(size), reduce_only=reduce_only
    )


def test_requests_and_replies(real_redis: RealRedis, venue: PaperVenue) -> None:
    paper = PaperClient(real_redis.client, Keys())

    async def scenario() -> None:
        order = await paper.place_order(_buy("abc123def456o1"))
        assert order.state is OrderState.FILLED and order.filled == Decimal(1)
        [pos] = await paper.positions()
        assert (pos.inst_id, pos.side, pos.size) == (BTC, "long", Decimal(1))
        assert (await paper.get_order(BTC, "abc123def456o1")) == order
        assert await paper.get_order(BTC, "nosuchid") is None

    asyncio.run(scenario())
    # One claim, for the order; the reads were not claimed.
    assert len(real_redis.client.keys("scalper:paper:served:*")) == 1


def test_close_position_over_the_wire_is_claimed_and_served_once(
    real_redis: RealRedis, venue: PaperVenue
) -> None:
    paper = PaperClient(real_redis.client, Keys())

    async def scenario() -> None:
        await paper.place_order(_buy("abc123def456o1", "2"))
        order = await paper.close_position(BTC, "abc123def456c1", OrderSide.SELL, "isolated")
        assert (order.state, order.filled, order.side) == (OrderState.FILLED, Decimal(2), OrderSide.SELL)
        assert await paper.positions() == []
        with pytest.raises(NothingToClose):
            await paper.close_position(BTC, "abc123def456c1", OrderSide.SELL, "isolated")

    asyncio.run(scenario())
    served = [{k.decode(): v.decode() for k, v in f.items()} for _, f in real_redis.client.xrange(
        "scalper:paper:served")]  # fmt: skip
    closes = [(e["op"], e["cid"], e["ok"]) for e in served if e["op"] == "close_position"]
    assert closes == [("close_position", "abc123def456c1", "1"), ("close_position", "abc123def456c1", "0")]
    assert len(real_redis.client.keys("scalper:paper:served:*")) == 3  # each order request claimed


def test_overlapping_calls_each_get_their_own_reply(real_redis: RealRedis, venue: PaperVenue) -> None:
    paper = PaperClient(real_redis.client, Keys())

    async def scenario() -> None:
        await paper.place_order(_buy("abc123def456o1", "2"))
        positions, order, missing, balance = await asyncio.gather(
            paper.positions(),
            paper.get_order(BTC, "abc123def456o1"),
            paper.get_order(BTC, "x1"),
            paper.balance(),
        )
        assert [p.size for p in positions] == [Decimal(2)]
        assert order is not None and order.cl_ord_id == "abc123def456o1"
        assert missing is None
        assert balance and balance[0].ccy == "USDT"

    asyncio.run(scenario())


def test_an_abandoned_call_leaves_no_reply_for_the_next(real_redis: RealRedis, venue: PaperVenue) -> None:
    paper = PaperClient(real_redis.client, Keys())

    async def scenario() -> None:
        await paper.place_order(_buy("abc123def456o1"))
        call = asyncio.ensure_future(paper.get_order(BTC, "abc123def456o1"))
        await asyncio.sleep(0)  # sent, its reply not read
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(3):  # the same pool of connections: each reply is the one asked for
            assert [p.size for p in await paper.positions()] == [Decimal(1)]
            assert await paper.get_order(BTC, "nosuchid") is None

    asyncio.run(scenario())


def test_no_answer_is_unknown_for_an_order_and_unreadable_for_a_read(real_redis: RealRedis) -> None:
    paper = PaperClient(real_redis.client, Keys(), timeout_s=0.1)  # no venue is running
    with pytest.raises(ExchangeUnavailable):
        asyncio.run(paper.positions())
    with pytest.raises(OutcomeUnknown):
        asyncio.run(paper.place_order(_buy("abc123def456o1")))


def test_the_venue_answers_a_replayed_read_but_never_executes_an_order_twice(real_redis: RealRedis) -> None:
    client = real_redis.client
    client.xadd(Keys().ticks(BTC), {"px": "50000", "ts": repr(time.time())})
    venue = _venue(client)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(venue.start())
    loop.run_until_complete(venue.run_once(block_ms=1))
    read = {"id": "r1", "op": "positions", "args": "{}", "cid": "", "sent": "0"}
    args = msgspec.json.encode({"req": _buy("abc123def456o1")}).decode()
    order = {"id": "r2", "op": "place_order", "args": args, "cid": "abc123def456o1", "sent": "0"}
    for _ in range(2):  # each served twice, as after a crash before its removal from the stream
        loop.run_until_complete(venue._serve(read))
        loop.run_until_complete(venue._serve(order))
    loop.close()
    assert client.llen("scalper:paper:reply:r1") == 2
    assert client.llen("scalper:paper:reply:r2") == 1
    assert len([f for f in venue.exchange.fills() if f.get("cl_ord_id") == "abc123def456o1"]) == 1


def test_the_lean_positions_read_matches_the_snapshot(real_redis: RealRedis) -> None:
    """`positions` (the read a harvest job and the reconciler make) reads the positions alone, and finds
    what the full snapshot finds, with pending orders and stops around."""
    client = real_redis.client
    venue = _venue(client)
    ex, loop = venue.exchange, asyncio.new_event_loop()
    assert ex.state.positions() == []
    loop.run_until_complete(ex.on_quote(BTC, Decimal(50000), Decimal(50000), time.time()))
    loop.run_until_complete(ex.on_quote("ETH-USDT-SWAP", Decimal(3000), Decimal(3000), time.time()))
    loop.run_until_complete(ex.place_order(_buy("abc123def456o1")))
    loop.run_until_complete(ex.place_order(OrderRequest(inst_id="ETH-USDT-SWAP", cl_ord_id="xyz789uvw012o1",
                                                        side=OrderSide.SELL, size=Decimal(3))))  # fmt: skip
    loop.run_until_complete(ex.place_stop(BTC, "abc123def456s1", OrderSide.SELL, Decimal(40000), Decimal(1)))
    limit = OrderRequest(inst_id=BTC, cl_ord_id="abc123def456h1", side=OrderSide.SELL, size=Decimal(1),
                         ord_type=OrderType.LIMIT, price=Decimal(60000), reduce_only=True)  # fmt: skip
    loop.run_until_complete(ex.place_order(limit))
    snap = ex.state.snapshot()
    assert snap.orders and snap.stops
    assert ex.state.positions() == list(snap.positions.values())
    assert [(p.inst_id, p.side, p.size) for p in loop.run_until_complete(ex.positions())] == [
        (BTC, "long", Decimal(1)), ("ETH-USDT-SWAP", "short", Decimal(3))]  # fmt: skip
    loop.close()

"""The paper venue's records are bounded (issue 10, defect 12): finished orders, stops that are no longer
live, fills and served requests go after `exchange.paper_history_s`; within it the venue answers as before,
and what is live (an open position, its stop, a resting order) is never removed. Real redis-server, the
venue in a thread as in the account process, driven over the wire by PaperClient."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal as D

import pytest
import redis

from config.settings import DAY_S
from exchanges.base import OrderRequest, OrderSide, OrderType
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.paper.client import PaperClient
from exchanges.paper.retention import PaperRetention
from exchanges.paper.venue import PaperVenue
from exchanges.paper.wire import served_key
from statemachines.keys import Keys
from tests.clock import Clock
from tests.conftest import RealRedis

pytestmark = pytest.mark.redis

BTC = "BTC-USDT-SWAP"
HISTORY = 7 * DAY_S  # the default: OKX's orders history


@dataclass
class Running:
    venue: PaperVenue
    clock: Clock
    client: redis.Redis  # the test's own

    def keys(self, kind: str) -> set[str]:
        """Ids of the account's `kind` (order, stop) hashes."""
        match = self.venue.exchange.state.key(kind, "*")
        return {k.decode().rsplit(":", 1)[1] for k in self.client.scan_iter(match=match)}

    def stream_len(self, which: str) -> int:
        key = self.venue.exchange.state.key("fills") if which == "fills" else served_key(Keys())
        return int(self.client.xlen(key))

    def pass_at(self, seconds: float) -> None:
        """Move the venue's clock and wait until its retention has made a pass at that time."""
        now = self.clock.advance(seconds)
        deadline = time.monotonic() + 10
        while self.venue.retention.last_run < now:
            assert time.monotonic() < deadline, "the venue made no retention pass"
            time.sleep(0.01)


@pytest.fixture
def running(real_redis: RealRedis) -> Iterator[Running]:
    client = redis.Redis(unix_socket_path=real_redis.socket_path)
    client.xadd(Keys().ticks(BTC), {"px": "50000", "ts": repr(time.time())})
    clock = Clock(time.time())
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"), clock=clock)
    venue = PaperVenue(client, ex, Keys(), [BTC], history_s=HISTORY)
    stop = threading.Event()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(venue.start())
        while not stop.is_set():
            loop.run_until_complete(venue.run_once(block_ms=5))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Running(venue, clock, real_redis.client)
    finally:
        stop.set()
        thread.join(timeout=5)
        client.close()


def _order(cid: str, side: OrderSide, *, price: D | None = None) -> OrderRequest:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(inst_id=BTC, cl_ord_id=cid, side=side, size=D("1"), ord_type=kind, price=price)


async def _round_trips(api: PaperClient, n: int) -> None:
    """What n positions leave at the venue: entry, protective stop, close, stop cancelled."""
    for i in range(n):
        await api.place_order(_order(f"e{i}", OrderSide.BUY))
        await api.place_stop(BTC, f"s{i}", OrderSide.SELL, D("40000"), D("1"))
        await api.close_position(BTC, f"c{i}", OrderSide.SELL, "isolated")
        await api.cancel_stop(BTC, f"s{i}")


def test_finished_records_go_after_the_history_and_what_is_live_stays(
    real_redis: RealRedis, running: Running
) -> None:
    api = PaperClient(redis.Redis(unix_socket_path=real_redis.socket_path), Keys(), timeout_s=5)
    run = asyncio.new_event_loop().run_until_complete

    run(_round_trips(api, 20))
    run(api.place_order(_order("live1", OrderSide.BUY)))  # an open position...
    run(api.place_stop(BTC, "livestop", OrderSide.SELL, D("40000"), D("1")))  # ...with its stop
    run(api.place_order(_order("rest1", OrderSide.BUY, price=D("30000"))))  # a resting order
    assert len(running.keys("order")) == 42 and len(running.keys("stop")) == 21
    assert running.stream_len("fills") == 41 and running.stream_len("served") == 83

    running.pass_at(DAY_S)  # inside the history: the venue answers as before
    assert len(running.keys("order")) == 42 and len(running.keys("stop")) == 21
    assert run(api.get_order(BTC, "e0")) is not None
    assert {"e0", "c19", "live1"} <= {o.cl_ord_id for o in run(api.recent_orders(BTC))}

    running.pass_at(HISTORY)  # past it for everything written so far

    assert running.keys("order") == {"rest1"} and running.keys("stop") == {"livestop"}
    assert running.stream_len("fills") == 0 and running.stream_len("served") == 0
    assert run(api.get_order(BTC, "e0")) is None
    assert [o.cl_ord_id for o in run(api.pending_orders())] == ["rest1"]
    assert [s.algo_cl_ord_id for s in run(api.stops())] == ["livestop"]
    assert [(p.side, p.size) for p in run(api.positions())] == [("long", D("1"))]
    done = running.venue.exchange.state
    assert running.client.zcard(done.key("orders", "done")) == 0
    assert running.client.zcard(done.key("stops", "done")) == 0


def test_records_written_before_the_queues_existed_are_queued_once_and_removed_after_the_history(
    real_redis: RealRedis,
) -> None:
    client = real_redis.client
    clock = Clock(time.time())
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"), clock=clock)
    run = asyncio.new_event_loop().run_until_complete
    run(ex.on_quote(BTC, D("50000"), D("50000"), clock()))
    run(ex.place_order(_order("old1", OrderSide.BUY)))
    run(ex.close_position(BTC, "old2", OrderSide.SELL, "isolated"))
    run(ex.place_order(_order("rest1", OrderSide.BUY, price=D("30000"))))
    client.delete(ex.state.key("orders", "done"))  # as an account written before this version
    retention = PaperRetention(ex.state, served_key(Keys()), HISTORY)

    assert retention.run_once(clock.advance(HISTORY + 1)) == 2  # queued now, not removed: only the fills
    assert client.exists(ex.state.key("order", "old1"), ex.state.key("order", "old2")) == 2
    assert retention.run_once(clock.advance(HISTORY + 1)) == 2
    assert not client.exists(ex.state.key("order", "old1"), ex.state.key("order", "old2"))
    assert run(ex.get_order(BTC, "rest1")) is not None  # still resting: never queued


def test_keeping_the_history_forever_removes_nothing(real_redis: RealRedis) -> None:
    client = real_redis.client
    clock = Clock(time.time())
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"), clock=clock)
    run = asyncio.new_event_loop().run_until_complete
    run(ex.on_quote(BTC, D("50000"), D("50000"), clock()))
    run(ex.place_order(_order("e1", OrderSide.BUY)))
    assert PaperRetention(ex.state, served_key(Keys()), 0).run_once(clock.advance(1000 * DAY_S)) is None
    assert run(ex.get_order(BTC, "e1")) is not None and len(ex.fills()) == 1

"""The paper venue as a process: requests over Redis, executed at most once, even across a restart."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec

from config.settings import Settings
from exchanges.base import OrderRequest, OrderSide
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.paper.venue import PaperVenue
from statemachines.keys import Keys
from tests.conftest import RealRedis
from workers.account import quote_guard

BTC = "BTC-USDT-SWAP"


def _venue(real_redis: RealRedis) -> PaperVenue:
    ex = PaperExchange(real_redis.client, DEFAULT_INSTRUMENTS, taker_fee=Decimal("0.0005"),
                       maker_fee=Decimal("0.0002"))  # fmt: skip
    return PaperVenue(real_redis.client, ex, Keys(), [BTC])


def test_a_request_executed_just_before_a_crash_is_not_executed_again(real_redis: RealRedis) -> None:
    """Regression (chaos suite, CI run): the restarted venue replayed its request backlog, and an entry
    executed just before the kill was executed a second time, as a second order with the same id."""
    client = real_redis.client
    client.xadd(Keys().ticks(BTC), {"px": "50000", "ts": "1700000000"})
    req = OrderRequest(inst_id=BTC, cl_ord_id="abc123def456o1", side=OrderSide.BUY, size=Decimal("1"))
    args = msgspec.json.encode({"req": req})
    fields = {"id": "r1", "op": "place_order", "args": args, "cid": req.cl_ord_id, "sent": "0"}
    loop = asyncio.new_event_loop()
    first = _venue(real_redis)
    loop.run_until_complete(first.start())
    client.xadd("scalper:paper:requests", fields)
    # Executed, then killed before the request was removed from the stream:
    loop.run_until_complete(
        first._serve({k: (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()})
    )
    assert client.xlen("scalper:paper:requests") == 1

    second = _venue(real_redis)  # the restarted venue
    loop.run_until_complete(second.start())
    for _ in range(3):
        loop.run_until_complete(second.run_once(block_ms=1))
    fills = [f for f in second.exchange.fills() if f.get("cl_ord_id") == req.cl_ord_id]
    assert len(fills) == 1  # one order for the id, never two
    assert client.xlen("scalper:paper:requests") == 0  # the replayed copy was skipped and removed

    # A request that arrived while the venue was down, never served, is still answered after the restart.
    waiting = {**fields, "id": "r2", "op": "positions", "args": b"{}"}
    client.xadd("scalper:paper:requests", waiting)
    third = _venue(real_redis)
    loop.run_until_complete(third.start())
    loop.run_until_complete(third.run_once(block_ms=1))
    assert client.llen("scalper:paper:reply:r2") == 1
    loop.close()


def test_one_bad_print_in_the_feed_neither_triggers_a_stop_nor_liquidates(real_redis: RealRedis) -> None:
    """Regression (paper CI chaos pass, seed 111654074): a poison tick at 1/10,000 of the price reached the
    paper venue, which took it as the market and liquidated a long at 4.69. The engine's tick guard dropped
    it; the venue now uses the same guard (workers/account.quote_guard): a single bad print moves nothing,
    and a real move is taken once confirmed, as the engine takes it."""
    client = real_redis.client
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=Decimal("0.0005"), maker_fee=Decimal("0.0002"),
                       default_lever=5)  # fmt: skip
    settings = Settings(_env_file=None, symbols={BTC: {}})  # type: ignore[call-arg,dict-item]
    venue = PaperVenue(client, ex, Keys(), [BTC], accept=quote_guard(settings))
    loop = asyncio.new_event_loop()
    ticks, ts = Keys().ticks(BTC), 1_700_000_000.0

    def tick(px: str) -> None:
        nonlocal ts
        ts += 1
        client.xadd(ticks, {"px": px, "ts": repr(ts)})
        loop.run_until_complete(venue.run_once(block_ms=1))

    tick("50000")
    loop.run_until_complete(venue.start())
    tick("50000")
    req = OrderRequest(inst_id=BTC, cl_ord_id="abc123def456o1", side=OrderSide.BUY, size=Decimal("1"))
    loop.run_until_complete(ex.place_order(req))
    stop = ex.place_stop(BTC, "abc123def456s1", OrderSide.SELL, Decimal("47500"), Decimal("1"))
    loop.run_until_complete(stop)
    tick("5.0")  # one bad print, far through the stop and the liquidation price
    held = loop.run_until_complete(ex.positions())
    assert [p.size for p in held] == [Decimal("1")] and venue.dropped == 1
    assert [s.state for s in loop.run_until_complete(ex.stops())] == ["live"]
    for px in ("50010", "47000", "47010", "47005"):  # a real move: taken once three ticks agree
        tick(px)
    assert loop.run_until_complete(ex.positions()) == []  # the stop triggered at the confirmed price
    assert not any(f.get("liq") == "1" for f in ex.fills())
    loop.close()

"""PaperExchange: fills, fees, PnL and liquidation against hand-computed values, stops, injected faults,
events, and an account that survives a restart (real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import TYPE_CHECKING, Any

import fakeredis
import pytest
import redis

from exchanges.base import (
    DuplicateClientId,
    EventKind,
    Exchange,
    ExchangeError,
    ExchangeEvent,
    ExchangeUnavailable,
    Instrument,
    InsufficientMargin,
    LotSizeError,
    NothingToClose,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
    StopOrder,
)
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.paper.state import from_hash, to_hash

if TYPE_CHECKING:
    from tests.conftest import RealRedis

BTC = "BTC-USDT-SWAP"
ETH = "ETH-USDT-SWAP"
BUY, SELL = OrderSide.BUY, OrderSide.SELL
T0 = 1_700_000_000.0


def make(client: Any, **kw: Any) -> PaperExchange:
    opts: dict[str, Any] = {"taker_fee": D("0.0005"), "maker_fee": D("0.0002"), "clock": lambda: T0}
    return PaperExchange(client, DEFAULT_INSTRUMENTS, **(opts | kw))


@pytest.fixture
async def ex(fake_redis: fakeredis.FakeRedis) -> AsyncIterator[PaperExchange]:
    venue = make(fake_redis)
    await venue.set_leverage(BTC, 10, "isolated")
    await venue.on_quote(BTC, D(50000), D(50000), T0)
    yield venue
    await venue.close()


def mkt(cl: str, side: OrderSide, size: str, **kw: Any) -> OrderRequest:
    return OrderRequest(inst_id=kw.pop("inst_id", BTC), cl_ord_id=cl, side=side, size=D(size), **kw)


def lmt(cl: str, side: OrderSide, size: str, px: str, **kw: Any) -> OrderRequest:
    return mkt(cl, side, size, ord_type=OrderType.LIMIT, price=D(px), **kw)


async def cash(ex: PaperExchange) -> D:
    return ex.state.account().cash


def drain(sub: AsyncIterator[ExchangeEvent]) -> list[ExchangeEvent]:
    q = sub.queue  # type: ignore[attr-defined]
    return [q.get_nowait() for _ in range(q.qsize())]


def order_states(events: list[ExchangeEvent]) -> list[tuple[str, str, D]]:
    orders = [o for e in events if e.kind == EventKind.ORDER for o in e.orders]
    return [(o.cl_ord_id, o.state.value, o.filled) for o in orders]


def test_implements_the_interface(fake_redis: fakeredis.FakeRedis) -> None:
    venue: Exchange = make(fake_redis)  # type-checks against the Protocol
    assert venue is not None


# --- fees, PnL, liquidation price against hand-computed values ---


async def test_long_round_trip_by_hand(ex: PaperExchange) -> None:
    # Buy 10 BTC contracts (0.1 BTC) at the 50,000 ask, 10x: margin 500, taker fee 5,000 × 0.05 % = 2.5.
    order = await ex.place_order(mkt("long1", BUY, "10"))
    assert (order.state, order.filled, order.avg_px) == (OrderState.FILLED, D(10), D(50000))
    assert order.fee == D("-2.5")
    assert await cash(ex) == D("9497.5")  # 10,000 − 500 − 2.5
    [pos] = await ex.positions()
    assert (pos.side, pos.size, pos.avg_px, pos.lever, pos.fee) == ("long", D(10), D(50000), D(10), D("-2.5"))
    # liqPx = (500 − 5,000) / (0.1 × (0.004 + 0.0005 − 1)) = 45,203.4153… (see test_paper_ledger)
    assert pos.liq_px is not None and pos.liq_px.quantize(D("0.01")) == D("45203.42")
    # Mark 50,500 (mid of 50,490/50,510): upl = 500 × 0.1 = 50; equity = 9,497.5 + 500 + 50 = 10,047.5.
    await ex.on_quote(BTC, D(50490), D(50510), T0 + 1)
    [pos] = await ex.positions()
    assert (pos.mark_px, pos.upl) == (D(50500), D(50))
    [bal] = await ex.balance()
    assert (bal.equity, bal.available) == (D("10047.5"), D("9497.5"))
    # Close at the 51,000 bid: PnL (51,000 − 50,000) × 0.1 = +100, fee 0.1 × 51,000 × 0.05 % = 2.55.
    await ex.on_quote(BTC, D(51000), D(51001), T0 + 2)
    close = await ex.place_order(mkt("close1", SELL, "10", reduce_only=True))
    assert (close.state, close.avg_px) == (OrderState.FILLED, D(51000))
    assert (close.pnl, close.fee) == (D(100), D("-2.55"))
    assert await ex.positions() == []
    # 10,000 + 100 − 2.5 − 2.55 = 10,094.95
    assert await cash(ex) == D("10094.95")
    assert [(f["side"], f["px"], f["pnl"], f["fee"]) for f in ex.fills()] == [
        ("buy", "50000", "0", "-2.5"),
        ("sell", "51000", "100", "-2.55"),
    ]


async def test_short_round_trip_by_hand(ex: PaperExchange) -> None:
    # Sell 10 at the 50,000 bid: margin 500, fee 2.5; liqPx = 5,500 / 0.10045 = 54,753.6087…
    await ex.place_order(mkt("short1", SELL, "10"))
    [pos] = await ex.positions()
    assert (pos.side, pos.size) == ("short", D(10))
    assert pos.liq_px is not None and pos.liq_px.quantize(D("0.01")) == D("54753.61")
    # Buy back at the 49,000 ask: PnL (49,000 − 50,000) × 0.1 × (−1) = +100; fee 0.1 × 49,000 × 0.05 % = 2.45.
    await ex.on_quote(BTC, D(48999), D(49000), T0 + 1)
    close = await ex.place_order(mkt("close2", BUY, "10", reduce_only=True))
    assert (close.pnl, close.fee) == (D(100), D("-2.45"))
    assert await cash(ex) == D("10095.05")  # 10,000 + 100 − 2.5 − 2.45


async def test_slippage_and_maker_fill(fake_redis: fakeredis.FakeRedis) -> None:
    ex = make(fake_redis, slippage_bps=D(10))
    await ex.on_quote(ETH, D("2999.00"), D("3000.00"), T0)
    # Market buy 1 ETH contract: 3,000 × (1 + 10 bps) = 3,003; fee 0.1 × 3,003 × 0.05 % = 0.15015.
    buy = await ex.place_order(mkt("eth1", BUY, "1", inst_id=ETH))
    assert (buy.avg_px, buy.fee) == (D("3003"), D("-0.15015"))
    # A resting limit sell at 3,010 fills at its own price with the maker fee once the bid reaches it:
    # 0.1 × 3,010 × 0.02 % = 0.0602; PnL (3,010 − 3,003) × 0.1 = 0.7.
    sell = await ex.place_order(lmt("eth2", SELL, "1", "3010.00", inst_id=ETH, reduce_only=True))
    assert sell.state == OrderState.LIVE
    await ex.on_quote(ETH, D("3009.99"), D("3010.50"), T0 + 1)
    assert (await ex.get_order(ETH, "eth2")).state == OrderState.LIVE  # type: ignore[union-attr]
    await ex.on_quote(ETH, D("3010.00"), D("3010.50"), T0 + 2)
    done = await ex.get_order(ETH, "eth2")
    assert done is not None and (done.state, done.avg_px, done.fee, done.pnl) == (
        OrderState.FILLED,
        D("3010.00"),
        D("-0.0602"),
        D("0.7"),
    )
    assert ex.fills()[-1]["exec_type"] == "M"


async def test_limit_order_holds_margin_until_filled_or_cancelled(ex: PaperExchange) -> None:
    # Buy 10 @ 49,000 at 10x: holds 490 margin + 0.1 × 49,000 × 0.05 % = 2.45 fee → available 9,507.55.
    await ex.place_order(lmt("bid1", BUY, "10", "49000"))
    [bal] = await ex.balance()
    assert (bal.equity, bal.available) == (D(10000), D("9507.55"))
    await ex.cancel_order(BTC, "bid1")
    [bal] = await ex.balance()
    assert bal.available == D(10000)
    with pytest.raises(ExchangeError) as err:
        await ex.cancel_order(BTC, "bid1")
    assert err.value.code == "51400"
    with pytest.raises(OrderNotFound):
        await ex.cancel_order(BTC, "nosuch")


# --- liquidation ---


async def test_long_is_liquidated_at_the_computed_price(ex: PaperExchange) -> None:
    await ex.place_order(mkt("l1", BUY, "10"))
    await ex.place_stop(BTC, "slA", SELL, D("40000"), D(10))  # below the liquidation price: never reached
    await ex.place_order(lmt("tp1", SELL, "10", "60000", reduce_only=True))
    sub = ex.events()
    # liqPx 45,203.4153…: a mark of 45,203.5 is above it, 45,203.4 is below.
    await ex.on_quote(BTC, D("45203.5"), D("45203.5"), T0 + 1)
    assert len(await ex.positions()) == 1
    await ex.on_quote(BTC, D("45203.4"), D("45203.4"), T0 + 2)
    assert await ex.positions() == []
    events = drain(sub)
    [liq] = [e for e in events if e.extra.get("category") == "full_liquidation"]
    [order] = liq.orders
    assert (order.side, order.size, order.avg_px, order.reduce_only) == (SELL, D(10), D("45203.4"), True)
    # The whole 500 margin is lost: PnL (45,203.4 − 50,000) × 0.1 = −479.66, penalty −20.34.
    assert (order.pnl, order.fee) == (D("-479.66"), D("-20.34"))
    assert ex.fills()[-1]["liq"] == "1" and ex.fills()[-1]["trade_id"].startswith("-")
    # Cash only lost the opening fee: the margin had already left it. 10,000 − 500 − 2.5.
    assert await cash(ex) == D("9497.5")
    [bal] = await ex.balance()
    assert bal.equity == D("9497.5")
    # The position's reduce-only order and stop went with it.
    assert await ex.pending_orders() == [] and await ex.stops() == []
    assert ("tp1", "canceled", D(0)) in order_states(events)
    flat = [p for e in events if e.kind == EventKind.POSITION for p in e.positions]
    assert flat[-1].size == 0


async def test_short_is_liquidated_at_the_computed_price(ex: PaperExchange) -> None:
    await ex.place_order(mkt("s1", SELL, "10"))
    # liqPx 54,753.6087…
    await ex.on_quote(BTC, D("54753.6"), D("54753.6"), T0 + 1)
    assert len(await ex.positions()) == 1
    await ex.on_quote(BTC, D("54753.7"), D("54753.7"), T0 + 2)
    assert await ex.positions() == []
    fill = ex.fills()[-1]
    # (50,000 − 54,753.7) × 0.1 = −475.37; the rest of the 500 is the penalty.
    assert (fill["side"], fill["pnl"], fill["fee"], fill["liq"]) == ("buy", "-475.37", "-24.63", "1")


# --- protective stops ---


async def test_protective_stop_triggers_and_closes_reduce_only(ex: PaperExchange) -> None:
    await ex.place_order(mkt("e1", BUY, "10"))
    stop = await ex.place_stop(BTC, "sl1", SELL, D("49000"), D(10))
    assert [s.algo_cl_ord_id for s in await ex.stops()] == ["sl1"]
    await ex.on_quote(BTC, D(49400), D(49600), T0 + 1)  # mark 49,500: above the trigger
    assert len(await ex.positions()) == 1
    await ex.move_stop(BTC, "sl1", D("49100"))
    await ex.on_quote(BTC, D(49090), D(49110), T0 + 2)  # mark 49,100: triggers
    assert await ex.positions() == [] and await ex.stops() == []
    assert ex.state.stop("sl1").state == "effective"  # type: ignore[union-attr]
    # The stop's market order carries its algoClOrdId; it sold at the 49,090 bid:
    # PnL (49,090 − 50,000) × 0.1 = −91; fee 0.1 × 49,090 × 0.05 % = 2.4545.
    order = await ex.get_order(BTC, "sl1")
    assert order is not None and order.reduce_only and order.state == OrderState.FILLED
    assert (order.avg_px, order.pnl, order.fee) == (D(49090), D(-91), D("-2.4545"))
    assert stop.algo_id != order.ord_id


async def test_stop_fill_is_found_through_the_stop_and_stamped_by_the_venue_clock(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    now = [T0]
    ex = make(fake_redis, clock=lambda: now[0])
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    await ex.place_order(mkt("e1", BUY, "10"))
    await ex.place_stop(BTC, "sl1", SELL, D("49000"), D(10))
    assert await ex.stop_fill(BTC, "sl1") is None  # live: it placed nothing yet
    assert await ex.stop_fill(BTC, "nosuch") is None
    now[0] = T0 + 5
    # A fast replay's quote is stamped hours ahead of the venue: what the quote triggers is stamped by
    # the venue's clock, as the orders placed on request are.
    await ex.on_quote(BTC, D(48900), D(48900), T0 + 7200)
    fill = await ex.stop_fill(BTC, "sl1")
    assert fill is not None and (fill.filled, fill.algo_cl_ord_id) == (D(10), "sl1")
    assert fill.u_time_ms == int((T0 + 5) * 1000) == int(ex.fills()[-1]["ts_ms"])
    assert ex.state.stop("sl1").order_ids == (fill.ord_id,)  # type: ignore[union-attr]
    # A pending order that already had the stop's id: the stop's order goes by another id, still found.
    await ex.place_order(mkt("e2", BUY, "10"))
    await ex.place_order(lmt("sl2", SELL, "1", "60000", reduce_only=True))
    await ex.place_stop(BTC, "sl2", SELL, D("48000"), D(10))
    await ex.on_quote(BTC, D(47900), D(47900), T0 + 7300)
    fill = await ex.stop_fill(BTC, "sl2")
    assert fill is not None and fill.cl_ord_id.startswith("algo") and fill.algo_cl_ord_id == "sl2"
    assert fill.filled == D(10) and (await ex.get_order(BTC, "sl2")).state == OrderState.LIVE  # type: ignore[union-attr]


async def test_a_late_request_is_carried_out_when_its_time_comes(fake_redis: fakeredis.FakeRedis) -> None:
    """The "late" fault: the caller sees an unknown outcome at once, everything else is served meanwhile,
    and the request is carried out at the venue's first quote (or land_held) after its time."""
    now = [T0]
    ex = make(fake_redis, clock=lambda: now[0])
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    await ex.place_order(mkt("e1", BUY, "10"))
    ex.inject("late", op="place_stop", seconds=2)
    with pytest.raises(OutcomeUnknown):
        await ex.place_stop(BTC, "sl1", SELL, D("49000"), D(10))
    await ex.place_order(mkt("x1", SELL, "10", reduce_only=True))  # served while the stop is held
    assert await ex.positions() == [] and await ex.stops() == []
    now[0] = T0 + 1.9
    await ex.on_quote(BTC, D(50000), D(50000), now[0])
    assert await ex.stops() == []
    now[0] = T0 + 2
    assert await ex.land_held() == 1
    [stop] = await ex.stops()
    assert (stop.algo_cl_ord_id, stop.state) == ("sl1", "live")  # its position is long gone
    ex.inject("late", op="place_stop", seconds=1)
    with pytest.raises(OutcomeUnknown):
        await ex.place_stop(BTC, "sl1", SELL, D("49000"), D(10))  # a duplicate: refused when it lands
    now[0] = T0 + 3
    await ex.on_quote(BTC, D(50000), D(50000), now[0])
    assert [s.algo_cl_ord_id for s in await ex.stops()] == ["sl1"]


async def test_stop_larger_than_the_position_never_flips_it(ex: PaperExchange) -> None:
    await ex.place_order(mkt("e2", BUY, "10"))
    await ex.place_stop(BTC, "sl2", SELL, D("49000"), D(10))
    await ex.place_order(mkt("half", SELL, "6", reduce_only=True))
    await ex.on_quote(BTC, D(48900), D(48900), T0 + 1)
    assert await ex.positions() == []
    order = await ex.get_order(BTC, "sl2")
    assert order is not None and (order.filled, order.state) == (D(4), OrderState.CANCELED)


async def test_stop_rules(ex: PaperExchange) -> None:
    with pytest.raises(ExchangeError) as err:
        await ex.place_stop(BTC, "bad1", SELL, D("50100"), D(10))  # a sell stop above the last price
    assert err.value.code == "51280"
    with pytest.raises(ExchangeError) as err:
        await ex.place_stop(BTC, "bad2", BUY, D("49900"), D(10))
    assert err.value.code == "51278"
    await ex.place_stop(BTC, "ok1", SELL, D("49000"), D(1))
    with pytest.raises(DuplicateClientId):
        await ex.place_stop(BTC, "ok1", SELL, D("48000"), D(1))
    await ex.cancel_stop(BTC, "ok1")
    with pytest.raises(OrderNotFound):
        await ex.cancel_stop(BTC, "ok1")
    # A triggered stop whose position is already gone does nothing.
    await ex.place_stop(BTC, "ok2", SELL, D("49000"), D(1))
    await ex.on_quote(BTC, D(48000), D(48000), T0 + 1)
    assert await ex.positions() == []
    assert (await ex.get_order(BTC, "ok2")).state == OrderState.CANCELED  # type: ignore[union-attr]


# --- reduce-only ---


async def test_reduce_only_never_increases_or_flips(ex: PaperExchange) -> None:
    with pytest.raises(NothingToClose) as flat:
        await ex.place_order(mkt("r0", SELL, "1", reduce_only=True))
    assert flat.value.code == "51169"
    await ex.place_order(mkt("r1", BUY, "10"))
    with pytest.raises(ExchangeError) as same:
        await ex.place_order(mkt("r2", BUY, "1", reduce_only=True))
    assert same.value.code == "51170"
    # Oversized reduce-only: capped at the position, which ends flat, not short.
    close = await ex.place_order(mkt("r3", SELL, "15", reduce_only=True))
    assert (close.size, close.filled, close.state) == (D(10), D(10), OrderState.FILLED)
    assert await ex.positions() == []
    # A resting reduce-only order whose position closed meanwhile is cancelled, never opens.
    await ex.place_order(mkt("r4", BUY, "5"))
    await ex.place_order(lmt("r5", SELL, "5", "51000", reduce_only=True))
    await ex.place_order(mkt("r6", SELL, "5", reduce_only=True))
    await ex.on_quote(BTC, D(51000), D(51000), T0 + 1)
    assert await ex.positions() == []
    assert (await ex.get_order(BTC, "r5")).state == OrderState.CANCELED  # type: ignore[union-attr]


async def test_plain_order_flips_in_net_mode(ex: PaperExchange) -> None:
    await ex.place_order(mkt("f1", BUY, "10"))
    await ex.place_order(mkt("f2", SELL, "15"))
    [pos] = await ex.positions()
    assert (pos.side, pos.size) == ("short", D(5))


async def test_long_short_mode(fake_redis: fakeredis.FakeRedis) -> None:
    ex = make(fake_redis, pos_mode="long_short")
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    with pytest.raises(ExchangeError) as err:
        await ex.place_order(mkt("h0", BUY, "1"))
    assert err.value.code == "51000"
    await ex.place_order(mkt("h1", BUY, "2", pos_side="long"))
    await ex.place_order(mkt("h2", SELL, "3", pos_side="short"))
    assert sorted((p.pos_side, p.side, p.size) for p in await ex.positions()) == [
        ("long", "long", D(2)),
        ("short", "short", D(3)),
    ]
    with pytest.raises(ExchangeError) as big:
        await ex.place_order(mkt("h3", SELL, "5", pos_side="long"))  # close more than the long
    assert big.value.code == "51112"
    await ex.place_order(mkt("h4", SELL, "2", pos_side="long"))
    assert [(p.pos_side, p.size) for p in await ex.positions()] == [("short", D(3))]


async def test_close_position_closes_what_is_held_when_it_runs(fake_redis: fakeredis.FakeRedis) -> None:
    """OKX close-position: the venue sizes the close from its position as it executes, reduce-only, with
    our client id; flat, it says so (51023); the same id while pending is a duplicate, as for place_order."""
    ex = make(fake_redis)
    await ex.set_leverage(BTC, 10, "isolated")
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    with pytest.raises(NothingToClose) as flat:
        await ex.close_position(BTC, "c0", SELL, "isolated")
    assert flat.value.code == "51023"
    await ex.place_order(mkt("o1", BUY, "3"))
    await ex.place_order(mkt("o2", BUY, "2"))  # more than any one request said: the venue knows 5
    close = await ex.close_position(BTC, "c1", SELL, "isolated")
    assert (close.cl_ord_id, close.side, close.size, close.filled) == ("c1", SELL, D(5), D(5))
    assert close.reduce_only and close.state is OrderState.FILLED
    assert await ex.positions() == []
    assert await ex.get_order(BTC, "c1") == close
    with pytest.raises(NothingToClose):  # run again after it filled: nothing left, no second order
        await ex.close_position(BTC, "c1", SELL, "isolated")
    # Net mode: the net position is closed whichever its direction, as at OKX.
    await ex.place_order(mkt("o3", SELL, "4"))
    short_close = await ex.close_position(BTC, "c2", BUY, "isolated")
    assert (short_close.side, short_close.filled) == (BUY, D(4)) and await ex.positions() == []
    # A timeout that executed: the order exists under our id, to be found by the query.
    await ex.place_order(mkt("o4", BUY, "1"))
    ex.inject("timeout", op="close_position")
    with pytest.raises(OutcomeUnknown):
        await ex.close_position(BTC, "c3", SELL, "isolated")
    assert (await ex.get_order(BTC, "c3")).filled == D(1)  # type: ignore[union-attr]
    # Half filled, the rest still working: the same client id again is a duplicate, not a second close.
    await ex.place_order(mkt("o5", BUY, "2"))
    ex.inject("partial", op="close_position", rest="live")
    half = await ex.close_position(BTC, "c4", SELL, "isolated")
    assert (half.state, half.filled) == (OrderState.PARTIALLY_FILLED, D(1))
    with pytest.raises(DuplicateClientId):
        await ex.close_position(BTC, "c4", SELL, "isolated")


async def test_close_position_in_long_short_mode(fake_redis: fakeredis.FakeRedis) -> None:
    ex = make(fake_redis, pos_mode="long_short")
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    await ex.place_order(mkt("h1", BUY, "2", pos_side="long"))
    await ex.place_order(mkt("h2", SELL, "3", pos_side="short"))
    with pytest.raises(ExchangeError) as no_side:
        await ex.close_position(BTC, "c0", SELL, "isolated")
    assert no_side.value.code == "51000"
    close = await ex.close_position(BTC, "c1", SELL, "isolated", pos_side="long")
    assert (close.side, close.filled, close.pos_side) == (SELL, D(2), "long")
    assert [(p.pos_side, p.size) for p in await ex.positions()] == [("short", D(3))]


# --- validation ---


async def test_order_validation(ex: PaperExchange, fake_redis: fakeredis.FakeRedis) -> None:
    for cl in ("bad-id", "x" * 33, ""):
        with pytest.raises(ExchangeError) as err:
            await ex.place_order(mkt(cl, BUY, "1"))
        assert err.value.code == "51000"
    with pytest.raises(LotSizeError) as lot:
        await ex.place_order(mkt("lot1", BUY, "0.15"))
    assert lot.value.code == "51121"
    with pytest.raises(InsufficientMargin) as margin:
        await ex.place_order(mkt("big1", BUY, "2000"))  # 2,000 × 0.01 × 50,000 / 10 = 100,000 margin
    assert margin.value.code == "51008"
    with pytest.raises(ExchangeError) as unknown:
        await ex.place_order(mkt("u1", BUY, "1", inst_id="DOGE-USDT-SWAP"))
    assert unknown.value.code == "51001"
    with pytest.raises(ExchangeError) as no_quote:
        await ex.place_order(mkt("q1", BUY, "1", inst_id=ETH))
    assert no_quote.value.code == "52000"
    big_min = Instrument("X-USDT-SWAP", D("1"), D("0.1"), D("1"), D("0.1"), 10)
    other = PaperExchange(fake_redis, [big_min], prefix="o", taker_fee=D(0), maker_fee=D(0), mmr=D("0.004"))
    with pytest.raises(LotSizeError) as small:
        await other.place_order(lmt("m1", BUY, "0.5", "1", inst_id="X-USDT-SWAP"))
    assert small.value.code == "51020"


# --- injected faults ---


async def test_partial_fill_is_reported_then_completes(ex: PaperExchange) -> None:
    sub = ex.events()
    ex.inject("partial", fraction=D("0.3"), rest="live")
    order = await ex.place_order(mkt("p1", BUY, "10"))
    assert (order.state, order.filled) == (OrderState.PARTIALLY_FILLED, D(3))
    [pos] = await ex.positions()
    assert pos.size == D(3)
    assert [o.cl_ord_id for o in await ex.pending_orders()] == ["p1"]
    await ex.on_quote(BTC, D(50010), D(50020), T0 + 1)  # the rest fills on the next quote, at 50,020
    done = await ex.get_order(BTC, "p1")
    assert done is not None and (done.state, done.filled) == (OrderState.FILLED, D(10))
    # avgPx (3 × 50,000 + 7 × 50,020) / 10 = 50,014
    assert done.avg_px == D(50014)
    assert order_states(drain(sub)) == [
        ("p1", "live", D(0)),
        ("p1", "partially_filled", D(3)),
        ("p1", "filled", D(10)),
    ]


async def test_partial_fill_with_the_rest_cancelled(ex: PaperExchange) -> None:
    ex.inject("partial", fraction=D("0.5"), rest="cancel")
    order = await ex.place_order(mkt("p2", BUY, "3"))
    # half of 3 rounded down to the 0.1 lot: 1.5 filled, the rest cancelled (terminal, filled < size)
    assert (order.state, order.filled, order.size) == (OrderState.CANCELED, D("1.5"), D(3))
    [pos] = await ex.positions()
    assert pos.size == D("1.5")
    assert await ex.pending_orders() == []
    [bal] = await ex.balance()
    assert bal.available == await cash(ex)  # nothing held for the cancelled rest


async def test_timeout_places_the_order_and_get_order_finds_it(ex: PaperExchange) -> None:
    ex.inject("timeout")
    with pytest.raises(OutcomeUnknown):
        await ex.place_order(lmt("t1", BUY, "1", "49000"))
    found = await ex.get_order(BTC, "t1")
    assert found is not None and found.state == OrderState.LIVE
    with pytest.raises(DuplicateClientId) as dup:
        await ex.place_order(lmt("t1", BUY, "1", "49000"))  # the blind retry is refused while pending
    assert dup.value.code == "51016"
    # Once terminal the id may be reused (OKX): get_order then returns the latest order with it.
    await ex.cancel_order(BTC, "t1")
    again = await ex.place_order(lmt("t1", BUY, "2", "48000"))
    latest = await ex.get_order(BTC, "t1")
    assert latest is not None and (latest.ord_id, latest.size) == (again.ord_id, D(2))
    assert found.ord_id != again.ord_id


async def test_lost_request_is_not_placed(ex: PaperExchange) -> None:
    ex.inject("timeout", executed=False)
    with pytest.raises(OutcomeUnknown):
        await ex.place_order(mkt("t2", BUY, "1"))
    assert await ex.get_order(BTC, "t2") is None
    assert await ex.positions() == []


async def test_reject_read_failure_and_delay(ex: PaperExchange) -> None:
    ex.inject("reject", code="51008", msg="injected")
    with pytest.raises(InsufficientMargin):
        await ex.place_order(mkt("x1", BUY, "1"))
    assert await ex.get_order(BTC, "x1") is None
    await ex.place_order(mkt("x2", BUY, "1"))  # the fault was used up
    ex.inject("read_fail", count=2)
    with pytest.raises(ExchangeUnavailable):
        await ex.positions()
    with pytest.raises(ExchangeUnavailable):
        await ex.balance()
    assert len(await ex.positions()) == 1  # unreadable is never "flat"; readable again now
    ex.inject("delay", op="cancel_order", seconds=0.05)
    await ex.place_order(lmt("x3", BUY, "1", "40000"))
    started = time.perf_counter()
    await ex.cancel_order(BTC, "x3")
    assert time.perf_counter() - started >= 0.045
    ex.inject("timeout", op="cancel_order")
    await ex.place_order(lmt("x4", BUY, "1", "40000"))
    with pytest.raises(OutcomeUnknown):
        await ex.cancel_order(BTC, "x4")
    assert (await ex.get_order(BTC, "x4")).state == OrderState.CANCELED  # type: ignore[union-attr]


async def test_delayed_place_lets_other_calls_run(ex: PaperExchange) -> None:
    ex.inject("delay", seconds=0.2)
    slow = asyncio.create_task(ex.place_order(mkt("d1", BUY, "1")))
    for _ in range(3):
        await asyncio.sleep(0)  # let the task start and park in its delay
    assert not slow.done() and await ex.get_order(BTC, "d1") is None
    assert (await slow).state == OrderState.FILLED


# --- events ---


async def test_events_stream(ex: PaperExchange) -> None:
    sub = ex.events()
    await ex.place_order(mkt("ev1", BUY, "1"))
    await ex.close()
    events = [e async for e in sub]
    kinds = [(e.kind, e.snapshot) for e in events]
    assert kinds[:2] == [(EventKind.POSITION, True), (EventKind.ACCOUNT, True)]
    assert kinds[2:] == [
        (EventKind.ORDER, False),
        (EventKind.ORDER, False),
        (EventKind.POSITION, False),
        (EventKind.ACCOUNT, False),
    ]
    fill = events[3]
    assert fill.extra["fill_sz"] == "1" and fill.extra["exec_type"] == "T"
    assert events[4].positions[0].size == 1
    # 1 contract = 0.01 BTC = 500 USDT: margin 50 at 10x, fee 0.25 → 10,000 − 50 − 0.25
    assert events[5].balances[0].available == D("9949.75")


async def test_a_consumer_too_far_behind_is_told_to_reconcile(fake_redis: fakeredis.FakeRedis) -> None:
    ex = make(fake_redis, event_backlog=3)
    await ex.on_quote(BTC, D(50000), D(50000), T0)
    sub = ex.events()  # 2 snapshots queued
    await ex.place_order(mkt("bk1", BUY, "1"))  # live, filled, position, account: overflows at 3
    kinds = [e.kind for e in drain(sub)]
    assert EventKind.RECONNECTED in kinds and len(kinds) <= 3


async def test_set_leverage_moves_isolated_margin(ex: PaperExchange) -> None:
    await ex.place_order(mkt("lv1", BUY, "10"))  # 10x: 500 margin
    await ex.set_leverage(BTC, 20, "isolated")  # 250: 250 back to cash
    assert await cash(ex) == D("9747.5")
    [pos] = await ex.positions()
    assert pos.lever == 20
    with pytest.raises(ExchangeError):
        await ex.set_leverage(BTC, 101, "isolated")
    with pytest.raises(ExchangeError):
        await ex.set_leverage(BTC, 5, "cross")


async def test_state_is_plain_strings_in_redis(ex: PaperExchange, fake_redis: fakeredis.FakeRedis) -> None:
    await ex.place_order(mkt("rd1", BUY, "10"))
    raw = fake_redis.hgetall("scalper:paper:{main}:pos:BTC-USDT-SWAP:net")
    stored = {k.decode(): v.decode() for k, v in raw.items()}
    expected = {"side": "long", "size": "10", "avg_px": "50000", "margin": "500", "lever": "10"}
    assert stored.items() >= expected.items()
    assert fake_redis.hget("scalper:paper:{main}:order:rd1", "state") == b"filled"
    assert fake_redis.xlen("scalper:paper:{main}:fills") == 1
    ex.state.reset()
    assert fake_redis.keys("scalper:paper:*") == []
    fresh = make(fake_redis)
    assert await fresh.positions() == [] and (await fresh.balance())[0].equity == D(10000)


# --- restart, on a real redis-server ---


@pytest.mark.redis
async def test_state_survives_a_restart(real_redis: RealRedis) -> None:
    first_client = redis.Redis(unix_socket_path=real_redis.socket_path)
    first = make(first_client)
    await first.set_leverage(BTC, 10, "isolated")
    await first.on_quote(BTC, D(50000), D(50000), T0)
    await first.place_order(mkt("rs1", BUY, "10"))
    await first.place_order(lmt("rs2", BUY, "2", "48000"))
    await first.place_stop(BTC, "rs3", SELL, D("47000"), D(12))
    balance, pending, stops = await first.balance(), await first.pending_orders(), await first.stops()
    positions = await first.positions()
    await first.close()
    first_client.close()

    # A new process: new client, new exchange, a different starting balance that must not reset anything.
    client = redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=True)
    second = make(client, starting_balance=D(1))
    assert await second.pending_orders() == pending
    assert await second.stops() == stops
    [pos] = await second.positions()
    assert (pos.size, pos.avg_px, pos.lever, pos.liq_px) == (D(10), D(50000), D(10), positions[0].liq_px)
    assert pos.mark_px is None  # no quote yet in this process
    await second.on_quote(BTC, D(50000), D(50000), T0 + 1)
    assert await second.balance() == balance
    assert await second.positions() == positions
    # The restored orders and stop still work: the limit fills, then the stop closes both fills.
    await second.on_quote(BTC, D(47990), D(48000), T0 + 2)
    assert (await second.get_order(BTC, "rs2")).state == OrderState.FILLED  # type: ignore[union-attr]
    await second.on_quote(BTC, D(46990), D(47000), T0 + 3)
    assert await second.positions() == []
    stop_order = await second.get_order(BTC, "rs3")
    assert stop_order is not None and stop_order.filled == D(12)
    client.close()


@pytest.mark.parametrize("order_ids", [(), ("700000000000000001",), ("7001", "7002")])
def test_a_stop_with_its_order_ids_survives_the_hash_codec(order_ids: tuple[str, ...]) -> None:
    """Regression: StopOrder.order_ids (a tuple) came back from the venue's Redis hash as the string "()",
    and every stops() reply then failed to decode in the engine and the workers."""
    stop = StopOrder(BTC, "abc123def456s1", "42", OrderSide.SELL, D("49000.5"), D("2"),
                     order_ids=order_ids)  # fmt: skip
    assert from_hash(StopOrder, to_hash(stop)) == stop

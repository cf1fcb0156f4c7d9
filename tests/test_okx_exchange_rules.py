"""OKX's position rules, as the fake OKX now plays them, and the adapter handling them (issue 10, "the fake
OKX hides what OKX would do", points 1, 2 and 6).

- Margin mode is part of a position's identity: an order never changes the margin mode of a position, and a
  close, reduce-only order or stop in the wrong mode finds nothing (51169 / 51023). The adapter places a stop
  in the margin mode OKX reports for the position, and re-sends a close or a reduce-only order there when OKX
  finds nothing in the mode it was given: after a restart with td_mode=cross, an isolated position still
  gets its stop, its partial close and its close.
- Closing orders never close more than is held: an oversized reduce-only market order closes what is held
  (resized, or its rest cancelled) and never rests; resting closes are fitted to the position. The adapter
  resizes a stop in place (amend-algos newSz), and reads what a stop filled at a reduced size.
- A request without tdMode is refused (50014), never defaulted; closed positions listed with pos "0" are flat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from exchanges.base import (
    ExchangeError,
    ExchangeUnavailable,
    NothingToClose,
    OrderRequest,
    OrderSide,
    OrderType,
)
from exchanges.okx.ratelimit import Kind
from exchanges.okx.records import OrderAck
from tests.fakeokx import FakeOkx, eventually
from tests.fakeokx.engine import Refused
from tests.fakeokx.harness import BTC, Venue

ORDER, CLOSE, ALGO = "/api/v5/trade/order", "/api/v5/trade/close-position", "/api/v5/trade/order-algo"
AMEND = "/api/v5/trade/amend-algos"
D = Decimal


@pytest.fixture
async def venue() -> AsyncIterator[Venue]:
    v = Venue()
    yield v
    await v.aclose()


def order(cl: str, side: OrderSide, size: str, td_mode: str = "isolated", **kw: Any) -> OrderRequest:
    return OrderRequest(BTC, cl, side, D(size), td_mode=td_mode, **kw)


def held(fake: FakeOkx) -> dict[tuple[str, str, str], Decimal]:
    return {k: p.pos for k, p in fake.engine.positions.items() if p.pos}


# --- 1. margin mode is part of a position's identity ---


async def test_a_position_is_per_margin_mode_and_no_order_changes_its_mode(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    await ex.place_order(order("iso1", OrderSide.BUY, "1", "isolated"))
    await ex.place_order(order("crs1", OrderSide.BUY, "2", "cross"))
    assert held(fake) == {(BTC, "net", "isolated"): D(1), (BTC, "net", "cross"): D(2)}
    assert sorted((p.mgn_mode, p.size) for p in await ex.positions()) == [("cross", 2), ("isolated", 1)]
    # A reduce-only order in one mode reduces that mode's position only; a close likewise.
    await ex.place_order(order("crs2", OrderSide.SELL, "1", "cross", reduce_only=True))
    assert held(fake) == {(BTC, "net", "isolated"): D(1), (BTC, "net", "cross"): D(1)}
    await ex.close_position(BTC, "crs3", OrderSide.SELL, "cross")
    assert held(fake) == {(BTC, "net", "isolated"): D(1)}
    assert fake.engine.positions[(BTC, "net", "isolated")].mgn_mode == "isolated"


async def test_a_close_or_reduce_only_order_in_the_wrong_mode_finds_no_position(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    await ex.place_order(order("iso2", OrderSide.BUY, "1", "isolated"))
    e = fake.engine
    base = {"instId": BTC, "side": "sell", "ordType": "market", "sz": "1", "reduceOnly": True}
    with pytest.raises(Refused) as refused:
        e.place({**base, "tdMode": "cross"})
    assert refused.value.code == "51169"
    with pytest.raises(Refused) as refused:
        e.close_position({"instId": BTC, "mgnMode": "cross"})
    assert refused.value.code == "51023"
    # A stop in the wrong mode is taken (OKX does not check it against the position) and fails when it
    # triggers: the position stays naked.
    stop = e.place_algo({**base, "tdMode": "cross", "ordType": "conditional", "slTriggerPx": "49000",
                         "slOrdPx": "-1"})  # fmt: skip
    await fake.set_price(BTC, "48900")
    assert (stop.state, stop.fail_code) == ("order_failed", "51169")
    assert held(fake) == {(BTC, "net", "isolated"): 1}


async def test_after_a_restart_with_td_mode_cross_an_isolated_position_gets_its_stop(venue: Venue) -> None:
    fake, before, _ = await venue.start()  # the bot as it was: isolated
    await before.place_order(order("rsOpen", OrderSide.BUY, "2", "isolated"))
    after = venue.adapter(fake, td_mode="cross")  # restarted with td_mode=cross: nothing in memory
    await after.start()
    await after.place_stop(BTC, "rsStop", OrderSide.SELL, D("49000"), D("2"))
    assert fake.calls("POST", ALGO)[-1].body["tdMode"] == "isolated"
    await fake.set_price(BTC, "48950")  # the stop triggers and closes the isolated position
    [algo] = fake.engine.algos.values()
    assert algo.state == "effective" and held(fake) == {}
    fill = await after.stop_fill(BTC, "rsStop")
    assert fill is not None and fill.filled == 2 and fill.pnl == (D("48950") - D("50000")) * 2 * D("0.01")


async def test_after_a_restart_with_td_mode_cross_the_close_and_harvest_find_the_position(
    venue: Venue,
) -> None:
    fake, before, _ = await venue.start()
    await before.place_order(order("rcOpen", OrderSide.BUY, "3", "isolated"))
    after = venue.adapter(fake, td_mode="cross")
    await after.start()
    # A harvest (reduce-only) sent in cross: refused there, sent again in the position's isolated mode.
    got = await after.place_order(order("rcHarvest", OrderSide.SELL, "1", "cross", reduce_only=True))
    assert [r.body["tdMode"] for r in fake.calls("POST", ORDER)[-2:]] == ["cross", "isolated"]
    assert got.cl_ord_id == "rcHarvest" and held(fake) == {(BTC, "net", "isolated"): D(2)}
    # The close likewise: close-position in cross finds nothing (51023), in isolated it closes.
    await after.close_position(BTC, "rcClose", OrderSide.SELL, "cross")
    assert [r.body["mgnMode"] for r in fake.calls("POST", CLOSE)] == ["cross", "isolated"]
    assert held(fake) == {}
    close = fake.engine.find_order(cl_ord_id="rcClose")
    assert close is not None and close.state == "filled" and close.acc_fill_sz == 2
    # Flat in both modes: nothing to close is final.
    with pytest.raises(NothingToClose):
        await after.close_position(BTC, "rcClose2", OrderSide.SELL, "cross")


async def test_a_close_refused_in_its_mode_with_positions_unreadable_is_not_flat(venue: Venue) -> None:
    fake, ex, _ = await venue.start(rest_retries=0)
    await ex.place_order(order("urOpen", OrderSide.BUY, "1", "isolated"))
    fake.fault("/api/v5/account/positions", method="GET", code="50001", http_status=503, count=5)
    with pytest.raises(ExchangeUnavailable):  # never NothingToClose: the position may be in the other mode
        await ex.close_position(BTC, "urClose", OrderSide.SELL, "cross")
    assert held(fake) == {(BTC, "net", "isolated"): D(1)}


async def test_closed_positions_listed_with_pos_zero_are_flat(venue: Venue) -> None:
    fake, ex, events = await venue.start()
    fake.engine.flat_records = True  # OKX may list a closed (isolated) position with pos "0"
    await ex.place_order(order("z1", OrderSide.BUY, "1", "isolated"))
    await ex.place_order(order("z2", OrderSide.SELL, "1", "isolated", reduce_only=True))
    await ex.place_order(order("z3", OrderSide.BUY, "1", "cross"))
    raw = await ex.rest.get("/api/v5/account/positions", dict, {"instType": "SWAP"}, kind=Kind.POSITIONS)
    assert sorted((r["mgnMode"], r["pos"]) for r in raw) == [("cross", "1"), ("isolated", "0")]
    assert [(p.mgn_mode, p.size) for p in await ex.positions()] == [("cross", 1)]
    flat = await events.position(lambda p: p.mgn_mode == "isolated" and p.size == 0)  # the pos "0" push
    assert flat.size == 0
    # The stop of the long goes where the long is held (cross), not to the pos "0" isolated record.
    await ex.place_stop(BTC, "zStop", OrderSide.SELL, D("49000"), D("1"))
    assert fake.calls("POST", ALGO)[-1].body["tdMode"] == "cross"


async def test_a_request_without_td_mode_is_refused_not_defaulted(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    body = {"instId": BTC, "clOrdId": "noMode1", "side": "buy", "ordType": "market", "sz": "1"}
    with pytest.raises(ExchangeError) as err:
        await ex.rest.post(ORDER, OrderAck, body, kind=Kind.PLACE, inst_id=BTC)
    assert err.value.code == "50014" and fake.engine.orders == {}
    with pytest.raises(ExchangeError) as err:
        await ex.rest.post(CLOSE, OrderAck, {"instId": BTC}, kind=Kind.CLOSE_POSITION, inst_id=BTC)
    assert err.value.code == "50014"
    # The adapter always says which margin mode: orders, stops and closes.
    await ex.place_order(order("mode1", OrderSide.BUY, "1"))
    await ex.place_stop(BTC, "mode2", OrderSide.SELL, D("49000"), D("1"))
    await ex.close_position(BTC, "mode3", OrderSide.SELL, "isolated")
    assert [r.body.get("tdMode") for r in fake.calls("POST", ORDER)[1:]] == ["isolated"]
    assert fake.calls("POST", ALGO)[-1].body["tdMode"] == "isolated"
    assert fake.calls("POST", CLOSE)[-1].body["mgnMode"] == "isolated"


# --- 2. closing orders never close more than is held ---


@pytest.mark.parametrize("oversize", ["resize", "cancel"])
@pytest.mark.parametrize("mode", ["net", "long_short"])
async def test_an_oversized_closing_market_order_closes_what_is_held_and_never_rests(
    venue: Venue, oversize: str, mode: str
) -> None:
    fake, ex, _ = await venue.start(fake_kw={"pos_mode": f"{mode}_mode", "oversize": oversize}, pos_mode=mode)
    await ex.place_order(order("ov1", OrderSide.BUY, "1"))
    await fake.set_price(BTC, "50100")
    await ex.place_order(order("ov2", OrderSide.SELL, "3", reduce_only=True))
    close = fake.engine.find_order(cl_ord_id="ov2")
    assert close is not None and close.acc_fill_sz == 1 and close.pnl == D("100") * D("0.01")
    assert (close.state, close.sz) == (("filled", 1) if oversize == "resize" else ("canceled", 3))
    assert held(fake) == {} and fake.engine.pending() == []  # flat, never short, nothing resting
    got = await ex.get_order(BTC, "ov2")
    assert got is not None and got.state.terminal and got.filled == 1


async def test_resting_closing_orders_are_fitted_to_what_is_held(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    await ex.place_order(order("fit1", OrderSide.BUY, "2"))
    for cl, px in (("fitA", "51000"), ("fitB", "52000")):
        await ex.place_order(order(cl, OrderSide.SELL, "1", reduce_only=True, ord_type=OrderType.LIMIT,
                                   price=D(px)))  # fmt: skip
    await ex.place_order(order("fit2", OrderSide.SELL, "1", reduce_only=True))  # holds 1 now
    a, b = fake.engine.find_order(cl_ord_id="fitA"), fake.engine.find_order(cl_ord_id="fitB")
    assert a is not None and b is not None
    assert (a.state, b.state) == ("live", "canceled")  # the one that would fill later goes
    await fake.set_price(BTC, "51000")
    assert a.state == "filled" and held(fake) == {}


async def test_a_stop_is_resized_in_place(venue: Venue) -> None:
    fake, ex, _ = await venue.start()
    await ex.place_order(order("rz1", OrderSide.BUY, "2"))
    await ex.place_stop(BTC, "rzStop", OrderSide.SELL, D("49000"), D("2"))
    await ex.place_order(order("rz2", OrderSide.SELL, "1.5", reduce_only=True))  # a harvest: 0.5 left
    resized = await ex.resize_stop(BTC, "rzStop", D("0.5"))
    assert fake.calls("POST", AMEND)[-1].body == {"instId": BTC, "algoClOrdId": "rzStop", "newSz": "0.5"}
    [listed] = await ex.stops()
    assert resized.size == listed.size == D("0.5") and listed.algo_id == resized.algo_id
    await fake.set_price(BTC, "48990")
    [child] = [o for o in fake.engine.orders.values() if o.algo_cl_ord_id == "rzStop"]
    assert (child.sz, child.acc_fill_sz, child.state) == (D("0.5"), D("0.5"), "filled")


@pytest.mark.parametrize("oversize", ["resize", "cancel"])
async def test_a_stop_filled_at_a_reduced_size_is_read_as_what_it_filled(venue: Venue, oversize: str) -> None:
    """The shapes OKX gives a stop larger than the position when it triggers: its order resized to what
    was held, or filled that much and cancelled. stop_fill reads the fill, PnL and fee of the fake's books."""
    fake, ex, _ = await venue.start(fake_kw={"oversize": oversize})
    await ex.place_order(order("sf1", OrderSide.BUY, "2"))
    await ex.place_stop(BTC, "sfStop", OrderSide.SELL, D("49000"), D("2"))
    await ex.place_order(order("sf2", OrderSide.SELL, "1", reduce_only=True))  # not resized: 2 > 1 held
    await fake.set_price(BTC, "48990")
    [child] = [o for o in fake.engine.orders.values() if o.algo_cl_ord_id == "sfStop"]
    assert child.acc_fill_sz == 1 and held(fake) == {}
    fill = await ex.stop_fill(BTC, "sfStop")
    assert fill is not None and (fill.filled, fill.pnl, fill.fee) == (D(1), child.pnl, child.fee)
    assert fill.pnl == (D("48990") - D("50000")) * D("0.01") and fill.fee < 0
    await eventually(lambda: fake.engine.pending() == [])

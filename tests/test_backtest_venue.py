"""The backtest's simulated venue: the order semantics of the live worker and OKX, on recorded quotes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from backtest.venue import SimVenue, flat_rate
from exchanges.base import OrderState
from exchanges.paper import DEFAULT_INSTRUMENTS, ledger
from statemachines.intents import IntentAction, OrderIntent, client_order_id

BTC = "BTC-USDT-SWAP"
INSTS = {i.inst_id: i for i in DEFAULT_INSTRUMENTS}
PID = "abcdefgh0001"


def venue(**kw: object) -> SimVenue:
    args: dict[str, object] = dict(instruments=INSTS, balance=D(10_000), taker_fee=D("0.0005"),
                                   latency_s=0.005, spread_bps=D(0), leverage=D(5),
                                   maintenance=flat_rate(D("0.004")))  # fmt: skip
    return SimVenue(**(args | kw))  # type: ignore[arg-type]


def intent(action: IntentAction, side: str = "long", attempt: int = 1, **kw: object) -> dict[str, str]:
    cid = client_order_id(PID, action, attempt)
    return OrderIntent(action, PID, BTC, side, cid, attempt, **kw).to_fields()  # type: ignore[arg-type]


def test_an_order_executes_after_the_latency_on_the_quote_standing_then() -> None:
    v = venue()
    v.on_quote(BTC, 100.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D("1.05")), 100.0)  # arrives at 100.005
    v.deliver(100.004)
    assert v.take_fills() == []  # not there yet
    v.deliver(115.0)  # the next tick's time: it arrived before that tick, on the quote of 100.0
    v.on_quote(BTC, 115.0, 51_000.0, None, None)
    (fill,) = v.take_fills()
    o = fill.order
    assert (o.state, o.filled, o.avg_px) == (OrderState.FILLED, D("1.0"), D(50_000))  # down to the lot
    assert o.fee == -(D("1.0") * D("0.01") * D(50_000) * D("0.0005")) and o.u_time_ms == 100_005
    assert fill.position is not None and fill.position.size == D("1.0")


def test_a_market_order_pays_half_the_spread_when_the_data_has_no_bid_and_ask() -> None:
    v = venue(spread_bps=D(2), latency_s=0.0)
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)
    v.deliver(1.0)
    assert v.take_fills()[0].order.avg_px == D(50_005)  # 1 bp above
    v.on_quote(BTC, 2.0, 50_000.0, 49_990.0, 50_020.0)  # the data's own book: a sell takes its bid
    v.submit(intent(IntentAction.CLOSE, reason="x"), 2.0)
    v.deliver(2.0)
    assert v.take_fills()[0].order.avg_px == D(49_990)


def test_a_harvest_is_a_fraction_of_what_is_held_rounded_down_and_a_close_takes_the_rest() -> None:
    v = venue(latency_s=0.0)
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D("1.5")), 1.0)
    v.submit(intent(IntentAction.HARVEST, fraction=0.5), 1.0)
    v.submit(intent(IntentAction.CLOSE, reason="x"), 1.0)
    v.deliver(1.0)
    entry, harvest, close = v.take_fills()
    assert (harvest.order.filled, harvest.position.size) == (D("0.7"), D("0.8"))  # type: ignore[union-attr]
    assert close.order.filled == D("0.8") and close.position is None
    assert v.cash == D(10_000) + entry.order.fee + harvest.order.fee + close.order.fee  # flat: back to cash


def test_an_entry_the_free_cash_cannot_hold_is_cancelled_with_nothing_filled() -> None:
    v = venue(balance=D(100), latency_s=0.0)
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)  # margin 100 at 5x, plus its fee: too much
    v.deliver(1.0)
    (fill,) = v.take_fills()
    assert (fill.order.state, fill.order.filled, fill.position) == (OrderState.CANCELED, D(0), None)
    assert v.cash == D(100)


def test_the_protective_stop_triggers_on_the_mark_and_ends_the_position() -> None:
    v = venue(latency_s=0.0)
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)
    v.submit(intent(IntentAction.PROTECT, stop_px=47_500.04), 1.0)
    v.deliver(1.0)
    v.take_fills()
    assert v.live_stops(BTC) == {client_order_id(PID, IntentAction.PROTECT, 1)}
    v.on_quote(BTC, 2.0, 47_600.0, None, None)
    assert v.take_fills() == []
    v.on_quote(BTC, 3.0, 47_400.0, None, None)  # through the trigger (rounded down to the tick: 47,500.0)
    (fill,) = v.take_fills()
    assert fill.ended_by == "protective stop filled" and fill.position is None
    assert fill.order.pnl == (D(47_400) - D(50_000)) * D("0.01") and v.live_stops(BTC) == frozenset()


def test_a_stop_that_lands_after_its_position_closed_is_never_placed() -> None:
    v = venue(latency_s=0.0)
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)
    v.submit(intent(IntentAction.CLOSE, reason="x"), 1.0)
    v.submit(intent(IntentAction.PROTECT, stop_px=47_500.0), 1.0)
    v.deliver(1.0)
    assert v.live_stops(BTC) == frozenset()


def test_a_position_past_its_tier_s_liquidation_price_is_liquidated_losing_its_margin() -> None:
    v = venue(latency_s=0.0, leverage=D(50), maintenance=flat_rate(D("0.004")))
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)
    v.deliver(1.0)
    (entry,) = v.take_fills()
    held = v.held[BTC]
    liq = ledger.liq_px(held.pos, D("0.01"), D("0.004"), D("0.0005"))
    assert liq is not None and held.liq == pytest.approx(float(liq))
    v.on_quote(BTC, 2.0, float(liq) + 1, None, None)
    assert v.take_fills() == [] and v.liquidations == 0
    v.on_quote(BTC, 3.0, float(liq) - 1, None, None)
    (fill,) = v.take_fills()
    assert fill.ended_by == "liquidated" and v.liquidations == 1
    assert fill.order.pnl + fill.order.fee == -held.pos.margin  # the isolated margin is lost, no more
    assert v.cash == D(10_000) + entry.order.fee - held.pos.margin


def test_funding_is_paid_at_each_funding_time_by_the_position_held_then() -> None:
    v = venue(latency_s=0.0, funding_times={BTC: [(10.0, D("0.0001")), (20.0, D("-0.0002"))]})
    v.on_quote(BTC, 1.0, 50_000.0, None, None)
    v.submit(intent(IntentAction.OPEN, size=D(1)), 1.0)  # long 1 contract = 0.01 BTC
    v.deliver(1.0)
    v.take_fills()
    v.on_quote(BTC, 10.0, 50_000.0, None, None)  # a long pays a positive rate: 500 × 0.0001
    v.on_quote(BTC, 20.0, 45_000.0, None, None)  # and receives a negative one: 450 × 0.0002
    assert v.held[BTC].funding == D("-0.05") + D("0.09")
    assert v.cash + v.held[BTC].pos.margin == D(10_000) + v.held[BTC].pos.fee + D("0.04")
    v.submit(intent(IntentAction.CLOSE, reason="x"), 20.0)
    v.deliver(20.0)
    (close,) = v.take_fills()
    assert close.funding == D("0.04")

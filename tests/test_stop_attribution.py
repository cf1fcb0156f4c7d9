"""A protective stop's fill belongs to the position it closed (workers/attribution.py and the reconciler's
exchange totals): the rule on hand-made orders, and both positions settled in one reconcile pass on the
paper venue, the one whose stop it was and the one it closed."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from exchanges.base import Order, OrderSide, OrderState
from statemachines.intents import IntentAction
from tests.conftest import RealRedis
from tests.test_reconciler import BTC, cid, make_world
from workers import attribution

A, B, C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


def order(cl: str, side: str, filled: str, t: int, *, algo: str = "") -> Order:
    return Order(inst_id=BTC, cl_ord_id=cl, ord_id=cl or algo, side=OrderSide(side), state=OrderState.FILLED,
                 size=D(filled), filled=D(filled), u_time_ms=t, algo_cl_ord_id=algo)  # fmt: skip


def test_a_fill_belongs_to_the_position_whose_entry_filled_last_before_it() -> None:
    recent = [order(f"{A}o1", "buy", "1", 1000), order(f"{B}o1", "buy", "1", 3000),
              order(f"{C}o1", "sell", "1", 2000),  # a short: not on the long side
              order(f"{A}o2", "buy", "1", 1500), order("manual1", "buy", "5", 2500)]  # fmt: skip
    entries = attribution.entry_times(recent, "long")
    assert entries == {A: 1000, B: 3000}
    assert attribution.owner(order("", "sell", "1", 2999, algo=f"{A}s1"), entries) == A
    assert attribution.owner(order("", "sell", "1", 3000, algo=f"{A}s1"), entries) == B
    assert attribution.owner(order("", "sell", "1", 999, algo=f"{A}s1"), entries) is None


def test_stop_fills_of_a_position_are_other_stops_that_closed_it() -> None:
    stop_a_late = order("", "sell", "1", 3500, algo=f"{A}s1")  # OKX: no client id, the algo's id
    stop_c = order(f"{C}s1", "sell", "1", 3600, algo=f"{C}s1")  # paper: the stop's id on both
    stop_a_in_time = order("", "sell", "1", 1200, algo=f"{A}s1")
    own = order("", "sell", "1", 3700, algo=f"{B}s1")
    unfilled = order("", "sell", "0", 3800, algo=f"{C}s1")
    buy = order("", "buy", "1", 3900, algo=f"{C}s1")  # a short's stop: it cannot close a long
    recent = [order(f"{A}o1", "buy", "1", 1000), order(f"{B}o1", "buy", "1", 3000), stop_a_late, stop_c,
              stop_a_in_time, own, unfilled, buy, order("manual1", "sell", "1", 3300)]  # fmt: skip
    entries = attribution.entry_times(recent, "long")
    assert attribution.stop_fills_of(B, "long", recent, entries) == [stop_a_late, stop_c]
    assert attribution.stop_fills_of(A, "long", recent, entries) == []  # its own in-time fill is not "other"
    assert attribution.stop_of(order("manual1", "sell", "1", 1)) == ""
    assert attribution.stop_of(order(f"{A}c1", "sell", "1", 1)) == ""


def test_closed_by_itself_means_its_own_closes_filled_all_it_entered() -> None:
    entry, close = order(f"{A}o1", "buy", "2", 1), order(f"{A}c1", "sell", "2", 2)
    harvest, half = order(f"{A}h1", "sell", "1", 2), order(f"{A}c1", "sell", "1", 3)
    assert attribution.closed_by_itself([entry, close], "long")
    assert attribution.closed_by_itself([entry, harvest, half], "long")
    assert not attribution.closed_by_itself([entry, half], "long")
    assert not attribution.closed_by_itself([], "long")  # nothing of ours entered: unknown, not "itself"


@pytest.mark.redis
def test_a_stop_that_closed_the_next_position_is_that_one_s_close(real_redis: RealRedis) -> None:
    """Both settled in one pass, after the fact (the bot was down): A was closed by its own close order, and
    its stop, left live, later closed B. A must not count that fill (it would be counted twice, and A's
    loss would be B's); B counts it, with its fee. Before the fix A took it and B had PnL 0."""
    w = make_world(real_redis.client)
    a = w.opened("long", "1", protect=True)  # entry at 50,000; its stop at 47,500
    w.clock.advance(1)
    w.place(cid(a, IntentAction.CLOSE), "sell", "1", reduce_only=True)  # its transitions lost: still "open"
    w.clock.advance(1)
    b = w.opened("long", "1")  # no stop of its own yet
    w.clock.advance(1)
    w.quote(D(47400))  # A's stop closes B
    a_stop = w.order(cid(a, IntentAction.PROTECT))
    assert a_stop is not None and a_stop.filled == 1 and w.exchange_size() == 0

    report = w.start(w.engine())

    assert {t for _, t, _ in report.corrections} == {"external_close"}
    got_a, got_b = w.load(a), w.load(b)
    a_own = [o for o in (w.order(cid(a, IntentAction.OPEN)), w.order(cid(a, IntentAction.CLOSE))) if o]
    b_entry = w.order(cid(b, IntentAction.OPEN))
    assert b_entry is not None
    assert (got_a.realized_pnl, got_a.fees) == (sum(o.pnl for o in a_own), sum(o.fee for o in a_own))
    assert "its protective stop filled after a later position opened" in got_a.exit_reason
    assert (got_b.realized_pnl, got_b.fees) == (a_stop.pnl, b_entry.fee + a_stop.fee)
    assert got_b.realized_pnl == D(-26)  # (47,400 − 50,000) × 1 × 0.01
    assert f"protective stop {a.id}s1 of an earlier position filled" in got_b.exit_reason

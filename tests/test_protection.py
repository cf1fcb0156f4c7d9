"""A protective stop belongs to its position (workers/protection.py, the protect and unprotect jobs of
workers/orders.py, the reconciler's sweep): each step of the mechanism with the race it closes made
certain. Real redis-server, paper venue, a stub clock shared by the venue, the engine and the jobs."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from exchanges import sync as exchange_loop
from exchanges.base import OrderRequest, OrderSide, OutcomeUnknown, StopOrder
from exchanges.paper import DEFAULT_INSTRUMENTS
from statemachines import stepper
from statemachines.intents import IntentAction, OrderIntent
from statemachines.position import Position
from statemachines.snapshot import Action
from tests.conftest import RealRedis
from tests.test_reconciler import BTC, ETH, PREFIX, PX, World, cid, make_world
from workers.events import EventBus
from workers.orders import WorkerContext, execute
from workers.protection import LAND_S, PLACED, StopOutcomePending, StopRecord, earlier_stops, retire
from workers.riskstate import RiskState

pytestmark = pytest.mark.redis


def ctx(w: World) -> WorkerContext:
    insts = {i.inst_id: i for i in DEFAULT_INSTRUMENTS}
    return WorkerContext(w.settings, w.client, w.store, w.paper, EventBus(w.client, w.store.keys),
                         exchange_loop.loop(), insts, wall=w.clock)  # fmt: skip


def record(w: World) -> StopRecord:
    return StopRecord(w.client, w.store.keys)


def intent(w: World, pos: Position, action: IntentAction) -> OrderIntent:
    return next(i for i in w.outbox() if i.action is action and i.position_id == pos.id)


def close_at_the_exchange(w: World, pos: Position) -> None:
    """The bot closes the position (close order filled, close_filled settled): its unprotect intent is out."""
    w.decide(pos, Action.CLOSE, "manual")
    side = "sell" if pos.side.value == "long" else "buy"
    w.place(cid(pos, IntentAction.CLOSE), side, str(pos.size), reduce_only=True, inst=pos.symbol)
    stepper.settle_closed(w.pm, pos, trigger="close_filled", reason="close order filled")


def opened_with_its_protect_job(w: World) -> tuple[Position, str, WorkerContext, OrderIntent]:
    """A long of 1 contract, its stop's id, a worker's context and the position's protect intent."""
    pos = w.opened("long", "1")
    return pos, cid(pos, IntentAction.PROTECT), ctx(w), intent(w, pos, IntentAction.PROTECT)


def live_stops(w: World) -> set[str]:
    return {s.algo_cl_ord_id for s in w.run(w.paper.stops()) if s.state == "live"}


# --- the record ---


def test_a_stop_is_recorded_only_while_its_position_is_live(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1")
    stop_id = cid(pos, IntentAction.PROTECT)
    assert rec.announce(BTC, stop_id, pos.id, w.clock())
    assert rec.get(BTC, stop_id) == repr(w.clock())
    close_at_the_exchange(w, pos)
    assert not rec.announce(BTC, stop_id, pos.id, w.clock() + 1)  # over: nothing may be sent any more
    assert rec.get(BTC, stop_id) == repr(w.clock())
    assert not rec.announce(BTC, "zzzzzzzzzzzzs1", "zzzzzzzzzzzz", w.clock())  # no such position
    # Forgotten only with the value it was confirmed gone for: a newer placement is not.
    assert not rec.forget(BTC, stop_id, if_still=PLACED)
    assert rec.forget(BTC, stop_id, if_still=repr(w.clock()))
    assert rec.all([BTC]) == {BTC: {}}


def test_earlier_stops_are_those_of_positions_that_are_over() -> None:
    recorded = ["aaaaaaaaaaaas1", "bbbbbbbbbbbbs1", "handplacedstop"]
    assert earlier_stops(recorded, ["bbbbbbbbbbbb"]) == ("aaaaaaaaaaaas1", "handplacedstop")
    assert earlier_stops(recorded[:2], ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]) == ()


# --- retiring the stop of a position that is over ---


def test_retire_cancels_a_live_stop_and_waits_for_one_that_may_still_land(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1")
    stop_id = cid(pos, IntentAction.PROTECT)
    rec.announce(BTC, stop_id, pos.id, w.clock())  # sent: no answer yet
    close_at_the_exchange(w, pos)
    with pytest.raises(StopOutcomePending):
        w.run(retire(w.paper, rec, BTC, stop_id, w.clock() + LAND_S - 0.1))
    assert rec.get(BTC, stop_id) is not None
    w.run(w.paper.place_stop(BTC, stop_id, OrderSide.SELL, D(47500), D(1)))  # it lands
    assert w.run(retire(w.paper, rec, BTC, stop_id, w.clock())) == "protective stop cancelled"
    assert stop_id not in live_stops(w) and rec.get(BTC, stop_id) is None
    assert w.run(retire(w.paper, rec, BTC, stop_id, w.clock())) == "no protective stop"


def test_retire_forgets_a_stop_that_never_landed_once_it_no_longer_can(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1")
    stop_id = cid(pos, IntentAction.PROTECT)
    rec.announce(BTC, stop_id, pos.id, w.clock())
    close_at_the_exchange(w, pos)
    assert w.run(retire(w.paper, rec, BTC, stop_id, w.clock() + LAND_S)) == "protective stop gone"
    assert rec.get(BTC, stop_id) is None


def test_retire_forgets_a_placed_stop_that_is_gone_at_once(real_redis: RealRedis) -> None:
    """Acknowledged, then gone (it triggered and closed its position): nothing can bring it back."""
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1", protect=True)
    stop_id = cid(pos, IntentAction.PROTECT)
    rec.placed(BTC, stop_id)
    w.quote(D(47000))
    assert w.exchange_size() == 0 and stop_id not in live_stops(w)
    assert w.run(retire(w.paper, rec, BTC, stop_id, w.clock())) == "protective stop gone"
    assert rec.all([BTC]) == {BTC: {}}


def test_retire_never_takes_an_unreadable_exchange_for_gone(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1", protect=True)
    stop_id = cid(pos, IntentAction.PROTECT)
    rec.placed(BTC, stop_id)
    close_at_the_exchange(w, pos)
    w.paper.inject("read_fail", op="stops")
    with pytest.raises(Exception, match="injected read_fail"):
        w.run(retire(w.paper, rec, BTC, stop_id, w.clock()))
    assert rec.get(BTC, stop_id) == PLACED and stop_id in live_stops(w)


# --- the jobs ---


def test_a_stop_placed_while_its_position_closed_is_cancelled_by_its_own_job(real_redis: RealRedis) -> None:
    """The race the outside tester hit, made certain: the position closes while its stop's request is on
    its way, and its unprotect job runs before the stop is there. The unprotect job does not give up, and
    the protect job reads the position again once the stop is placed, and cancels it."""
    w = make_world(real_redis.client)
    pos = w.opened("long", "1")
    stop_id = cid(pos, IntentAction.PROTECT)
    job = ctx(w)
    real_place = w.paper.place_stop
    unprotect: list[str] = []

    async def place_after_the_close(*args: Any, **kw: Any) -> StopOrder:
        w.decide(pos, Action.CLOSE, "manual")
        req = OrderRequest(BTC, cid(pos, IntentAction.CLOSE), OrderSide.SELL, pos.size, reduce_only=True)
        await w.paper.place_order(req)
        stepper.settle_closed(w.pm, pos, trigger="close_filled", reason="close order filled")
        try:
            unprotect.append(await execute(job, intent(w, pos, IntentAction.UNPROTECT)))
        except StopOutcomePending as err:
            unprotect.append(f"waits: {err}")
        return await real_place(*args, **kw)

    w.paper.place_stop = place_after_the_close  # type: ignore[method-assign]
    done = w.run(execute(job, intent(w, pos, IntentAction.PROTECT)))

    assert unprotect[0].startswith("waits: stop") and w.load(pos).state == "closed"
    assert done.endswith("after its position closed: protective stop cancelled")
    assert stop_id not in live_stops(w) and w.stops()[stop_id].state == "canceled"
    assert record(w).all([BTC]) == {BTC: {}}
    assert w.run(execute(job, intent(w, pos, IntentAction.UNPROTECT))) == "no protective stop"


def test_the_unprotect_job_waits_for_a_late_stop_and_cancels_it_when_it_lands(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos, stop_id, job, protect = opened_with_its_protect_job(w)
    w.paper.inject("late", op="place_stop", seconds=2)
    with pytest.raises(OutcomeUnknown):
        w.run(execute(job, protect))
    close_at_the_exchange(w, pos)
    unprotect = intent(w, pos, IntentAction.UNPROTECT)
    with pytest.raises(StopOutcomePending):
        w.run(execute(job, unprotect))  # found nothing: before the fix, it gave up here
    with pytest.raises(StopOutcomePending):
        w.run(execute(job, protect))  # RQ's retry of the protect job: its position is over, the stop unseen
    w.clock.advance(2)
    w.quote(PX)  # the stop lands
    assert stop_id in live_stops(w)
    assert w.run(execute(job, unprotect)) == "protective stop cancelled"
    assert stop_id not in live_stops(w) and record(w).all([BTC]) == {BTC: {}}
    assert w.run(execute(job, protect)) == "skip: position is closed"


def test_a_stop_request_that_was_lost_is_forgotten_once_it_can_no_longer_land(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos = w.opened("long", "1")
    job = ctx(w)
    w.paper.inject("timeout", op="place_stop", executed=False)
    with pytest.raises(OutcomeUnknown):
        w.run(execute(job, intent(w, pos, IntentAction.PROTECT)))
    close_at_the_exchange(w, pos)
    unprotect = intent(w, pos, IntentAction.UNPROTECT)
    w.clock.advance(LAND_S - 1)
    with pytest.raises(StopOutcomePending):
        w.run(execute(job, unprotect))
    w.clock.advance(1)
    assert w.run(execute(job, unprotect)) == "protective stop gone"
    assert record(w).all([BTC]) == {BTC: {}} and live_stops(w) == set()


def test_a_protect_job_records_its_stop_as_placed(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    _pos, stop_id, job, protect = opened_with_its_protect_job(w)
    assert w.run(execute(job, protect)) == "protective stop at 47500.0"
    assert record(w).get(BTC, stop_id) == PLACED and stop_id in live_stops(w)
    assert w.run(execute(job, protect)) == "exists: protective stop"  # run again: no second stop
    assert len(w.stops()) == 1


def test_a_protect_job_run_again_after_its_stop_triggered_sends_no_second_stop(real_redis: RealRedis) -> None:
    """Regression (CI chaos run on fake OKX, seed 949294716): the protect job placed its stop, and its worker
    died before RQ could record the job done (Redis at its memory limit), so RQ ran it again. By then the
    stop had triggered and the position was still open in Redis: the job saw no live stop and placed a
    second stop under the same id, which outlived the position. A stop id is now placed at most once: the
    job looks the id up in any state, and one that is gone is not sent again."""
    w = make_world(real_redis.client)
    pos, stop_id, job, protect = opened_with_its_protect_job(w)
    assert w.run(execute(job, protect)) == "protective stop at 47500.0"
    w.quote(D(47000))  # through the trigger: the stop flattens the position at the venue
    assert w.stops()[stop_id].state == "effective" and w.exchange_size() == 0
    assert w.load(pos).state == "open"  # the bot has not settled it yet
    placed: list[str] = []
    real_place = w.paper.place_stop

    async def counting(*args: Any, **kw: Any) -> StopOrder:
        placed.append(args[1])
        return await real_place(*args, **kw)

    w.paper.place_stop = counting  # type: ignore[method-assign]
    assert w.run(execute(job, protect)) == "skip: protective stop effective"
    assert placed == [] and live_stops(w) == set() and w.exchange_size() == 0
    assert record(w).get(BTC, stop_id) == PLACED  # placed once: its absence from the live stops means gone


def test_a_protect_job_does_not_send_again_a_stop_cancelled_at_the_exchange(real_redis: RealRedis) -> None:
    """Someone cancelled the stop at the exchange while the position is held: the id is not reused (a venue
    may refuse it, or keep two stops under one id). The bot-side exits still hold the position; the
    reconciler does not hand the job over again and again."""
    w = make_world(real_redis.client)
    _pos, stop_id, job, protect = opened_with_its_protect_job(w)
    w.run(execute(job, protect))
    w.run(w.paper.cancel_stop(BTC, stop_id))
    assert w.run(execute(job, protect)) == "skip: protective stop canceled"
    assert live_stops(w) == set() and w.stops()[stop_id].state == "canceled"


# --- the reconciler's sweep, and the entries' view ---


def test_the_reconciler_cancels_live_orphans_and_forgets_stops_confirmed_gone(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec, job = record(w), ctx(w)
    orphan = w.opened("long", "1")  # its stop placed, then closed; its unprotect job lost
    w.run(execute(job, intent(w, orphan, IntentAction.PROTECT)))
    close_at_the_exchange(w, orphan)
    lost = w.opened("short", "1", inst=ETH)  # its stop's request lost on its way; then closed
    rec.announce(ETH, cid(lost, IntentAction.PROTECT), lost.id, w.clock())
    w.place(cid(lost, IntentAction.CLOSE), "buy", "1", reduce_only=True, inst=ETH)
    live = w.opened("long", "1")
    w.run(execute(job, intent(w, live, IntentAction.PROTECT)))
    engine = w.engine(symbols=[BTC, ETH])

    report = w.start(engine)

    assert report.cancelled_stops == [cid(orphan, IntentAction.PROTECT)]
    assert report.stops_gone == [cid(orphan, IntentAction.PROTECT)]
    assert w.load(lost).state == "closed"
    assert set(rec.all([BTC, ETH])[ETH]) == {cid(lost, IntentAction.PROTECT)}  # may still land
    w.clock.advance(LAND_S)
    report = w.rec.reconcile(engine, w.clock())
    assert report.stops_gone == [cid(lost, IntentAction.PROTECT)] and report.cancelled_stops == []
    assert rec.all([BTC, ETH]) == {BTC: {cid(live, IntentAction.PROTECT): PLACED}, ETH: {}}


def test_the_risk_snapshot_carries_the_symbol_s_recorded_stops(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    rec = record(w)
    pos = w.opened("long", "1")
    rec.announce(BTC, cid(pos, IntentAction.PROTECT), pos.id, w.clock())
    snap = RiskState(w.client, PREFIX).snapshot(BTC, w.clock())
    assert snap.stops == {cid(pos, IntentAction.PROTECT)}
    assert RiskState(w.client, PREFIX).snapshot(ETH, w.clock()).stops == frozenset()
    assert earlier_stops(snap.stops, [pos.id]) == ()  # its own position's: no bar to another entry
    assert earlier_stops(snap.stops, []) == (cid(pos, IntentAction.PROTECT),)


def test_a_placement_answered_late_with_no_answer_may_land_until_land_s_after_the_answer(
    real_redis: RealRedis,
) -> None:
    """The request may leave long after the stop was recorded (rate-limit pauses inside the adapter): the
    time that counts is when it went unanswered."""
    w = make_world(real_redis.client)
    pos = w.opened("long", "1")
    stop_id = cid(pos, IntentAction.PROTECT)
    job = ctx(w)

    async def slow_then_unknown(*args: Any, **kw: Any) -> StopOrder:
        w.clock.advance(10)
        raise OutcomeUnknown("timed out")

    w.paper.place_stop = slow_then_unknown  # type: ignore[method-assign]
    with pytest.raises(OutcomeUnknown):
        w.run(execute(job, intent(w, pos, IntentAction.PROTECT)))
    assert record(w).get(BTC, stop_id) == repr(w.clock())
    close_at_the_exchange(w, pos)
    w.clock.advance(LAND_S - 1)  # LAND_S + 9 s after it was recorded, LAND_S - 1 after it went unanswered
    with pytest.raises(StopOutcomePending):
        w.run(execute(job, intent(w, pos, IntentAction.UNPROTECT)))


def test_the_sweep_leaves_the_stop_of_a_position_whose_hash_cannot_be_read(real_redis: RealRedis) -> None:
    """Such a position is flagged and left to its exchange-side stop: the sweep must not take it away."""
    w = make_world(real_redis.client)
    pos = w.opened("long", "1")
    w.run(execute(ctx(w), intent(w, pos, IntentAction.PROTECT)))
    w.client.hset(w.store.keys.pos(BTC, pos.id), "version", "garbage")  # edited by hand
    engine = w.engine()

    report = w.start(engine)

    assert pos.id in engine.bad_positions
    assert report.cancelled_stops == [] and report.stops_gone == []
    assert cid(pos, IntentAction.PROTECT) in live_stops(w)
    assert record(w).get(BTC, cid(pos, IntentAction.PROTECT)) == PLACED

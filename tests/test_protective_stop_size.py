"""The protective stop follows the position's size (issue 10): after a harvest and after a resync the
transition hands the protect job over again, and the job resizes the live stop in place (same client id)
to what the position holds; a stop already of that size is left alone. Paper venue, real redis-server
(the OKX side: tests/test_okx_exchange_rules.py and tests/test_system_okx_rules.py)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from exchanges import sync as exchange_loop
from exchanges.paper import DEFAULT_INSTRUMENTS
from statemachines import stepper
from statemachines.intents import IntentAction, OrderIntent
from statemachines.snapshot import Action
from tests.conftest import RealRedis
from tests.test_reconciler import PX, World, cid, make_world
from workers import settlement
from workers.events import EventBus
from workers.orders import WorkerContext, execute

pytestmark = pytest.mark.redis


def _ctx(w: World) -> WorkerContext:
    insts = {i.inst_id: i for i in DEFAULT_INSTRUMENTS}
    return WorkerContext(w.settings, w.client, w.store, w.paper, EventBus(w.client, w.store.keys),
                         exchange_loop.loop(), insts)  # fmt: skip


def _protects(w: World) -> list[OrderIntent]:
    return [i for i in w.outbox() if i.action is IntentAction.PROTECT]


def test_after_a_harvest_the_stop_is_resized_to_what_is_left(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos = w.opened("long", "4", protect=True)
    stop_id = cid(pos, IntentAction.PROTECT)
    placed = w.stops()[stop_id]
    assert placed.size == 4
    w.decide(pos, Action.HARVEST, "harvest", fraction=0.5)
    w.place(cid(pos, IntentAction.HARVEST), "sell", "2", reduce_only=True)
    stepper.harvest_filled(w.pm, pos, remaining=D(2), price=PX, cfg=w.cfg)
    again = _protects(w)[-1]
    assert (again.cl_ord_id, len(_protects(w))) == (stop_id, 2)  # the entry's, and the harvest's
    assert w.run(execute(_ctx(w), again)) == "protective stop resized to 2"
    stop = w.stops()[stop_id]
    assert (stop.size, stop.state, stop.trigger_px, stop.algo_id) == (D(2), "live", placed.trigger_px,
                                                                      placed.algo_id)  # fmt: skip
    assert w.run(execute(_ctx(w), again)) == "exists: protective stop"  # run again: nothing to do


def test_a_resync_resizes_the_stop_to_the_exchange_size(real_redis: RealRedis) -> None:
    w = make_world(real_redis.client)
    pos = w.opened("long", "2", protect=True)
    w.place("manual1", "buy", "1")  # the exchange now holds 3
    resync = settlement.Settlement("resync", "exchange size 3 != 2", {"size": D(3)})
    settlement.apply(w.pm, pos, resync, w.cfg, now=w.clock())  # as the reconciler settles it
    assert len(_protects(w)) == 2
    assert w.run(execute(_ctx(w), _protects(w)[-1])) == "protective stop resized to 3"
    assert w.stops()[cid(pos, IntentAction.PROTECT)].size == 3

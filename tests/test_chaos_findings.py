"""Regression tests for what the chaos suite (tests/chaos.py) found. Each is minimised to the one step
that goes wrong, without the processes around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal as D
from typing import TYPE_CHECKING

import pytest
import redis

from config.settings import Settings
from exchanges.base import OrderState
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from statemachines import stepper
from statemachines.intents import IntentAction, open_intent, protect_intent
from statemachines.machine import PositionMachine
from statemachines.position import Position, Side, new_position_id
from statemachines.snapshot import Action
from statemachines.store import PositionStore
from tests.test_lease import BTC, PREFIX, engine, lease_key, tick
from tests.test_reconciler import cid, make_world
from workers.events import EventBus
from workers.orders import WorkerContext, execute

if TYPE_CHECKING:
    from tests.conftest import RealRedis

pytestmark = pytest.mark.redis


@pytest.fixture
def client(real_redis: RealRedis) -> Iterator[redis.Redis]:
    yield real_redis.client


def _history(client: redis.Redis, bars: int = 40) -> None:
    """Closed 1-minute candles in the history stream, as the feed writes them before live ticks."""
    start = (int(time.time()) // 60 - bars) * 60
    for i in range(bars):
        px = 50000.0 + 10 * (i % 7)
        client.xadd(f"{PREFIX}:{{{BTC}}}:history",
                    {"ts": repr(float(start + 60 * i)), "o": repr(px), "h": repr(px + 5), "l": repr(px - 5),
                     "c": repr(px + 1)})  # fmt: skip


def test_an_engine_that_loses_its_lease_and_takes_it_back_keeps_running(client: redis.Redis) -> None:
    _history(client)
    eng = engine(client, ttl=0.6)
    tick(client)
    eng.run_once(block_ms=0)  # takes the lease, warms up, steps a live tick: a candle is forming
    assert eng.started
    # A stall past the TTL (GC, a slow Redis, 2 busy cores): another engine holds the shard for a while.
    client.set(lease_key(), "other-engine", px=300)
    time.sleep(0.25)  # past a third of the TTL: the next keep() renews, and fails
    assert eng.run_once(block_ms=0) == 0 and not eng.started
    client.delete(lease_key())  # the other engine is gone
    tick(client)
    eng.run_once(block_ms=0)  # takes the lease back: start() again; must not crash
    assert eng.started and eng.lease.held


async def test_a_protect_job_for_a_position_already_closed_is_skipped(real_redis: RealRedis) -> None:
    client = real_redis.client
    cfg = Settings(_env_file=None, symbols={BTC: {}})  # type: ignore[call-arg, arg-type]
    store = PositionStore(client)
    pm = PositionMachine(store)
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"))
    now = time.time()
    pos = Position(id=new_position_id(now), symbol=BTC, side=Side.LONG, state_since=now, wall_since=now,
                   entry_size=D(1), entry_attempt=1)  # fmt: skip
    store.create(pos, reason="test entry", ts=now, intent=open_intent(pos, D(1)).to_fields())
    stepper.entry_filled(pm, pos, price=D(50000), size=D(1), atr=None, cfg=cfg.for_symbol(BTC), now=now)
    protect = protect_intent(pos, 47500.0)  # written with the entry fill; its job runs late
    stepper.settle_closed(pm, pos, trigger="external_close", reason="closed before the stop job ran")
    assert store.load(pos.id).state == "closed"
    ctx = WorkerContext(cfg, client, store, ex, EventBus(client, store.keys), asyncio.get_running_loop(),
                        {i.inst_id: i for i in DEFAULT_INSTRUMENTS})  # fmt: skip
    done = await execute(ctx, protect)  # raised LotSizeError (size 0) before the fix
    assert done.startswith("skip")
    assert await ex.stops() == []


def test_a_close_filled_in_part_then_finished_by_the_protective_stop_records_both_fills(
    real_redis: RealRedis,
) -> None:
    w = make_world(real_redis.client)
    pos = w.opened("long", "1", protect=True)
    w.decide(pos, Action.CLOSE, "max_hold_time")
    assert w.load(pos).state == "closing"
    # The close order fills half, its rest is cancelled (the venue's "partial" fault); then the price
    # falls through the catastrophe stop, which closes the other half.
    w.paper.inject("partial", op="place_order", fraction=0.5, rest="cancel")
    close = w.place(cid(pos, IntentAction.CLOSE), "sell", "1", reduce_only=True)
    assert close.state is OrderState.CANCELED and close.filled == D("0.5")
    w.quote(D(47000))
    assert w.exchange_size() == 0
    w.start(w.engine())
    got = w.load(pos)
    assert got.state == "closed"
    fills = [f for f in w.paper.state.fills() if f["cl_ord_id"].startswith(pos.id)]
    assert {f["cl_ord_id"] for f in fills} == {f"{pos.id}o1", f"{pos.id}c1", f"{pos.id}s1"}
    assert got.fees == sum(D(f["fee"]) for f in fills)
    assert got.realized_pnl == sum(D(f["pnl"]) for f in fills)
    w.assert_consistent()

"""The outbox relay (workers/relay.py): one MULTI per hand-off, and an intent leaves the outbox only once RQ
has it. Real redis-server."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from statemachines.intents import IntentAction, OrderIntent, client_order_id
from statemachines.keys import Keys
from statemachines.machine import StaleTransition
from statemachines.store import PositionStore
from tests import test_lease as lease_test
from tests.conftest import RealRedis
from workers.quarantine import Quarantine
from workers.relay import JOB, QUEUE, RETRY, Relay, RqHandOff, job_id

SYM = "BTC-USDT-SWAP"


def _intent(pid: str = "abc123def456") -> OrderIntent:
    cid = client_order_id(pid, IntentAction.CLOSE, 1)
    return OrderIntent(IntentAction.CLOSE, pid, SYM, "long", cid, 1, reason="stop_loss")


def test_flush_hands_each_intent_to_rq_and_removes_it(real_redis: RealRedis) -> None:
    client, keys = real_redis.client, Keys()
    intents = [_intent("abc123def456"), _intent("xyz789uvw012")]
    for intent in intents:
        client.xadd(keys.outbox(SYM), intent.to_fields())
    assert Relay(client, keys).flush([SYM]) == 2
    assert client.xlen(keys.outbox(SYM)) == 0
    queue = Queue(QUEUE, connection=client)
    assert queue.get_job_ids() == [job_id(i) for i in intents]
    job = Job.fetch(job_id(intents[0]), connection=client)
    assert job.func_name == JOB
    assert job.args == (intents[0].to_fields(),)
    assert job.get_status() == JobStatus.QUEUED
    assert (job.retries_left, job.retry_intervals) == (RETRY.max, RETRY.intervals)
    assert (job.result_ttl, job.failure_ttl) == (3600, 86400)
    assert client.sismember("rq:queues", queue.key)


def test_an_intent_rq_did_not_take_stays_in_the_outbox(real_redis: RealRedis) -> None:
    client, keys = real_redis.client, Keys()
    client.xadd(keys.outbox(SYM), _intent().to_fields())
    client.set("rq:queue:orders", "not a list")  # the push fails inside the MULTI
    with pytest.raises(redis.ResponseError):
        Relay(client, keys).flush([SYM])
    assert client.xlen(keys.outbox(SYM)) == 1  # handed over on a later pass
    client.delete("rq:queue:orders")
    assert Relay(client, keys).flush([SYM]) == 1
    assert client.xlen(keys.outbox(SYM)) == 0
    assert Queue(QUEUE, connection=client).get_job_ids() == [job_id(_intent())]


def test_one_round_trip_reads_every_outbox(real_redis: RealRedis) -> None:
    client, keys = real_redis.client, Keys()
    eth = "ETH-USDT-SWAP"
    client.xadd(keys.outbox(eth), replace(_intent("xyz789uvw012"), symbol=eth).to_fields())
    client.xadd(keys.outbox(SYM), _intent().to_fields())
    assert Relay(client, keys).flush([SYM, eth, "SOL-USDT-SWAP"]) == 2
    assert Queue(QUEUE, connection=client).get_job_ids() == [
        job_id(_intent()),
        job_id(_intent("xyz789uvw012")),
    ]
    assert client.xlen(keys.outbox(SYM)) == client.xlen(keys.outbox(eth)) == 0


def test_the_engine_hands_an_intent_to_rq_in_the_script_of_its_transition(real_redis: RealRedis) -> None:
    """The first of five ticks closes the position (its stop loss): its close job is in RQ when that tick's
    step returns, written by the transition's own script (no outbox entry, nothing for the relay), exactly as
    RQ's own enqueue writes it."""
    client = real_redis.client
    pos = lease_test.open_position(client)  # long at 50000, stop loss 2 % below
    eng = lease_test.engine(client)
    eng.run_once(block_ms=0)  # takes the lease, starts
    queue = Queue(QUEUE, connection=client)
    earlier = set(queue.get_job_ids())  # the entry's intents, relayed from the outbox open_position used
    seen: list[list[str]] = []
    on_tick = eng.on_tick

    def spy(symbol: str, ts: float, price: float) -> None:
        on_tick(symbol, ts, price)
        seen.append([j for j in queue.get_job_ids() if j not in earlier])

    eng.on_tick = spy  # type: ignore[method-assign]
    for _ in range(5):
        lease_test.tick(client, px=48_000.0)
    assert eng.run_once(block_ms=0) == 5
    stored = eng.store.load(pos.id)
    assert stored.state == "closing"
    [jid] = [j for j in queue.get_job_ids() if j not in earlier]
    intent = OrderIntent.from_fields(Job.fetch(jid, connection=client).args[0])
    assert (intent.action, intent.position_id, jid) == (IntentAction.CLOSE, pos.id, job_id(intent))
    assert seen == [[jid]] * 5  # there from the first tick on, once
    assert client.xlen(Keys(lease_test.PREFIX).outbox(SYM)) == 0
    job = Job.fetch(job_id(intent), connection=client)
    assert (job.func_name, job.args, job.get_status()) == (JOB, (intent.to_fields(),), JobStatus.QUEUED)
    assert (job.retries_left, job.retry_intervals) == (RETRY.max, RETRY.intervals)
    assert (job.result_ttl, job.failure_ttl, job.origin) == (3600, 86400, QUEUE)
    # The same keys and fields as RQ's own enqueue of that intent (the relay's path), timestamps aside.
    mine = {k: v for k, v in client.hgetall(job.key).items() if not k.endswith(b"_at")}
    client.delete(job.key)
    client.lrem(queue.key, 0, jid)
    client.xadd(Keys(lease_test.PREFIX).outbox(SYM), intent.to_fields())
    assert Relay(client, Keys(lease_test.PREFIX)).flush([SYM]) == 1
    theirs = {k: v for k, v in client.hgetall(job.key).items() if not k.endswith(b"_at")}
    assert mine == theirs
    assert client.sismember("rq:queues", queue.key)


def test_a_stale_transition_hands_nothing_over(real_redis: RealRedis) -> None:
    """The job exists only with its transition: a compare-and-set that fails writes no job."""
    client = real_redis.client
    pos = lease_test.open_position(client)
    store = PositionStore(client, lease_test.PREFIX, handoff=RqHandOff(client))
    stale = replace(store.load(pos.id), version=pos.version - 1)
    intent = _intent(pos.id)
    with pytest.raises(StaleTransition):
        store.apply_transition(stale, source="open", dest="closing", trigger="close", reason="stop_loss",
                               price=1.0, ts=1.0, fields={}, intent=intent.to_fields())  # fmt: skip
    assert Queue(QUEUE, connection=client).get_job_ids() == []
    assert not client.exists(f"rq:job:{job_id(intent)}")
    fresh = store.load(pos.id)
    store.apply_transition(fresh, source="open", dest="closing", trigger="close", reason="stop_loss",
                           price=1.0, ts=1.0, fields={}, intent=intent.to_fields())  # fmt: skip
    assert Queue(QUEUE, connection=client).get_job_ids() == [job_id(intent)]


def test_a_failed_hand_off_writes_nothing_of_the_transition(real_redis: RealRedis) -> None:
    client = real_redis.client
    pos = lease_test.open_position(client)
    eng = lease_test.engine(client)
    eng.run_once(block_ms=0)
    before = (eng.store.load(pos.id).to_hash(), eng.store.log(pos.id))
    client.set("rq:queue:orders", "not a list")  # the push fails inside the script
    lease_test.tick(client, px=48_000.0)  # through the stop loss
    with pytest.raises(redis.ResponseError):
        eng.run_once(block_ms=0)
    assert (eng.store.load(pos.id).to_hash(), eng.store.log(pos.id)) == before
    assert eng.store.load(pos.id).state == "open"


def test_without_a_hand_off_the_engine_relays_an_intent_on_the_tick_that_wrote_it(
    real_redis: RealRedis,
) -> None:
    """Not after the rest of its batch of ticks: the first of five ticks closes the position (stop loss)."""
    client = real_redis.client
    pos = lease_test.open_position(client)
    eng = lease_test.engine(client, hand_off_to_rq=False)
    eng.run_once(block_ms=0)  # takes the lease, starts, hands over the entry's intents
    seen_at_flush: list[int] = []
    flush = eng.relay.flush

    def spy(symbols: list[str], count: int = 100, quarantine: Quarantine | None = None) -> int:
        moved = flush(symbols, count, quarantine)
        if moved:
            seen_at_flush.append(eng.ticks_seen)
        return moved

    eng.relay.flush = spy  # type: ignore[method-assign]
    before = eng.ticks_seen
    for _ in range(5):
        lease_test.tick(client, px=48_000.0)
    assert eng.run_once(block_ms=0) == 5
    assert eng.store.load(pos.id).state == "closing"
    assert seen_at_flush == [before + 1]

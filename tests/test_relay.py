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
from tests import test_lease as lease_test
from tests.conftest import RealRedis
from workers.relay import JOB, QUEUE, RETRY, Relay, job_id

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


def test_the_engine_hands_an_intent_over_on_the_tick_that_wrote_it(real_redis: RealRedis) -> None:
    """Not after the rest of its batch of ticks: the first of five ticks closes the position."""
    client = real_redis.client
    pos = lease_test.open_position(client, close_request="manual")
    eng = lease_test.engine(client)
    eng.run_once(block_ms=0)  # takes the lease, starts, hands over the entry's intents
    seen_at_flush: list[int] = []
    flush = eng.relay.flush

    def spy(symbols: list[str], count: int = 100) -> int:
        moved = flush(symbols, count)
        if moved:
            seen_at_flush.append(eng.ticks_seen)
        return moved

    eng.relay.flush = spy  # type: ignore[method-assign]
    before = eng.ticks_seen
    for _ in range(5):
        lease_test.tick(client)
    assert eng.run_once(block_ms=0) == 5
    assert eng.store.load(pos.id).state == "closing"
    assert seen_at_flush == [before + 1]

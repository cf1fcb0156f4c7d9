"""The counters /metrics exports, kept in Redis where they are counted (statemachines/counters.py): a
transition counted by the script that applies it, the reconciler's corrections with its verdict, dropped
records with the quarantine's flush, the OKX client's reconnects and rate-limit replies taken once, and a
latency histogram that Prometheus's own parser reads back as the observations made. The demo run's counters
moving through the real processes: tests/test_web.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from config.settings import Settings
from exchanges.okx import counts
from exchanges.okx.ratelimit import Kind, RateLimiter
from scalper.web.app import build_app
from statemachines import counters
from statemachines.keys import Keys
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import stored_position
from workers.quarantine import Quarantine

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
KEYS = Keys("scalper")


def _text(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()}  # fmt: skip


def _scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    settings = Settings(_env_file=None, symbols={BTC: {}, ETH: {}},  # type: ignore[call-arg,dict-item]
                        web={"token": SecretStr("t" * 20)})  # type: ignore[arg-type]
    text = TestClient(build_app(settings, client)).get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


@pytest.mark.redis
def test_a_latency_histogram_reads_back_cumulative_with_its_sum_and_count(real_redis: RealRedis) -> None:
    client = real_redis.client
    key = KEYS.metric("order-latency")
    pipe = client.pipeline(transaction=False)
    for seconds in (0.0004, 0.001, 0.003, 0.003, 0.2, 60.0):
        counters.observe(pipe, key, "decision_to_sent", seconds)
    counters.observe(pipe, key, "sent_to_acknowledged", 0.02)
    pipe.execute()
    assert counters.bucket_of(0.001) == "0.001"  # a bound holds what equals it ("le")
    assert counters.bucket_of(0.0011) == "0.0025" and counters.bucket_of(11.0) == "+Inf"
    hist = counters.read_histogram(client.hgetall(key))
    buckets, total = hist["decision_to_sent"]
    as_dict = dict(buckets)
    assert as_dict["0.001"] == 2 and as_dict["0.005"] == 4 and as_dict["0.25"] == 5 and as_dict["10.0"] == 5
    assert buckets[-1] == ("+Inf", 6)
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)  # cumulative
    assert total == pytest.approx(60.2074)
    assert dict(hist["sent_to_acknowledged"][0])["0.025"] == 1
    # Exported, Prometheus's parser reads the same histogram back.
    samples = _scrape(client)
    stage = ("stage", "decision_to_sent")
    assert samples[("scalper_order_latency_seconds_count", (stage,))] == 6
    assert samples[("scalper_order_latency_seconds_bucket", (("le", "0.005"), stage))] == 4
    assert samples[("scalper_order_latency_seconds_bucket", (("le", "+Inf"), stage))] == 6
    assert samples[("scalper_order_latency_seconds_sum", (stage,))] == pytest.approx(60.2074)


@pytest.mark.redis
def test_dropped_records_are_counted_by_source_and_reason_code_with_the_flush(real_redis: RealRedis) -> None:
    client = real_redis.client
    q = Quarantine(client, KEYS, process="engine-test")
    q.put(f"ticks:{BTC}", "outside_band: price 1.0 is more than 5% from 46000", {"px": "1.0"})
    q.put(f"ticks:{ETH}", "outside_band: price 9 is more than 5% from 3000", {"px": "9"})
    q.put(f"ticks:{BTC}", "future: time 3600.0s ahead of the clock (max 5s)", {"px": "46000"})
    q.put("control", "bad_command: no such action", {"action": "x"})
    assert client.hgetall(KEYS.metric("dropped")) == {}  # nothing until the flush the engine does anyway
    q.flush()
    assert _text(client.hgetall(KEYS.metric("dropped"))) == {
        "ticks|outside_band": "2", "ticks|future": "1", "control|bad_command": "1"}
    samples = _scrape(client)
    assert samples[("scalper_dropped_messages_total", (("reason", "outside_band"), ("source", "ticks")))] == 2
    assert samples[("scalper_dropped_messages_total", (("reason", "future"), ("source", "ticks")))] == 1


@pytest.mark.redis
def test_the_okx_client_s_counts_are_written_once_whichever_writer_takes_them(real_redis: RealRedis) -> None:
    client = real_redis.client
    pipe = client.pipeline(transaction=False)
    counts.write_pending(pipe, KEYS)  # whatever earlier tests of this process left
    pipe.execute()
    client.delete(KEYS.metric("rate-limited"), KEYS.metric("reconnects"))
    limiter = RateLimiter(clock=lambda: 0.0)
    limiter.penalize(Kind.PLACE, BTC)
    limiter.penalize(Kind.PLACE, BTC)
    limiter.penalize(Kind.CANCEL)
    counts.RECONNECTS["okx-public"] += 1
    assert counts.pending()
    for _ in range(2):  # e.g. the reconciler's verdict, then an order job's outcome, in one process
        pipe = client.pipeline(transaction=False)
        counts.write_pending(pipe, KEYS)
        pipe.execute()
    assert not counts.pending()
    assert _text(client.hgetall(KEYS.metric("rate-limited"))) == {"place": "2", "cancel": "1"}
    assert _text(client.hgetall(KEYS.metric("reconnects"))) == {"okx-public": "1"}
    samples = _scrape(client)
    assert samples[("scalper_rate_limited_total", (("kind", "place"),))] == 2
    assert samples[("scalper_ws_reconnects_total", (("stream", "okx-public"),))] == 1


@pytest.mark.redis
def test_transitions_are_counted_by_the_script_that_applies_them(real_redis: RealRedis) -> None:
    store = PositionStore(real_redis.client)
    stored_position(store, BTC)  # create, entry_filled, close, close_filled
    stored_position(store, BTC, steps=1)
    stored_position(store, ETH, steps=0)
    assert _text(real_redis.client.hgetall(KEYS.transitions(BTC))) == {
        "|opening|create": "2", "opening|open|entry_filled": "2", "open|closing|close": "1",
        "closing|closed|close_filled": "1"}
    samples = _scrape(real_redis.client)

    def moved(symbol: str, src: str, dst: str, trigger: str) -> float:
        labels = (("from", src), ("symbol", symbol), ("to", dst), ("trigger", trigger))
        return samples[("scalper_transitions_total", labels)]

    assert moved(BTC, "opening", "open", "entry_filled") == 2
    assert moved(BTC, "closing", "closed", "close_filled") == 1
    assert moved(ETH, "", "opening", "create") == 1

"""`scalper web` (scalper/web/): the HTTP API reads Redis and never writes a position; its actions go through
the operator command path with a token; /ready tells an orchestrator the truth; /metrics parses with
prometheus_client's own parser. Real redis-server; the app through Starlette's test client, and the process
as `scalper web` would be run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import TestClient

from config.settings import Settings
from scalper.embedded import LocalRedis
from scalper.web.app import build_app
from scalper.web.views import Views
from statemachines.keys import Keys
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import ScalperRun, kill_leftovers, stored_position
from workers.lease import Lease

pytestmark = pytest.mark.redis
BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
TOKEN = "op-token-1234567890"
ROOT = Path(__file__).resolve().parents[1]


def _settings(token: str | None = TOKEN) -> Settings:
    return Settings(_env_file=None, symbols={BTC: {}, ETH: {}},  # type: ignore[call-arg,dict-item]
                    web={"token": SecretStr(token) if token else None})  # type: ignore[arg-type]


def _client(real_redis: RealRedis, token: str | None = TOKEN) -> TestClient:
    return TestClient(build_app(_settings(token), real_redis.client))


def test_health_and_readiness(real_redis: RealRedis) -> None:
    api, keys = _client(real_redis), Keys("scalper")
    assert api.get("/health").json() == {"alive": True}
    not_ready = api.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["why"] == ["no engine holds a shard's lease", "exchange state unknown"]
    assert Lease(real_redis.client, keys.lease("all"), ttl_s=30, listed_in=(keys.leases(), "all")).acquire()
    real_redis.client.hset(keys.exchange(), mapping={"state": "ok", "since": repr(time.time()), "why": ""})
    assert api.get("/ready").json() == {"ready": True, "why": []}
    # Redis gone: not ready, with the reason, and the reads answer 503 instead of a traceback.
    dead = redis.Redis(unix_socket_path=str(Path(real_redis.socket_path).with_name("nothing.sock")))
    gone = TestClient(build_app(_settings(), dead))
    assert gone.get("/ready").status_code == 503 and gone.get("/ready").json()["why"][0].startswith("redis")
    assert gone.get("/api/positions").status_code == 503
    assert gone.get("/health").status_code == 200  # the process itself is alive


def test_positions_summary_and_a_position_s_log(real_redis: RealRedis) -> None:
    store = PositionStore(real_redis.client)
    live = stored_position(store, BTC, steps=1)  # open
    closed = stored_position(store, ETH, pnl="3.5", fees="-0.5")
    api = _client(real_redis)
    rows = api.get("/api/positions").json()
    assert [r["id"] for r in rows] == [live.id] and rows[0]["state"] == "open"
    everything = {r["id"]: r for r in api.get("/api/positions", params={"all": "1"}).json()}
    assert everything[closed.id]["net"] == 3.0 and everything[closed.id]["gross"] == 3.5
    shown = api.get(f"/api/positions/{closed.id}").json()
    assert [e["to"] for e in shown["log"]] == ["opening", "open", "closing", "closed"]
    assert all(e["ts"].endswith("Z") and isinstance(e["version"], int) for e in shown["log"])
    assert api.get("/api/positions/zzzzzzzzzzzz").status_code == 404
    summary = api.get("/api/summary").json()
    assert summary["all"] == {"trades": 1, "net": 3.0, "gross": 3.5, "fees": -0.5, "wins": 1}
    assert summary["today"]["trades"] == 1 and summary["live"] == 1
    assert summary["by_state"]["open"] == 1 and summary["by_state"]["closed"] == 1
    health = api.get("/api/health").json()
    assert set(health) >= {"feeds", "engines", "exchange", "orders", "redis", "panic", "quarantined"}
    assert health["redis"]["used_memory_bytes"] > 0 and health["panic"] is False


def test_actions_need_the_token_and_go_through_the_operator_command_path(real_redis: RealRedis) -> None:
    store = PositionStore(real_redis.client)
    pos = stored_position(store, BTC, steps=1)
    read_only = _client(real_redis, token=None)
    assert read_only.post(f"/api/positions/{pos.id}/close").status_code == 403
    api = _client(real_redis)
    assert api.post(f"/api/positions/{pos.id}/close").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert api.post(f"/api/positions/{pos.id}/close", headers=wrong).status_code == 401
    assert store.load(pos.id).close_request == ""  # nothing was asked
    auth = {"Authorization": f"Bearer {TOKEN}"}
    asked = api.post(f"/api/positions/{pos.id}/close", headers=auth)
    assert asked.status_code == 202
    assert store.load(pos.id).close_request == "manual" and store.load(pos.id).state == "open"  # engine's job
    command = asked.json()["command"]
    sent = [f for _, f in real_redis.client.xrange(store.keys.control())]
    assert any(f[b"cmd_id"].decode() == command and f[b"cmd"] == b"close" for f in sent)
    assert api.get(f"/api/commands/{command}").status_code == 404  # no engine answered yet
    assert api.post("/api/positions/zzzzzzzzzzzz/close", headers=auth).status_code == 404
    assert api.post("/api/panic", headers=auth).json()["panic"] is True
    assert real_redis.client.exists(store.keys.panic())
    assert api.post("/api/panic/off", headers=auth).json()["panic"] is False
    assert not real_redis.client.exists(store.keys.panic())


def test_metrics_parse_with_prometheus_client_s_parser(real_redis: RealRedis) -> None:
    store = PositionStore(real_redis.client)
    stored_position(store, BTC, steps=1)
    stored_position(store, ETH, pnl="2", fees="-1")
    real_redis.client.hincrby(store.keys.quarantined(), "ticks", 3)
    text = _client(real_redis).get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip
    assert samples[("scalper_positions", (("state", "open"),))] == 1
    assert samples[("scalper_positions", (("state", "closed"),))] == 1
    assert samples[("scalper_quarantined_records_total", (("source", "ticks"),))] == 3
    assert samples[("scalper_trades_closed_total", ())] == 1
    assert samples[("scalper_realized_pnl", (("kind", "net"),))] == 1.0
    assert samples[("scalper_exchange_known", ())] == 0


def test_the_web_process_serves_says_not_ready_when_redis_stops_and_ends_on_sigterm(
    local_redis: LocalRedis, tmp_path: Path
) -> None:
    local_redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")}
    env |= {"REDIS_URL": f"unix://{local_redis.socket_path}", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "scalper", "web", "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    client = local_redis.client()
    try:
        deadline, url = time.monotonic() + 20, None
        while time.monotonic() < deadline and not url:
            url = client.get("scalper:web:url")
            time.sleep(0.05)
        assert url, proc.stdout.read() if proc.poll() is not None else "no URL published"  # type: ignore[union-attr]
        base = url.decode()
        for _ in range(100):
            try:
                assert httpx.get(f"{base}/health", timeout=2).json() == {"alive": True}
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 503  # no engine: not ready
        local_redis.stop()
        gone = httpx.get(f"{base}/ready", timeout=30)
        assert gone.status_code == 503 and gone.json()["why"][0].startswith("redis"), gone.text
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_the_demo_run_prints_the_api_address_and_its_metrics_move(tmp_path: Path) -> None:
    """`scalper run --replay sample` starts `web` and prints where it serves; scraped during the demo, the
    metrics move (trades close)."""
    run = ScalperRun(tmp_path, "--replay", "sample", "--speed", "6000", env={"SCALPER_WEB__PORT": "0"})
    try:
        run.wait_for("scalper: web API at ", timeout=40)
        base = re.search(r"web API at (\S+)", run.stdout()).group(1)  # type: ignore[union-attr]

        def scrape() -> dict[str, float]:
            text = httpx.get(f"{base}/metrics", timeout=5).text
            return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if not s.labels}  # fmt: skip

        first, deadline = scrape(), time.monotonic() + 60
        while scrape()["scalper_trades_closed_total"] <= first["scalper_trades_closed_total"]:
            assert time.monotonic() < deadline, run.stdout()
            time.sleep(0.5)
        assert httpx.get(f"{base}/api/summary", timeout=5).json()["all"]["trades"] >= 1
        # The counters the processes keep in Redis moved, with their labels: the engine's transitions (its
        # store's scripts), the order workers' jobs and their latency (decision -> sent -> acknowledged).
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{base}/metrics").text)}
        moved: dict[tuple[str, ...], float] = {}
        for s in families["scalper_transitions"].samples:
            key = (s.labels["from"], s.labels["to"], s.labels["trigger"])
            moved[key] = moved.get(key, 0) + s.value
        assert moved[("", "opening", "create")] >= 1 and moved[("opening", "open", "entry_filled")] >= 1
        assert sum(n for (_, to, _), n in moved.items() if to == "closed") >= 1
        orders = {(s.labels["action"], s.labels["result"]): s.value
                  for s in families["scalper_orders"].samples}  # fmt: skip
        assert orders[("open", "placed")] >= 1 and orders[("close", "placed")] >= 1, orders
        latency = {(s.name, s.labels["stage"], s.labels.get("le", "")): s.value
                   for s in families["scalper_order_latency_seconds"].samples}  # fmt: skip
        for stage in ("decision_to_sent", "sent_to_acknowledged", "decision_to_acknowledged"):
            count = latency[("scalper_order_latency_seconds_count", stage, "")]
            assert count >= 2 and latency[("scalper_order_latency_seconds_bucket", stage, "+Inf")] == count
            assert 0 < latency[("scalper_order_latency_seconds_sum", stage, "")] < count * 10
    finally:
        code = run.stop()
        kill_leftovers(run.seen)
    assert code == 0, run.stderr()[-2000:]


def test_the_board_s_one_read_gives_the_same_totals_and_rows_as_the_api_s_own_reads(
    real_redis: RealRedis,
) -> None:
    """The dashboard's stream reads every position and the ledger once a second for both the board and
    its totals; the result is what /api/summary and /api/positions read separately."""
    store = PositionStore(real_redis.client)
    stored_position(store, BTC, steps=1)
    stored_position(store, ETH, pnl="2", fees="-1")
    stored_position(store, BTC, pnl="-4", fees="-0.5")
    views = Views(real_redis.client, store, [BTC, ETH])
    board = views.board()
    assert {k: v for k, v in board["summary"].items() if k != "time"} == {
        k: v for k, v in views.summary().items() if k != "time"}
    assert board["summary"]["all"]["trades"] == 2 and board["summary"]["by_state"]["open"] == 1
    assert [r["id"] for r in board["positions"]] == [r["id"] for r in views.positions()]
    closed = [r["id"] for r in views.positions(include_closed=True) if r["state"] == "closed"]
    assert [r["id"] for r in board["closed"]] == closed[::-1]

"""`scalper notify` (scalper/notify.py): the events that need a person reach a plain webhook through apprise
(`json://` to a receiver in this test), what was already so at its start is not told again, and at most
`notify.max_per_minute` go out a minute, the rest counted in one line after it. Real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal as D
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from config.settings import Settings
from scalper.notify import Notifier, apprise_sender
from scalper.restart_log import RestartLog
from scalper.supervisor import Child, Children, RestartPolicy
from statemachines.keys import Keys
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import stored_position
from workers.riskstate import RiskState

pytestmark = pytest.mark.redis
BTC = "BTC-USDT-SWAP"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook: every JSON body apprise posts, in order."""
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()


def _settings(url: str, per_minute: int = 20) -> Settings:
    return Settings(_env_file=None, symbols={BTC: {}},  # type: ignore[call-arg,dict-item]
                    notify={"urls": [SecretStr(url)], "max_per_minute": per_minute})  # type: ignore[arg-type]


def _client(real_redis: RealRedis) -> redis.Redis:
    return redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=True)


def test_the_events_reach_a_webhook_and_old_news_is_not_told(
    real_redis: RealRedis, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = receiver
    store, keys = PositionStore(real_redis.client), Keys("scalper")
    stored_position(store, BTC)  # closed before the notifier started: not news
    real_redis.client.hset(keys.quarantined(), "ticks", 2)
    settings = _settings(url)
    notifier = Notifier(_client(real_redis), settings, apprise_sender(settings))  # type: ignore[arg-type]
    notifier.poll()
    assert got == []
    pos = stored_position(store, BTC, steps=1)  # opened
    real_redis.client.hset(keys.exchange(), mapping={"state": "ok", "why": ""})
    real_redis.client.set(keys.panic(), "1")
    real_redis.client.hincrby(keys.quarantined(), "ticks", 1)
    notifier.poll()
    titles = [m["title"] for m in got]
    assert titles == [f"scalper: {BTC} long opened", "scalper: exchange known again", "scalper: panic on",
                      "scalper: records quarantined"]  # fmt: skip
    assert "1 ticks record(s)" in got[-1]["message"] and "(3 in all)" in got[-1]["message"]
    for source, dest, trigger, reason in [("open", "closing", "close", "stop_loss"),
                                          ("closing", "closed", "close_filled", "close order filled")]:
        pos.version = store.apply_transition(pos, source=source, dest=dest, trigger=trigger, reason=reason,
                                             price=100.0, ts=time.time(),
                                             fields={"realized_pnl": "-3", "fees": "-0.5"} if dest == "closed" else {})  # fmt: skip # noqa: E501
        pos.state = dest
    real_redis.client.hset(keys.exchange(), mapping={"state": "unknown", "why": "positions read failed"})
    real_redis.client.delete(keys.panic())
    RiskState.from_settings(real_redis.client, settings).record_close(BTC, D("-250"), time.time(),
                                                                       position_id=pos.id)  # fmt: skip
    notifier.poll()
    new = {m["title"]: m["message"] for m in got[4:]}
    assert new[f"scalper: {BTC} long closed"].endswith("net -3.50 (gross -3.00, fees -0.50), exit reason "
                                                       "close order filled")  # fmt: skip
    assert new["scalper: exchange unknown"] == "entries halted until it can be read: positions read failed"
    assert "scalper: panic off" in new
    assert new["scalper: daily loss limit reached"].startswith("today's net PnL -250.00 (limit -200.00)")
    notifier.poll()
    assert len(got) == 4 + len(new)  # nothing new: nothing sent


def test_at_most_max_per_minute_go_out_and_the_rest_are_counted(
    real_redis: RealRedis, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = receiver
    clock = [1_800_000_000.0]
    settings = _settings(url, per_minute=3)
    notifier = Notifier(_client(real_redis), settings, apprise_sender(settings),  # type: ignore[arg-type]
                        clock=lambda: clock[0])  # fmt: skip
    store = PositionStore(real_redis.client)
    for _ in range(5):
        stored_position(store, BTC, steps=1)  # five openings at once
    notifier.poll()
    assert len(got) == 3
    clock[0] += 61
    notifier.poll()
    assert len(got) == 4 and got[-1]["title"] == "scalper: notifications held back"
    assert got[-1]["message"].startswith("2 more in the last minute")


def test_the_notify_process_sends_and_stops_on_sigterm(
    real_redis: RealRedis, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, got = receiver
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")}
    env |= {"REDIS_URL": f"unix://{real_redis.socket_path}", "PYTHONPATH": str(ROOT),
            "SCALPER_NOTIFY__URLS": json.dumps([url])}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "scalper", "notify"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        time.sleep(2.0)  # started and took its first look
        real_redis.client.set("scalper:panic", "1")
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [m["title"] for m in got] == ["scalper: panic on"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0, out
    assert url.split("//")[1] not in out  # the destination (a secret) is never logged


def test_a_process_the_supervisor_restarts_and_a_reconciler_correction_reach_the_webhook(
    real_redis: RealRedis, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """The supervisor records each restart in Redis (scalper/restart_log.py); notify tells it, once, with
    the exit and the child's last line. A restart from before the notifier started is not news."""
    url, got = receiver
    keys, store = Keys("scalper"), PositionStore(real_redis.client)
    restarts = RestartLog(_client(real_redis), keys)
    restarts.add("feed", "exit code 1", 3.0, 1, "an old crash")  # before notify started
    settings = _settings(url)
    notifier = Notifier(_client(real_redis), settings, apprise_sender(settings))  # type: ignore[arg-type]
    notifier.poll()
    assert got == []
    crashy = Child("crashy", [sys.executable, "-c", "import sys; print('boom: bad things', file=sys.stderr); "
                              "sys.exit(3)"])  # fmt: skip
    children = Children([crashy], dict(os.environ), RestartPolicy(backoff_s=(30.0,)), replay=False,
                        restarts=restarts)  # fmt: skip
    children.start(crashy)
    try:
        assert crashy.proc is not None and crashy.proc.wait(timeout=20) == 3
        children.check()  # exited: restart scheduled, and recorded
    finally:
        children.stop_all()
    assert crashy.restarts == 1
    pos = stored_position(store, BTC, steps=1)
    store.apply_transition(pos, source="open", dest="closed", trigger="external_close",
                           reason="exchange shows no position", price=100.0, ts=time.time(),
                           fields={"realized_pnl": "1", "fees": "-0.1"})  # fmt: skip
    notifier.poll()
    messages = {m["title"]: m["message"] for m in got}
    assert messages["scalper: crashy restarted"] == (
        "the supervisor restarted crashy (restart 1): it exited with exit code 3 after "
        f"{float(real_redis.client.xrevrange(keys.restarts(), count=1)[0][1][b'ran_s']):.1f}s; its last "
        "line: boom: bad things")
    assert "scalper: feed restarted" not in messages
    assert messages["scalper: reconciler correction"] == (
        f"{BTC} {pos.id}: external_close (exchange shows no position)")
    notifier.poll()
    assert len(got) == len(messages)  # told once


def test_a_restart_redis_refuses_is_kept_and_recorded_on_a_later_turn(real_redis: RealRedis) -> None:
    """A child often exits because Redis is in trouble: its restart is kept, and the supervisor goes on."""
    keys = Keys("scalper")
    dead = redis.Redis(unix_socket_path=str(Path(real_redis.socket_path).with_name("nothing.sock")))
    restarts = RestartLog(dead, keys)
    restarts.add("engine-all", "signal SIGKILL", 12.5, 2, "")
    assert len(restarts.pending) == 1 and real_redis.client.xlen(keys.restarts()) == 0
    restarts.client = real_redis.client  # Redis is back
    restarts.flush()
    ((_, fields),) = real_redis.client.xrange(keys.restarts())
    assert (fields[b"name"], fields[b"code"], fields[b"ran_s"], fields[b"restarts"]) == (
        b"engine-all", b"signal SIGKILL", b"12.5", b"2")
    assert restarts.pending == []

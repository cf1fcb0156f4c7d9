"""The embedded redis-server: never two on one data directory, a left-over one stopped cleanly, and a data
directory too deep for a unix socket path handled without leaving anything behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from scalper.embedded import EmbeddedRedisError, LocalRedis, alive, stale_servers, stop_stale_servers


@pytest.fixture
def servers() -> list[LocalRedis]:
    started: list[LocalRedis] = []
    yield started  # type: ignore[misc]
    for server in started:
        server.close()


def test_a_second_server_on_one_data_dir_is_refused_even_when_the_first_lost_its_socket(
    tmp_path: Path, servers: list[LocalRedis]
) -> None:
    first = LocalRedis(tmp_path)
    servers.append(first)
    first.start()
    os.unlink(first.socket_path)  # nothing answers at the address any more; the process still appends
    assert stale_servers(tmp_path) == {first.pid: None}  # found by its working directory
    second = LocalRedis(tmp_path)
    with pytest.raises(EmbeddedRedisError, match=f"pid {first.pid}.*never two on one append-only file"):
        second.start()
    assert alive(first.pid or 0)


def test_a_left_over_server_is_stopped_cleanly_and_what_it_held_is_kept(
    tmp_path: Path, servers: list[LocalRedis]
) -> None:
    left = LocalRedis(tmp_path, appendfsync="no")  # nothing fsynced but by the shutdown
    servers.append(left)
    left.start()
    left.client().set("held", "yes")
    pid = left.pid
    assert stop_stale_servers(tmp_path) == [pid]
    assert not alive(pid or 0)

    again = LocalRedis(tmp_path)
    servers.append(again)
    again.start()
    assert again.client().get("held") == b"yes"


def test_a_data_dir_too_deep_for_a_socket_path_gets_a_private_socket_dir_that_restarts_reuse(
    tmp_path: Path, servers: list[LocalRedis]
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = LocalRedis(deep)
    servers.append(server)
    server.start()
    socket_dir = Path(server.socket_path).parent
    assert socket_dir.parent == Path(tempfile.gettempdir()) and oct(socket_dir.stat().st_mode)[-3:] == "700"
    server.client().set("k", "v")
    server.kill()
    server.start()  # same directory, same socket path
    assert LocalRedis(deep).socket_path == server.socket_path
    assert server.client().get("k") == b"v"
    server.close()
    assert not socket_dir.exists()

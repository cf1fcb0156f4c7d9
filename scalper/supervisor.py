"""`scalper run`: every process of the Procfile on one machine, around one Redis.

With no REDIS_URL it holds the data directory (one run per directory: scalper/datalock.py), starts the
embedded redis-server on it (scalper/embedded.py) and points the children at it. The server and every child
die with the run, even when it is SIGKILLed (scalper/deathsig.py). A child that exits is started again
after a short back-off, as a process manager would; one that keeps exiting within seconds of its start
stops the run with its last error line instead of restarting forever. Ctrl-C (SIGINT, SIGTERM) stops the
children, then marks the stop as clean in Redis and shuts the embedded server down.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

import redis

from config.settings import Settings
from scalper.datalock import DataDirBusy, lock_data_dir
from scalper.deathsig import dies_with_parent
from scalper.embedded import EmbeddedRedisError, LocalRedis, cli_path, start_embedded
from scalper.restart_log import RestartLog
from statemachines.keys import Keys

log = logging.getLogger("scalper.run")


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that exited is started again, and when the run gives up on it."""

    # A child that ran this long had been working: its exit is a new fault, not the same one again.
    healthy_after_s: float = 30.0
    # This many short-lived runs in a row stop the whole run.
    give_up_after: int = 5
    # The wait before the 1st, 2nd, ... restart of a row of short-lived runs; the last one repeats.
    backoff_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)

    def wait_before(self, failures: int) -> float:
        return self.backoff_s[min(failures, len(self.backoff_s)) - 1]


RESTARTS = RestartPolicy()
STOP_TIMEOUT_S = 10.0  # a child still running this long after SIGTERM is killed


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures: int = 0  # short-lived runs in a row
    finished: bool = False  # the replay ended: not started again
    started_at: float = 0.0
    restart_at: float | None = None
    last_error: str = ""  # the last line it wrote to stderr
    _partial: bytes = field(default=b"", repr=False)


def _argv(*args: str, verbose: bool = False) -> list[str]:
    return [sys.executable, "-m", "scalper", *(["-v"] if verbose else []), *args]


def plan(replay: str | None, speed: float, workers: int, verbose: bool = False,
         lockstep: bool = False, notify: bool = False) -> list[Child]:  # fmt: skip
    feed = ["feed"] + (["--replay", replay, "--speed", str(speed)] if replay else [])
    feed += ["--lockstep"] if replay and lockstep else []
    engine = ["engine"] + (["--clock", "data"] if replay else [])
    children = [
        Child("account", _argv("account", verbose=verbose)),
        Child("engine", _argv(*engine, verbose=verbose)),
    ]
    children += [Child(f"worker{i + 1}", _argv("worker", verbose=verbose)) for i in range(workers)]
    children.append(
        Child("feed", _argv(*feed, verbose=verbose))
    )  # last: the venue and the engine are ready for its ticks
    children.append(Child("web", _argv("web", "--any-port-if-busy", verbose=verbose)))
    if notify:  # only with somewhere to send
        children.append(Child("notify", _argv("notify", verbose=verbose)))
    return children


class GiveUp(Exception):
    """A child keeps failing at its start: the run stops, with this one-line message."""


class Children:
    """Starts, watches and stops the children. Their stderr passes through this process line by line (so the
    last error line of each is known) and is copied to ours as it comes."""

    def __init__(self, children: list[Child], env: dict[str, str], policy: RestartPolicy,
                 replay: bool, restarts: RestartLog | None = None) -> None:  # fmt: skip
        self.children, self.env, self.policy, self.replay = children, env, policy, replay
        self.restarts = restarts  # where a restart is recorded for `scalper notify` (None: no Redis known)
        self.selector = selectors.DefaultSelector()

    def start(self, child: Child) -> None:
        # SIGKILL, not SIGTERM, when the run dies: the embedded Redis goes with it, and a child asked to stop
        # while Redis is gone may wait for it forever (an RQ worker does). Every child is built to be killed
        # at any instant; a run that stops normally still asks each to stop first (stop_all).
        child.proc = subprocess.Popen(child.argv, env=self.env, stderr=subprocess.PIPE,
                                      preexec_fn=dies_with_parent(signal.SIGKILL))  # fmt: skip
        assert child.proc.stderr is not None
        os.set_blocking(child.proc.stderr.fileno(), False)
        self.selector.register(child.proc.stderr, selectors.EVENT_READ, child)
        child.started_at, child.restart_at, child.last_error = time.monotonic(), None, ""

    def pump(self, timeout_s: float) -> None:
        """Copy what the children wrote to stderr, waiting up to `timeout_s` for something to come."""
        if not self.selector.get_map():
            time.sleep(timeout_s)
            return
        for key, _ in self.selector.select(timeout_s):
            self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _read(self, stream: IO[bytes], child: Child) -> None:
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:  # every writer closed it (the child, and whatever it forked)
                self.selector.unregister(stream)
                stream.close()
                self._lines(child, child._partial + b"\n" if child._partial else b"")
                child._partial = b""
                return
            self._lines(child, child._partial + chunk)

    def _lines(self, child: Child, data: bytes) -> None:
        *lines, child._partial = data.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            sys.stderr.write(text + "\n")
            if text.strip():
                child.last_error = text.strip()
        if lines:
            sys.stderr.flush()

    def check(self) -> None:
        """Start again the children that exited and whose back-off is over; GiveUp on a crash loop."""
        now = time.monotonic()
        for child in self.children:
            if child.finished:
                continue
            if child.proc is None:
                if child.restart_at is not None and now >= child.restart_at:
                    self.start(child)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            self._drain(child)
            child.proc = None
            if code == 0 and child.name == "feed" and self.replay:
                child.finished = True  # the recording ended; the rest keeps running
                print("scalper: replay finished; positions keep being managed (Ctrl-C stops)")
                continue
            self._after_exit(child, code, now)

    def _drain(self, child: Child) -> None:
        assert child.proc is not None
        if child.proc.stderr is not None and not child.proc.stderr.closed:
            self._read(child.proc.stderr, child)
        if child._partial.strip():
            child.last_error = child._partial.decode(errors="replace").strip()

    def _after_exit(self, child: Child, code: int, now: float) -> None:
        ran = now - child.started_at
        child.failures = child.failures + 1 if ran < self.policy.healthy_after_s else 1
        if child.failures >= self.policy.give_up_after:
            raise GiveUp(f"{child.name} exited {child.failures} times in a row within "
                         f"{self.policy.healthy_after_s:g}s of its start ({_exit_text(code)}); stopping the "
                         f"run. Its last error: {child.last_error or '(nothing on stderr)'}")  # fmt: skip
        child.restarts += 1
        delay = self.policy.wait_before(child.failures)
        print(f"scalper: {child.name} exited with {_exit_text(code)} after {ran:.1f}s; restarting in "
              f"{delay:g}s ({child.restarts})")  # fmt: skip
        child.restart_at = now + delay
        if self.restarts is not None:
            self.restarts.add(child.name, _exit_text(code), ran, child.restarts, child.last_error)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every child (the last started first), then wait; SIGKILL one that outlasts
        `timeout_s`. Returns when every child has exited."""
        running = [c for c in reversed(self.children) if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.terminate()
        deadline = time.monotonic() + timeout_s
        while any(c.proc.poll() is None for c in running if c.proc) and time.monotonic() < deadline:
            self.pump(0.05)
        for child in running:
            assert child.proc is not None
            if child.proc.poll() is None:
                log.warning("%s did not stop within %.0fs: killed", child.name, timeout_s)
                child.proc.kill()
            child.proc.wait()
            self._drain(child)
        for key in list(self.selector.get_map().values()):  # held open by a grandchild that outlived it
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


def _exit_text(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def run(
    settings: Settings,
    *,
    replay: str | None,
    speed: float,
    workers: int = 1,
    duration: float = 0,
    verbose: bool = False,
    policy: RestartPolicy = RESTARTS,
    lockstep: bool = False,
) -> int:
    """0 after a stop (Ctrl-C, SIGTERM, `duration`); 1 when the data directory is busy, the embedded Redis
    cannot start, or a child keeps failing at its start."""
    env = dict(os.environ)
    data_dir = settings.redis.data_dir
    server: LocalRedis | None = None
    with _stop_signals() as stopping:
        if settings.redis.url is None:
            try:
                lock = lock_data_dir(data_dir)
            except DataDirBusy as err:
                print(f"scalper: {err}", file=sys.stderr)
                return 1
            try:
                server, stopped = start_embedded(data_dir)
            except EmbeddedRedisError as err:
                print(f"scalper: {err}", file=sys.stderr)
                lock.release()
                return 1
            for pid in stopped:
                print(f"scalper: stopped a redis-server (pid {pid}) an earlier run left serving {data_dir}/")
            env["REDIS_URL"] = f"unix://{server.socket_path}"
            print(f"scalper: embedded Redis at unix://{server.socket_path} (data in {data_dir}/)")
            print(f"scalper: inspect with: {cli_path()} -s {server.socket_path}")
        try:
            children = plan(replay, speed, workers, verbose, lockstep, notify=bool(settings.notify.urls))
            code = _supervise(settings, env, children, policy, duration, replay is not None,
                              stopping)  # fmt: skip
            from scalper.report_cmd import print_summary_at_stop

            print_summary_at_stop(env.get("REDIS_URL"), settings)  # what the run did, before Redis stops
            return code
        finally:
            if server is not None:
                _mark_clean_stop(server, settings.redis.prefix)
                server.stop()
                print("scalper: embedded Redis stopped")
                lock.release()


def _supervise(settings: Settings, env: dict[str, str], plan_: list[Child], policy: RestartPolicy,
               duration: float, replay: bool, stopping: list[bool]) -> int:  # fmt: skip
    watch = _watch(env.get("REDIS_URL"), settings)
    restarts = RestartLog(watch.client, Keys(settings.redis.prefix)) if watch is not None else None
    children = Children(plan_, env, policy, replay, restarts)
    deadline = time.monotonic() + duration if duration else float("inf")
    try:
        for child in plan_:
            children.start(child)
            children.pump(0.3)
        print("scalper: running " + ", ".join(c.name for c in plan_) + " (Ctrl-C stops)")
        while not stopping[0] and time.monotonic() < deadline:
            children.check()
            if watch is not None:
                watch.poll()
            if restarts is not None:
                restarts.flush()  # what Redis refused at the restart (nothing to do otherwise)
            children.pump(0.2)
    except GiveUp as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
    return 0


@contextmanager
def _stop_signals() -> Iterator[list[bool]]:
    """SIGINT and SIGTERM set the flag (the loop then stops everything in order); restored on the way out."""
    stopping = [False]

    def stop(_signum: int, _frame: object) -> None:
        stopping[0] = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(url: str | None, settings: Settings):  # type: ignore[no-untyped-def]
    from scalper.connect import connect, from_url
    from scalper.watch import Watch

    url = url or (settings.redis.url.get_secret_value() if settings.redis.url else None)
    if url is None:
        return None
    connect(url).close()  # the address, the password and TLS work, or a NoRedis that says which does not
    # Timeouts: the watch runs in the loop that restarts children, so a hung Redis must not hang it.
    client = from_url(url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)
    try:
        return Watch(client, settings.redis.prefix)
    except redis.RedisError as err:
        print(f"scalper: not showing position changes ({type(err).__name__}: {err})", file=sys.stderr)
        return None


def _mark_clean_stop(server: LocalRedis, prefix: str) -> None:
    """Every child has exited and the server is about to shut down cleanly: say so in Redis, with the
    server's run id, so that the next start can tell this stop from a crash."""
    try:
        client = server.client(decode_responses=True)
        client.set(Keys(prefix).clean_stop(), client.info("server")["run_id"])
    except redis.RedisError as err:
        log.warning("could not mark the stop as clean: %s", err)

"""`scalper run`: every process of the Procfile on one machine, around one Redis.

With no REDIS_URL it starts the embedded redis-server (append-only, under the data directory) and points
the children at it; a child that dies is started again (as a process manager would), and Ctrl-C stops the
children, then Redis, cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from config.settings import Settings
from scalper.embedded import LocalRedis, cli_path, start_embedded

log = logging.getLogger("scalper.run")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exited_ok: bool = False
    started_at: float = field(default=0.0)


def _argv(*args: str, verbose: bool = False) -> list[str]:
    return [sys.executable, "-m", "scalper", *(["-v"] if verbose else []), *args]


def plan(replay: str | None, speed: float, workers: int, verbose: bool = False) -> list[Child]:
    feed = ["feed"] + (["--replay", replay, "--speed", str(speed)] if replay else [])
    engine = ["engine"] + (["--clock", "data"] if replay else [])
    children = [
        Child("account", _argv("account", verbose=verbose)),
        Child("engine", _argv(*engine, verbose=verbose)),
    ]
    children += [Child(f"worker{i + 1}", _argv("worker", verbose=verbose)) for i in range(workers)]
    children.append(
        Child("feed", _argv(*feed, verbose=verbose))
    )  # last: the venue and the engine are ready for its ticks
    return children


def run(
    settings: Settings,
    *,
    replay: str | None,
    speed: float,
    workers: int = 1,
    duration: float = 0,
    verbose: bool = False,
) -> int:
    env = dict(os.environ)
    server: LocalRedis | None = None
    if settings.redis.url is None:
        server = start_embedded(settings.redis.data_dir)
        env["REDIS_URL"] = f"unix://{server.socket_path}"
        print(f"scalper: embedded Redis at unix://{server.socket_path} (data in {settings.redis.data_dir}/)")
        print(f"scalper: inspect with: {cli_path()} -s {server.socket_path}")
    children = plan(replay, speed, workers, verbose)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + duration if duration else float("inf")
    url = env.get("REDIS_URL") or (settings.redis.url.get_secret_value() if settings.redis.url else None)
    watch = _Watch(url, settings)
    try:
        for child in children:
            _start(child, env)
            time.sleep(0.3)
        print("scalper: running " + ", ".join(c.name for c in children) + " (Ctrl-C stops)")
        while not stopping and time.monotonic() < deadline:
            for child in children:
                code = child.proc.poll() if child.proc else 0
                if code is None or child.exited_ok:
                    continue
                if code == 0 and child.name == "feed" and replay:
                    child.exited_ok = True  # the recording ended; the rest keeps running
                    print("scalper: replay finished; positions keep being managed (Ctrl-C stops)")
                    continue
                child.restarts += 1
                print(f"scalper: {child.name} exited with {code}; restarting ({child.restarts})")
                _start(child, env)
            watch.poll()
            time.sleep(0.2)
    finally:
        for child in reversed(children):
            if child.proc and child.proc.poll() is None:
                child.proc.terminate()
        for child in children:
            if child.proc:
                try:
                    child.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
        if server is not None:
            server.stop()
            print("scalper: embedded Redis stopped")
    return 0


def _start(child: Child, env: dict[str, str]) -> None:
    child.proc = subprocess.Popen(child.argv, env=env)
    child.started_at = time.monotonic()


class _Watch:
    """Prints every position's state changes as they happen, so the run shows the lifecycle."""

    def __init__(self, url: str | None, settings: Settings) -> None:
        from scalper.connect import connect
        from statemachines.store import PositionStore

        self.store = PositionStore(connect(url), settings.redis.prefix) if url else None
        self.seen: dict[str, int] = {}
        self._next = 0.0
        if self.store is not None:  # positions from earlier runs: a summary, then only what is new
            earlier = [p for s in self.store.symbols() for p in self.store.load_symbol(s)]
            self.seen = {p.id: p.version for p in earlier}
            if earlier:
                live = [p for p in earlier if p.state != "closed"]
                print(f"scalper: {len(earlier)} positions from earlier runs, {len(live)} live: "
                      + (", ".join(f"{p.id} {p.state}" for p in live) or "none"))  # fmt: skip

    def poll(self) -> None:
        if self.store is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 1.0
        try:
            for symbol in self.store.symbols():
                for pid in self.store.ids(symbol):
                    self._show(pid)
        except Exception as err:  # the watch is cosmetic: never let it stop the run
            log.debug("watch: %s", err)

    def _show(self, pid: str) -> None:
        assert self.store is not None
        done = self.seen.get(pid, 0)
        log_ = self.store.log(pid)
        if len(log_) <= done:
            return
        pos = self.store.load(pid)
        for e in log_[done:]:
            what = f"{e['from'] or 'new'} -> {e['to']}"
            extra = f" ({e['reason']})" if e["reason"] else ""
            if e["to"] == "closed":
                extra += f"  pnl {pos.realized_pnl} fees {pos.fees}"
            print(f"  {pid} {pos.symbol} {pos.side.value:<5} {what:<22} {e['trigger']}{extra}")
        self.seen[pid] = len(log_)

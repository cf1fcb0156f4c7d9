"""A harness for end-to-end tests: scalper's real processes (separate OS processes, `python -m scalper ...`)
around a real redis-server, each of which a test can start, SIGKILL and start again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from scalper.connect import from_url
from statemachines.position import Position
from statemachines.store import PositionStore

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


class System:
    def __init__(self, socket_path: str, workdir: Path, *, url: str = "", **settings: str) -> None:
        """`url`: Redis at this URL instead of the unix socket (redis+sentinel://: tests/sentinelkit.py);
        the harness's own client follows it as the processes do."""
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_") and k != "REDIS_URL"}
        self.env |= {"REDIS_URL": url or f"unix://{socket_path}", "PYTHONPATH": str(ROOT),
                     "SCALPER_REDIS__DATA_DIR": str(workdir / "data")}  # fmt: skip
        self.env |= {f"SCALPER_{k.upper()}": v for k, v in settings.items()}
        self.client = from_url(url, socket_timeout=10) if url else redis.Redis(unix_socket_path=socket_path)
        self.store = PositionStore(self.client)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, int] = {}
        self.started_at: dict[str, float] = {}  # when each name was last started (time.time())

    def start(self, name: str, *args: str) -> None:
        self.started[name] = self.started.get(name, 0) + 1
        self.started_at[name] = time.time()
        log = (self.workdir / f"{name}.{self.started[name]}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "scalper", "-v", *args], env=self.env, cwd=self.workdir,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scalper", *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.workdir.glob("*.log")))  # fmt: skip

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 30.0, every: float = 0.05) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = probe()
            if got:
                return got
            for name, proc in self.procs.items():
                if proc.poll() is not None and name != "feed":
                    raise AssertionError(
                        f"{name} died (exit {proc.returncode}) waiting for {what}\n{self.logs()}"
                    )
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    # --- views ---

    def positions(self) -> list[Position]:
        """Every readable position (a hash that cannot be parsed is the engine's to flag, and left out)."""
        return [p for s in self.store.symbols() for p in self.store.load_symbol(s, on_bad=lambda *_: None)]

    def position(self, pid: str) -> Position:
        return self.store.load(pid)

    def fills(self) -> list[dict[str, str]]:
        """The paper venue's fills (its own record of every execution)."""
        key = "scalper:paper:{main}:fills"
        return [{k.decode(): v.decode() for k, v in f.items()} for _, f in self.client.xrange(key)]

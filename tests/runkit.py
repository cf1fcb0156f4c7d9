"""A harness for tests of `scalper run` itself: a real run in a subprocess, in a directory of its own (data
dir, HOME and TMPDIR all inside the test's tmp_path, so what it leaves behind is visible), a procfs view
of every process that belongs to it, and positions stored as the engine stores them, for its watch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from statemachines.keys import Keys
from statemachines.position import Position, Side, new_position_id
from statemachines.store import PositionStore

ROOT = Path(__file__).resolve().parents[1]


def run_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_") and k != "REDIS_URL"}
    for name in ("tmp", "home"):
        (workdir / name).mkdir(exist_ok=True)
    return env | {"PYTHONPATH": str(ROOT), "SCALPER_REDIS__DATA_DIR": str(workdir / "data"),
                  "TMPDIR": str(workdir / "tmp"), "HOME": str(workdir / "home")}  # fmt: skip


class ScalperRun:
    """`python -m scalper run ARGS` in `workdir`; stdout and stderr go to files the test reads."""

    def __init__(self, workdir: Path, *args: str, name: str = "run", new_session: bool = False,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.workdir, self.data_dir = workdir, workdir / "data"
        self.env = run_env(workdir) | (env or {})
        self.out, self.err = workdir / f"{name}.out", workdir / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "scalper", "run", *args], env=self.env,
                                         cwd=workdir, stdout=out, stderr=err,
                                         start_new_session=new_session)  # fmt: skip
        self.pid = self.proc.pid
        # Every process processes() ever found, with its start time: what cleanup may end, and only if the
        # pid was not reused meanwhile.
        self.seen: dict[int, str] = {}

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout():
            if self.proc.poll() is not None:
                raise AssertionError(f"run exited ({self.proc.returncode}) before {text!r}:\n"
                                     f"{self.stdout()}\n{self.stderr()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.stdout()}\n{self.stderr()}")
            time.sleep(0.05)

    def server(self) -> redis.Redis:
        """A client of the run's embedded Redis, at the address it published."""
        url = (self.data_dir / "redis.url").read_text().strip()
        return redis.Redis(unix_socket_path=url.removeprefix("unix://"), decode_responses=True)

    def wait_engine_started(self, timeout: float = 30.0) -> None:
        """Until the engine has taken its shard on this run's server (and so decided about an entry hold)."""
        self.wait_for("scalper: running", timeout)
        server, deadline = self.server(), time.monotonic() + timeout
        while server.get("scalper:engine:all:redis-run-id") != server.info("server")["run_id"]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the engine did not start within {timeout}s:\n{self.stderr()}")
            time.sleep(0.05)

    def processes(self) -> dict[int, str]:
        """pid -> name of the run, everything it started (its descendants) and every redis-server whose
        working directory is its data dir (a daemonized one is nobody's descendant)."""
        found = {p: _comm(p) for p in [self.pid, *descendants(self.pid)]}
        found |= {p: "redis-server" for p in redis_servers_in(self.data_dir)}
        found = {p: n for p, n in found.items() if n}
        self.seen |= {p: started_at(p) for p in found if p not in self.seen}
        return found

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scalper", *args], env=self.env, cwd=self.workdir,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    def wait_replayed(self, symbol: str, ticks: int, timeout: float = 200.0) -> None:
        """Until a lockstep replay (`--replay FILE --lockstep`) has fed `ticks` ticks of `symbol`, the engine
        has stepped on the last one, and the system is idle."""
        server, keys, deadline = self.server(), Keys(), time.monotonic() + timeout
        while True:
            fed = server.xlen(keys.ticks(symbol))
            mark = server.hgetall(keys.lockstep())
            last = server.xrevrange(keys.ticks(symbol), count=1)
            if fed == ticks and last and mark.get(symbol) == last[0][0] and mark.get("idle") == "1":
                return
            assert time.monotonic() < deadline, f"the replay did not finish: {fed}/{ticks} ticks, {mark}"
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ppids() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def descendants(pid: int) -> list[int]:
    parents = _ppids()
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        found += children
        frontier = children
    return found


def redis_servers_in(data_dir: Path) -> list[int]:
    """Live redis-server processes working in `data_dir` (Redis changes into its `dir`)."""
    target = str(data_dir.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _comm(int(entry.name)) == "redis-server":
            try:
                if os.readlink(entry / "cwd") == target and living(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def living(pid: int) -> bool:
    """Running: neither gone nor a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_all_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(living(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if living(p)]


def started_at(pid: int) -> str:
    """The process's start time (in clock ticks since boot): with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def kill_leftovers(processes: dict[int, str]) -> None:
    """Test cleanup only: SIGKILL each of these (pid -> start time) that still runs, never a reused pid."""
    for pid, start in processes.items():
        if start and living(pid) and started_at(pid) == start:
            os.kill(pid, signal.SIGKILL)


# The shortest lifecycle: (source, dest, trigger, reason) after the creation.
LIFECYCLE = [("opening", "open", "entry_filled", "fill"), ("open", "closing", "close", "max_hold_time"),
             ("closing", "closed", "close_filled", "close order filled")]  # fmt: skip


def stored_position(store: PositionStore, symbol: str, steps: int = len(LIFECYCLE), *, side: str = "long",
                    pnl: str = "1.5", fees: str = "-0.25") -> Position:  # fmt: skip
    """A position created and moved `steps` transitions along LIFECYCLE by the store's own scripts."""
    pos = Position(id=new_position_id(), symbol=symbol, side=Side(side))
    store.create(pos, reason="test entry", price=100.0, ts=time.time())
    for source, dest, trigger, reason in LIFECYCLE[:steps]:
        fields = {"realized_pnl": pnl, "fees": fees} if dest == "closed" else {}
        pos.version = store.apply_transition(pos, source=source, dest=dest, trigger=trigger, reason=reason,
                                             price=100.0, ts=time.time(), fields=fields)  # fmt: skip
        pos.state = dest
    return pos

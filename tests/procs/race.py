"""Race worker for tests/test_store_processes.py: load a position, wait at the barrier, fire a trigger.

    python tests/procs/race.py SOCKET PREFIX NAME

Protocol (Redis lists under race:*): RPUSH race:hello NAME once connected; then per job BLPOP
race:job:NAME -> "ID TRIGGER" (or "stop"), load the position, RPUSH race:ready NAME, BLPOP race:go:NAME,
fire, RPUSH race:result "NAME ID won|stale|error:...".
"""

from __future__ import annotations

import sys

import redis

from statemachines.machine import PositionMachine, StaleTransition
from statemachines.store import PositionStore


def main(socket_path: str, prefix: str, name: str) -> None:
    r = redis.Redis(unix_socket_path=socket_path, decode_responses=True)
    store = PositionStore(r, prefix=prefix)
    r.rpush("race:hello", name)
    while True:
        _, job = r.blpop([f"race:job:{name}"])
        if job == "stop":
            return
        pid, trigger = job.split()
        machine = PositionMachine(store=store)  # fresh, as a new process would have
        pos = store.load(pid)
        r.rpush("race:ready", name)
        r.blpop([f"race:go:{name}"])
        try:
            machine.fire(pos, trigger, reason=f"race {name}")
            outcome = "won" if (pos.version, pos.state) != (1, "opening") else "error:memory-unchanged"
        except StaleTransition:
            outcome = "stale" if (pos.version, pos.state) == (1, "opening") else "error:memory-moved"
        except Exception as exc:  # reported to the parent, which fails the test with it
            outcome = f"error:{type(exc).__name__}:{exc}".replace(" ", "_")
        r.rpush("race:result", f"{name} {pid} {outcome}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

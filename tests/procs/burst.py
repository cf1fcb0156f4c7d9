"""Burst worker for tests/test_store_processes.py: drive positions through transitions as fast as it can
until it is killed.

    python tests/procs/burst.py SOCKET PREFIX SEED

First it settles what a killed predecessor left (every live position driven to closed, as crash recovery
would), then RPUSHes SEED to burst:started and loops: create a position, random-walk it through legal
triggers to closed, with mark updates in between. The parent SIGKILLs it at a random moment.
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal

import redis

from statemachines.machine import PositionMachine
from statemachines.position import Position, new_position_id
from statemachines.store import PositionStore

SYMBOLS = ("BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP")
# Preferred way out of each state, used by recovery; the random walk may take any legal trigger.
TO_CLOSED = {"opening": "entry_failed", "closing": "close_filled"}
RARE = frozenset({"external_close", "entry_failed"})


def walk(machine: PositionMachine, store: PositionStore, pos: Position, rng: random.Random) -> None:
    """Random legal triggers until closed; closing loops on retry_close half of the time and the shortcuts
    to closed are rare, so lifecycles are long and the kill lands mid-lifecycle most of the time."""
    while pos.state != "closed":
        options = [t for t in machine.machine.get_triggers(pos.state) if t not in RARE or rng.random() < 0.05]
        trigger = "retry_close" if pos.state == "closing" and rng.random() < 0.5 else rng.choice(options)
        fields = {"size": Decimal("2"), "entry_price": Decimal("100")} if trigger == "entry_filled" else {}
        machine.fire(pos, trigger, reason="burst", price=100.0 + rng.random(), fields=fields)
        # The only writer, so a refused mark update is a store bug: die, and the parent reports it.
        if pos.state != "closed" and not store.update_marks(pos, {"peak_pnl_pct": rng.random()}):
            raise RuntimeError(f"mark update refused for {pos.id} {pos.state} v{pos.version}")


def recover(machine: PositionMachine, store: PositionStore) -> int:
    live = store.load_live()
    for pos in live:
        while pos.state != "closed":
            machine.fire(pos, TO_CLOSED.get(pos.state, "close"), reason="recovery")
    return len(live)


def main(socket_path: str, prefix: str, seed: str) -> None:
    rng = random.Random(seed)
    store = PositionStore(redis.Redis(unix_socket_path=socket_path), prefix=prefix)
    machine = PositionMachine(store=store)
    recovered = recover(machine, store)
    store.client.rpush("burst:started", f"{seed} {recovered}")
    while True:
        pos = Position(id=new_position_id(), symbol=rng.choice(SYMBOLS), side=rng.choice(["long", "short"]))
        store.create(pos)
        walk(machine, store, pos, rng)


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""The cost of redis.replica_wait (issue 14): a position created with its entry order handed off (one script,
as the engine does it) through a redis+sentinel:// client, with the store's WAIT for one replica off and
on, in alternating blocks on the same servers (a primary, a replica and three sentinels on loopback,
tests/sentinelkit.py). Prints p50/p99 per create, each way. See bench/RESULTS.md.

    python bench/bench_replica_wait.py [--blocks 10] [--per-block 200] [--wait-ms 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalper.connect import connect  # noqa: E402
from statemachines.position import Position, new_position_id  # noqa: E402
from statemachines.store import PositionStore  # noqa: E402
from tests.sentinelkit import SentinelSet  # noqa: E402

INTENT = {"action": "open", "symbol": "BTC-USDT-SWAP", "side": "buy", "size": "3"}


def block(store: PositionStore, n: int) -> list[float]:
    out = []
    for _ in range(n):
        pos = Position(id=new_position_id(), symbol="BTC-USDT-SWAP", side="long", leverage=5,
                       entry_size=Decimal("3"))  # fmt: skip
        t0 = time.perf_counter()
        store.create(pos, intent=INTENT)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--per-block", type=int, default=200)
    ap.add_argument("--wait-ms", type=int, default=50)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scalper-replica-wait-"))
    kit = SentinelSet(workdir)
    try:
        kit.start()
        store = PositionStore(connect(kit.url()))
        block(store, 50)  # warm: scripts cached, connections open
        got: dict[str, list[float]] = {"off": [], "on": []}
        for i in range(args.blocks * 2):
            way = "off" if i % 2 == 0 else "on"
            store.replica_wait = (1, args.wait_ms) if way == "on" else (0, 0)
            got[way] += block(store, args.per_block)
        print(f"creates per way: {len(got['off'])}  WAIT 1 replica, timeout {args.wait_ms} ms  "
              f"timed out: {store.replicas_short}")  # fmt: skip
        for way, values in got.items():
            p50, p99 = statistics.median(values), pct(values, 0.99)
            print(f"replica_wait {way:>3}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {max(values):.3f} ms")
    finally:
        kit.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

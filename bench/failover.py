"""From a Redis primary's death to orders flowing again (issue 14): scalper's real processes on the local fake
OKX, Redis a primary, a replica and three sentinels on loopback (down-after-milliseconds 1000), every process
connected through redis+sentinel://. Each round (tests/failoverkit.py): a position open, the primary
SIGKILLed and the position's close asked for at once; timed from the kill to the sentinels' new primary
taking writes, to the close order reaching OKX, and to an entry (asked for again and again) reaching OKX,
which waits out the engine's hold after a new primary (engine.redis_restart_hold_s, 5 s here). Prints p50
and worst; see bench/RESULTS.md.

    python bench/failover.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.failoverkit import HOLD_S, FailoverRig  # noqa: E402
from tests.okxkit import fake_okx  # noqa: E402
from tests.sentinelkit import DOWN_AFTER_MS, SentinelSet  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scalper-failover-"))
    kit = SentinelSet(workdir / "redis")
    rounds = []
    try:
        with fake_okx() as okx:
            kit.start()
            rig = FailoverRig(workdir, kit, okx)
            rig.start()
            try:
                for i in range(args.rounds):
                    r = rig.round()
                    rounds.append(r)
                    print(f"round {i + 1}: new primary {r.new_primary_s:.2f} s, close at OKX "
                          f"{r.close_s:.2f} s, entry at OKX {r.entry_s:.2f} s", flush=True)  # fmt: skip
            finally:
                rig.stop()
    finally:
        kit.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"rounds: {len(rounds)}  sentinel down-after {DOWN_AFTER_MS} ms  engine hold {HOLD_S:g} s")
    for name in ("new_primary_s", "close_s", "entry_s"):
        values = [getattr(r, name) for r in rounds]
        print(f"{name}: p50 {statistics.median(values):.2f}  worst {max(values):.2f}  "
              f"best {min(values):.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

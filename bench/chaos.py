"""The chaos suite's long run (issue 5): scalper's real processes around a private redis-server, SIGKILLed
at random (seeded) moments, then settled and checked against the invariants. `--venue paper` injects the
paper venue's faults (tests/chaos.py); `--venue okx` runs against the local fake OKX with the network's
faults (WebSocket drops, REST timeouts, rate limits, outages) and, with `--redis-p`, Redis restarts on a
file up to a second behind (tests/chaos_okx.py); `--venue failover` is the OKX run with Redis as a primary, a
replica and three sentinels, the primary SIGKILLed every `--failover-every` steps (tests/chaos_failover.py).
Prints the figures; exits 1 on any violation. See RELIABILITY.md.

    python bench/chaos.py [--venue okx|failover] [--seed 1] [--kills 300] [--minutes 10] [--redis-p 0.05]
                          [--failover-every 8] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalper.embedded import LocalRedis  # noqa: E402
from tests.chaos import SETTINGS, Chaos  # noqa: E402
from tests.chaos_failover import FailoverChaos  # noqa: E402
from tests.chaos_okx import OkxChaos, chaos_okx, okx_settings  # noqa: E402
from tests.sentinelkit import SentinelSet  # noqa: E402
from tests.system import System  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=300, help="stop the chaos after this many kills")
    ap.add_argument("--minutes", type=float, default=10.0, help="...or after this long")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--venue", choices=("paper", "okx", "failover"), default="paper")
    ap.add_argument("--failover-every", type=int, default=8, help="failover: one step in this many")
    ap.add_argument("--redis-p", type=float, default=0.05, help="okx: chance per step of a Redis restart")
    ap.add_argument("--settle", type=float, default=90.0, help="bound on the settling wait, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, Redis data)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="scalper-chaos-"))
    (workdir / "redis").mkdir()
    server = LocalRedis(workdir / "redis")
    server.start()
    okx = None
    kit = None
    if args.venue == "failover":
        kit = SentinelSet(workdir / "sentinel")
        kit.start()
        okx = chaos_okx()
        system = System("", workdir, url=kit.url(), **okx_settings(okx))
        chaos = FailoverChaos(system, okx, args.seed, kit=kit, failover_every=args.failover_every,
                              workers=args.workers)  # fmt: skip
    elif args.venue == "okx":
        okx = chaos_okx()
        system = System(server.socket_path, workdir, **okx_settings(okx))
        chaos: Chaos = OkxChaos(
            system, okx, args.seed, workers=args.workers, redis=server, redis_p=args.redis_p
        )
    else:
        system = System(server.socket_path, workdir, **SETTINGS)
        chaos = Chaos(system, args.seed, workers=args.workers)
    t0 = time.monotonic()
    try:
        report = chaos.run(kills=args.kills, max_seconds=args.minutes * 60, settle_timeout=args.settle)
    finally:
        system.stop_all()
        if okx is not None:
            okx.close()
        server.close()
        if kit is not None:
            kit.close()
    total = time.monotonic() - t0
    print(f"runs: 1 venue: {args.venue}  {report.summary()}  total={total:.1f}s")
    if isinstance(chaos, OkxChaos):
        print(f"okx: {chaos.figures()}  lost windows: {[round(w, 3) for w in chaos.lost_windows]}")
    print(f"kills per process: {dict(report.kills)}")
    print(f"faults: {dict(report.faults)}")
    print(f"operator actions: {dict(report.operator)}")
    print(f"transitions: {dict(sorted(report.triggers.items()))}")
    print(f"crashes (exits not caused by the harness): {dict(report.crashes)}")
    for line, n in Counter(report.crash_lines).most_common():
        print(f"  crash x{n}: {line}")
    print(f"violations: {len(report.violations)}")
    for line in report.violations:
        print(f"  VIOLATION: {line}")
    if args.keep:
        print(f"work directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())

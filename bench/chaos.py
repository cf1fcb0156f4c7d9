"""The chaos suite's long run (issue 5): scalper's real processes around a private redis-server, SIGKILLed
at random (seeded) moments with paper-venue faults injected, then settled and checked against the
invariants of tests/chaos.py. Prints the figures; exits 1 on any violation. See RELIABILITY.md.

    python bench/chaos.py [--seed 1] [--kills 300] [--minutes 10] [--workers 2] [--keep]
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
from tests.system import System  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=300, help="stop the chaos after this many kills")
    ap.add_argument("--minutes", type=float, default=10.0, help="...or after this long")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--settle", type=float, default=90.0, help="bound on the settling wait, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, Redis data)")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="scalper-chaos-"))
    (workdir / "redis").mkdir()
    server = LocalRedis(workdir / "redis")
    server.start()
    system = System(server.socket_path, workdir, **SETTINGS)
    t0 = time.monotonic()
    try:
        report = Chaos(system, args.seed, workers=args.workers).run(
            kills=args.kills, max_seconds=args.minutes * 60, settle_timeout=args.settle
        )
    finally:
        system.stop_all()
        server.close()
    total = time.monotonic() - t0
    print(f"runs: 1  {report.summary()}  total={total:.1f}s")
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

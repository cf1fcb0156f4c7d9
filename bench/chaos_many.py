"""Many long chaos runs, one per seed, a few at a time: the figures RELIABILITY.md records.

Each run is `bench/chaos.py` in a process of its own (its own redis-server, fake OKX and work directory).
Prints one line per run as it ends, then a summary; exits 1 if any run had a violation or a crash.

    python bench/chaos_many.py --venue okx --seeds 101-120 --kills 100 [--parallel 2] [--minutes 6]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def one(venue: str, seed: int, kills: int, minutes: float) -> tuple[int, str, int]:
    cmd = [sys.executable, str(ROOT / "bench" / "chaos.py"), "--venue", venue, "--seed", str(seed),
           "--kills", str(kills), "--minutes", str(minutes)]  # fmt: skip
    if venue == "okx":
        cmd += ["--redis-p", "0.08"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=minutes * 60 + 900)
    text = done.stdout + done.stderr
    line = next((ln for ln in text.splitlines() if ln.startswith("runs:")), text[-500:])
    okx = next((ln for ln in text.splitlines() if ln.startswith("okx:")), "")
    crashes = re.search(r"crashes=(\{[^}]*\})", line)
    bad = done.returncode != 0 or (crashes is not None and crashes.group(1) != "{}")
    status = "FAIL" if bad else "ok"
    details = "".join(f"\n    {ln.strip()}" for ln in text.splitlines()
                      if "VIOLATION" in ln or "crash x" in ln)  # fmt: skip
    return seed, f"{status} {time.monotonic() - t0:6.0f}s  {line}  {okx}{details}", int(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venue", choices=("paper", "okx"), default="okx")
    ap.add_argument("--seeds", default="101-120", help="e.g. 101-120 or 7,31337,99")
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    runs = seeds(args.seeds)
    failed = 0
    with ThreadPoolExecutor(args.parallel) as pool:
        for seed, line, bad in pool.map(lambda s: one(args.venue, s, args.kills, args.minutes), runs):
            print(f"seed {seed}: {line}", flush=True)
            failed += bad
    clean = len(runs) - failed
    print(f"{len(runs)} runs ({args.venue}, {args.kills} kills each): {clean} clean, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

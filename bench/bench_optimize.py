"""Optimisation throughput: trials per minute with 1 and with 2 local trial workers, and the scaling factor.

    .venv/bin/python bench/bench_optimize.py [--trials 24] [--rounds 2] [--data PATH] [--batch 4]

Each round runs `scalper optimize` twice on the same data, settings and seed, once with `--workers 1` and
once with `--workers 2`, alternating which goes first (the machine is shared and noisy). A trial is the real
thing: the backtest of the in-sample window and of the out-of-sample window (the last 30 %), as RQ jobs on a
private redis-server started here. Trials per minute are taken from the study itself: its trial count over
the time from the first trial's start to the last one's end (Optuna's own timestamps), so the processes'
start-up is not in it; the wall time of the whole command is shown beside.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "market" / "btc_perp_1m_20211231_20220201.csv"
PARAMS = ["--param", "exits.take_profit_pct=0.3:1.5", "--param", "smart_exit.rsi_overbought=60:80"]


def one(url: str, data: str, trials: int, workers: int, batch: int, name: str) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import optuna

    from optimize.coordinator import storage
    from optimize.trial import Keys

    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scalper", "optimize", data, "--symbol", "BTC-USDT-SWAP", *PARAMS,
                    "--trials", str(trials), "--workers", str(workers), "--batch", str(batch), "--name", name,
                    "--seed", "1"], env=env, check=True, capture_output=True)  # fmt: skip
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=storage(url, Keys("scalper", name)))
    first = min(t.datetime_start for t in study.trials if t.datetime_start)
    last = max(t.datetime_complete for t in study.trials if t.datetime_complete)
    span = (last - first).total_seconds()
    return {"workers": workers, "trials": len(study.trials), "span_s": span, "wall_s": wall,
            "per_min": 60 * len(study.trials) / span}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from scalper.embedded import LocalRedis

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; data {Path(args.data).name}; {args.trials} trials, "
          f"batch {args.batch}")  # fmt: skip
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp))
        server.start()
        url = f"unix://{server.socket_path}"
        try:
            for r in range(args.rounds):
                order = (1, 2) if r % 2 == 0 else (2, 1)
                for workers in order:
                    load = os.getloadavg()[0]
                    res = one(url, args.data, args.trials, workers, args.batch, f"bench_{r}_{workers}")
                    results[workers].append(res)
                    print(f"round {r + 1}, {workers} worker(s): {res['per_min']:.1f} trials/min "
                          f"({res['trials']} trials in {res['span_s']:.1f} s; "
                          f"the command {res['wall_s']:.1f} s; load average before {load:.1f})")  # fmt: skip
        finally:
            server.stop()
    med = {w: statistics.median(x["per_min"] for x in rs) for w, rs in results.items()}
    print(f"median: 1 worker {med[1]:.1f} trials/min, 2 workers {med[2]:.1f} trials/min, "
          f"scaling x{med[2] / med[1]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

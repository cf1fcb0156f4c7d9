"""Backtest speed: bars per second through the whole same-code path, peak memory, and scaling with symbols.

    .venv/bin/python bench/bench_backtest.py [--runs 3] [--symbols 1,10] [--data PATH]

Each bar becomes four ticks through the live tick guard, indicators, exit guards, strategy, risk gates and
lifecycle table, and the simulated venue, exactly as `scalper backtest` runs them (the default strategy and
settings). Loading the file is timed apart from the run. Several symbols are the same real bars under other
names (instruments copied from BTC-USDT-SWAP), so that the run scales in symbols with the same market.
Peak memory is the process's maximum resident size (ru_maxrss) of a fresh process per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "market" / "btc_perp_1m_20211231_20220201.csv"


def one(path: str, symbols: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from backtest.load import load
    from backtest.run import SymbolData, run_backtest
    from config.settings import Settings
    from exchanges.paper import DEFAULT_INSTRUMENTS
    from workers.account import position_tiers

    names = ["BTC-USDT-SWAP"] + [f"S{i}-USDT-SWAP" for i in range(1, symbols)]
    settings = Settings(symbols={n: {} for n in names})
    t0 = time.perf_counter()
    loaded = load([path], settings, symbol="BTC-USDT-SWAP")
    t1 = time.perf_counter()
    base = loaded.series[0]
    series = [base] + [SymbolData(n, base.ticks, base.warmup, base.bars) for n in names[1:]]
    btc = DEFAULT_INSTRUMENTS[0]
    instruments = [btc] + [replace(btc, inst_id=n) for n in names[1:]]
    tiers = position_tiers(settings)
    result = run_backtest(settings, series, instruments=instruments,
                          maintenance=lambda _inst, size: tiers.maintenance_rate("BTC-USDT-SWAP", size))
    t2 = time.perf_counter()
    bars = sum(d.bars for d in series)
    return {"symbols": symbols, "bars": bars, "ticks": result.ticks, "trades": len(result.trades),
            "load_s": t1 - t0, "run_s": t2 - t1, "bars_per_s": bars / (t2 - t1),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--symbols", default="1,10")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.data, int(args.child))))
        return 0
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"data: {args.data}")
    for n in (int(x) for x in args.symbols.split(",")):
        for run in range(1, args.runs + 1):
            out = subprocess.run([sys.executable, __file__, "--child", str(n), "--data", args.data],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(out.stdout)
            print(f"{n:>2} symbol(s), run {run}: {r['bars']:,} bars ({r['ticks']:,} ticks, "
                  f"{r['trades']} trades) "
                  f"in {r['run_s']:.2f} s = {r['bars_per_s']:,.0f} bars/s; load {r['load_s']:.2f} s; "
                  f"peak {r['peak_mb']:.0f} MB; load avg {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

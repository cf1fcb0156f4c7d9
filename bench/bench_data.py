"""What loading market data costs (feeds/data): time and memory per format on the real data, and the bar →
tick expansion the replay and the backtest run over every bar.

Run:  .venv/bin/python bench/bench_data.py [--repeat 7]
Data: ../shared/data/market (45,031 BTC perpetual 1-minute bars; a Binance USDⓈ-M capture of 93,954 messages).
The Freqtrade and OKX files are written from the real bars into a temporary directory first.

Each case runs in a fresh interpreter, so its memory is its own: `kept` is what the loaded data holds (its
numpy columns), `peak traced` the Python heap's peak during one load (tracemalloc: the file's text and the
parsed strings, freed at the end), `peak RSS` the interpreter's peak resident size (with `after imports`, what
Python, numpy and scalper's modules take before any data). Times are the best of `--repeat` loads.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARKET = ROOT.parent / "shared" / "data" / "market"
BARS = MARKET / "btc_perp_1m_20211231_20220201.csv"
CAPTURE = MARKET / "binance_usdm_btcusdt_20240808_ws.gz"
SYMBOL = "BTC-USDT-SWAP"


def _measure(path: str, repeat: int) -> dict[str, float]:
    """In this interpreter: load `path` `repeat` times, then once under tracemalloc; expand bars to ticks."""
    import numpy as np

    from feeds.data import Bars, load_market_data
    from feeds.data.captures import read_capture  # noqa: F401  (the OKX decoder, imported by the loader)

    if path.endswith(".feather"):
        import pyarrow.feather  # noqa: F401
    base_rss = _peak_rss_mb()
    data = load_market_data([path], default_symbol=SYMBOL)
    rss = _peak_rss_mb()  # one load, before tracemalloc's own bookkeeping takes memory
    series = next(iter(data.series.values()))
    kept = sum(v.nbytes for v in vars(series).values() if isinstance(v, np.ndarray))
    del data
    tracemalloc.start()
    load_market_data([path], default_symbol=SYMBOL)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        load_market_data([path], default_symbol=SYMBOL)
        best = min(best, time.perf_counter() - started)
    out = {"records": len(series), "load_s": best, "kept_mb": kept / 2**20, "peak_traced_mb": peak / 2**20,
           "rss_base_mb": base_rss, "rss_peak_mb": rss}  # fmt: skip
    if isinstance(series, Bars):
        started = time.perf_counter()
        n = sum(1 for _ in series.ticks())
        out |= {"ticks": n, "expand_s": time.perf_counter() - started}
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident size (VmHWM: unlike getrusage's, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _derived(workdir: Path) -> dict[str, Path]:
    """The real bars as Freqtrade JSON, Freqtrade feather and OKX candle responses."""
    sys.path.insert(0, str(ROOT))
    from tests import datakit as kit

    bars = kit.real_bars()
    okx = workdir / "okx.jsonl"
    rows = kit.okx_rows(bars)
    kit.write_lines(okx, [json.dumps({"code": "0", "msg": "", "data": rows[i : i + 300]})
                          for i in range(0, len(rows), 300)])  # fmt: skip
    return {
        "Freqtrade JSON": kit.write_freqtrade_json(workdir / "candles.json", bars),
        "Freqtrade feather": kit.write_freqtrade_feather(workdir / "candles.feather", bars),
        "OKX candles (JSON lines of responses)": okx,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: measure this file, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_measure(args.one, args.repeat)))
        return
    print(f"# {platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"OHLCV CSV (the real file)": BARS, **_derived(Path(tmp)), "Binance capture (real)": CAPTURE}
        print("| format | records | load (s, best) | records/s | kept MB | peak traced MB "
              "| peak RSS MB (after imports) | bar → ticks |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for name, path in cases.items():
            child = [sys.executable, __file__, "--one", str(path), "--repeat", str(args.repeat)]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout)
            expand = f"{r['ticks']:,} ticks in {r['expand_s']:.3f} s" if "ticks" in r else "-"
            print(f"| {name} | {r['records']:,} | {r['load_s']:.3f} | {r['records'] / r['load_s']:,.0f} | "
                  f"{r['kept_mb']:.1f} | {r['peak_traced_mb']:.1f} | {r['rss_peak_mb']:.0f} "
                  f"({r['rss_base_mb']:.0f}) | {expand} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""Per-tick cost of the hot path: indicators + exit guards + state machine, for 1, 10 and 100 open positions.

    python bench/bench_tick.py [--ticks 40000] [--baseline-ticks 400]

Ticks come from the real BTC perpetual 1-minute bars in ../shared/data/market (each bar replayed as four
ticks, open → the extreme against the bar's move → the other extreme → close, 15 s apart). Two layouts:
  * spread: N symbols with one position each (the default config: one position per symbol); every symbol
    receives the whole tick stream, so each tick updates one symbol's indicators and steps one position.
  * stacked: N positions on one symbol; each tick updates the indicators once and steps all N.
A position that closes is settled (close_filled) and replaced by a new one on the next tick, so the
machine's transitions are part of the measured cost. No Redis: the hot path does no Redis round trip
unless a state changes, and transitions are persisted by the store (measured separately).

Baseline, in the same run: the recompute approach of the bot this replaces — on every tick, RSI(14) and
MACD(12,26,9) recomputed with the `ta` library over the last 200 closes, then the same guards and machine.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from collections import deque
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

from config.settings import Settings, SymbolConfig
from indicators.symbol import SymbolIndicators
from statemachines.machine import PositionMachine
from statemachines.position import Position, new_position_id
from statemachines.snapshot import MarketSnapshot
from statemachines.stepper import entry_filled, step

BARS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "market" / "btc_perp_1m_20211231_20220201.csv"
)
WARMUP_BARS = 300


def load_bars(limit: int) -> list[tuple[float, float, float, float, float]]:
    out = []
    with BARS.open() as fh:
        for row in csv.DictReader(fh):
            ts = _epoch(row["timestamp"])
            out.append((ts, float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"])))
            if len(out) >= limit:
                break
    return out


def _epoch(text: str) -> float:
    from datetime import datetime

    if text.isdigit():
        n = int(text)
        return n / 1000.0 if n > 10**11 else float(n)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ticks_of(bars: list[tuple[float, float, float, float, float]]) -> Iterator[tuple[float, float]]:
    for ts, o, h, low, c in bars:
        first, second = (low, h) if c >= o else (h, low)
        for i, price in enumerate((o, first, second, c)):
            yield ts + 15.0 * i, price


class Book:
    """The positions of one symbol, kept at `n` open by replacing each one that closes."""

    def __init__(self, pm: PositionMachine, cfg: SymbolConfig, n: int, side_seed: int):
        self.pm, self.cfg, self.n, self.seed = pm, cfg, n, side_seed
        self.positions: list[Position] = []
        self.transitions = 0

    def refill(self, price: float, now: float, atr: float | None) -> None:
        live = []
        for pos in self.positions:
            if pos.state == "closing":
                self.pm.fire(pos, "close_filled", reason="bench", price=price)
                self.transitions += 1
            if pos.state != "closed":
                live.append(pos)
        while len(live) < self.n:
            self.seed += 1
            side = "long" if self.seed % 2 else "short"
            pos = Position(id=new_position_id(now), symbol=self.cfg.symbol, side=side, state_since=now)  # type: ignore[arg-type]
            entry_filled(
                self.pm, pos, price=Decimal(repr(price)), size=Decimal(1), atr=atr, cfg=self.cfg, now=now
            )
            self.transitions += 1
            live.append(pos)
        self.positions = live


Indicators = Callable[[float, float], tuple[float | None, float | None, float | None, float | None]]


def incremental(settings: Settings, warm: list) -> Indicators:
    ind = SymbolIndicators()
    ind.warm_up(warm)

    def on_tick(ts: float, price: float) -> tuple[float | None, float | None, float | None, float | None]:
        ind.on_tick(ts, price)
        return ind.rsi, ind.macd, ind.macd_signal, ind.atr

    return on_tick


def recompute(settings: Settings, warm: list) -> Indicators:
    """The baseline: `ta` over the last 200 closes on every tick (ATR is not part of the baseline)."""
    import pandas as pd
    from ta.momentum import RSIIndicator
    from ta.trend import MACD

    closes: deque[float] = deque((b[4] for b in warm[-199:]), maxlen=199)
    minute = [warm[-1][0] + 60]

    def on_tick(ts: float, price: float) -> tuple[float | None, float | None, float | None, float | None]:
        if ts >= minute[0] + 60:  # the forming candle closed: its last price joins the history
            closes.append(last[0])
            minute[0] += 60 * int((ts - minute[0]) // 60)
        last[0] = price
        series = pd.Series([*closes, price])
        rsi = RSIIndicator(series, 14).rsi().iloc[-1]
        m = MACD(series, 26, 12, 9)
        return float(rsi), float(m.macd().iloc[-1]), float(m.macd_signal().iloc[-1]), None

    last = [warm[-1][4]]
    return on_tick


def run(layout: str, n: int, ticks: list[tuple[float, float]], warm: list, make: Callable) -> dict:
    settings = Settings()
    n_symbols, per_symbol = (n, 1) if layout == "spread" else (1, n)
    pm = PositionMachine()
    books, feeds, snaps = [], [], []
    for i in range(n_symbols):
        symbol = f"S{i}-USDT-SWAP"
        cfg = settings.for_symbol(symbol)
        feeds.append(make(settings, warm))
        books.append(Book(pm, cfg, per_symbol, i))
        snaps.append(MarketSnapshot(symbol=symbol, price=ticks[0][1], price_ts=ticks[0][0], now=ticks[0][0]))
    for book in books:
        book.refill(ticks[0][1], ticks[0][0], None)
    steps = 0
    base = ticks[: max(1, len(ticks) // n_symbols)]  # every symbol gets the whole (shortened) stream
    t0 = time.perf_counter()
    for ts, price in base:
        for i in range(n_symbols):
            rsi, macd, sig, atr = feeds[i](ts, price)
            snap = snaps[i]
            snap.price, snap.price_ts, snap.now = price, ts, ts
            snap.rsi, snap.macd, snap.macd_signal, snap.atr = rsi, macd, sig, atr
            book = books[i]
            cfg = book.cfg
            for pos in book.positions:
                step(pm, pos, snap, cfg)
            steps += len(book.positions)
            book.refill(price, ts, atr)
    elapsed = time.perf_counter() - t0
    n_ticks = len(base) * n_symbols
    transitions = sum(b.transitions for b in books) + sum(p.version for b in books for p in b.positions)
    return {
        "layout": layout,
        "n": n,
        "ticks": n_ticks,
        "steps": steps,
        "seconds": elapsed,
        "us_per_tick": elapsed / n_ticks * 1e6,
        "us_per_step": elapsed / steps * 1e6,
        "transitions": transitions,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=200_000, help="symbol-ticks per run")
    ap.add_argument("--baseline-ticks", type=int, default=400)
    args = ap.parse_args()
    bars = load_bars(WARMUP_BARS + args.ticks // 4 + 10)  # four ticks a bar
    warm, live = bars[:WARMUP_BARS], bars[WARMUP_BARS:]
    ticks = list(ticks_of(live))[: args.ticks]
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(
        f"{'approach':<14}{'layout':<9}{'positions':>10}{'ticks':>8}{'µs/tick':>10}{'µs/pos-step':>13}"
        f"{'transitions':>13}"
    )
    results = {}
    for approach, make, count in (
        ("incremental", incremental, len(ticks)),
        ("ta-recompute", recompute, args.baseline_ticks),
    ):
        for layout in ("spread", "stacked"):
            for n in (1, 10, 100):
                if approach == "ta-recompute" and layout == "stacked" and n > 1:
                    continue  # recompute per symbol-tick is what stacked would share; spread covers it
                r = run(
                    layout,
                    n,
                    ticks[: count if approach == "incremental" else args.baseline_ticks],
                    warm,
                    make,
                )
                results[(approach, layout, n)] = r
                print(
                    f"{approach:<14}{layout:<9}{n:>10}{r['ticks']:>8}{r['us_per_tick']:>10.2f}"
                    f"{r['us_per_step']:>13.2f}{r['transitions']:>13}"
                )
    base = results[("ta-recompute", "spread", 1)]["us_per_step"]
    for n in (1, 10, 100):
        ours = results[("incremental", "spread", n)]["us_per_step"]
        print(f"speed-up vs ta-recompute, spread, {n:>3} positions: {base / ours:,.0f}x")


if __name__ == "__main__":
    main()

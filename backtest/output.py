"""What a backtest prints and writes: the same report as `scalper report` over a live or paper run."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from backtest.load import LoadedData
from backtest.run import BacktestResult
from reports.report import build
from reports.terminal import console, render
from reports.trades import RunResult


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def run_result(result: BacktestResult, data: LoadedData, overrides: list[str]) -> RunResult:
    meta = {
        "data": ", ".join(data.files),
        "symbols": ", ".join(result.symbols),
        "span": f"{_utc(result.start_ts)} → {_utc(result.end_ts)}",
        "bars": str(result.bars) if result.bars else "– (ticks)",
        "ticks": str(result.ticks),
        "settings": "; ".join(overrides) or "defaults",
        "strategy": result.strategy,
    }
    if result.dropped_ticks:
        meta["ticks dropped"] = f"{result.dropped_ticks} (by the live tick guard)"
    if result.entries_failed:
        meta["entries refused by the venue"] = str(result.entries_failed)
    if result.refusals:
        meta["entries refused by the risk gates"] = ", ".join(f"{k} {v}" for k, v in result.refusals.items())
    if result.liquidations:
        meta["liquidations"] = str(result.liquidations)
    for symbol, (ts, why) in result.strategy_failures.items():
        meta[f"strategy quarantined on {symbol}"] = f"from {_utc(ts)}: {why}"
    return RunResult(trades=result.trades, equity=result.equity, starting_balance=result.start_balance,
                     start_ts=result.start_ts, end_ts=result.end_ts, source="backtest",
                     prices=result.prices, meta=meta)  # fmt: skip


def report(result: BacktestResult, data: LoadedData, overrides: list[str], out: str | None,
           elapsed: float) -> None:  # fmt: skip
    rep = build(run_result(result, data, overrides))
    render(rep, console())
    rate = f"{result.bars / elapsed:,.0f} bars/s" if result.bars else f"{result.ticks / elapsed:,.0f} ticks/s"
    print(f"backtest: {result.ticks:,} ticks in {elapsed:.2f} s ({rate})", file=sys.stderr)
    if out:
        from reports.files import write_all

        for path in write_all(rep, Path(out)):
            print(f"wrote {path}", file=sys.stderr)

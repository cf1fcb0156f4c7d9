"""Parity: one recording through the running processes and through `scalper backtest` gives the same trades.

The recording is a stretch of the shipped real BTC bars. `scalper run --replay FILE --lockstep` runs every
process (feed, engine, order worker, paper venue) on the data's clock, the feed waiting before each tick
until the system is done with the last one; the backtest runs the same file in one process. Their trades
must agree: entry and exit times (relative to the data, as the replay moves the data to the present), side,
entry price, size, exit reason, realized PnL and fees. The backtest's latency is set to 0 for this, as a
lockstep replay's orders land before the next tick.
"""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from backtest.load import load
from backtest.run import END_OF_DATA, run_backtest
from config.settings import Settings
from feeds.data import sample_path
from statemachines.keys import Keys
from statemachines.store import PositionStore
from tests.runkit import ScalperRun

BTC = "BTC-USDT-SWAP"
WARMUP = 100


def _segment(path: Path, first: int, bars: int) -> list[float]:
    """`bars` real bars of the shipped sample from the `first`, as a CSV of its own; their start times."""
    with gzip.open(sample_path(), "rt") as f:
        header, *lines = f.read().splitlines()
    rows = lines[first : first + bars]
    path.write_text("\n".join([header, *rows]) + "\n")
    return [datetime.fromisoformat(r.split(",")[0]).replace(tzinfo=UTC).timestamp() for r in rows]


@pytest.mark.redis
@pytest.mark.parametrize(("first", "bars"), [(700, 170), (200, 400)])
def test_a_lockstep_replay_and_a_backtest_of_one_recording_make_the_same_trades(
    tmp_path: Path, first: int, bars: int
) -> None:
    seg = tmp_path / "segment.csv"
    starts = _segment(seg, first, WARMUP + bars)
    t0 = starts[WARMUP]  # the first bar replayed as ticks

    os.environ["SCALPER_BACKTEST__LATENCY_MS"] = "0"
    try:
        settings = Settings(symbols={BTC: {}})
        result = run_backtest(settings, load([str(seg)], settings).series)
    finally:
        del os.environ["SCALPER_BACKTEST__LATENCY_MS"]
    expected = [(round(t.entry_ts - t0, 3), t.side, t.entry_price, t.size, t.exit_reason,
                 round(t.exit_ts - t0, 3), t.gross_pnl, t.fees)
                for t in result.trades if t.exit_reason != END_OF_DATA]  # fmt: skip
    assert len(expected) >= 3, "the stretch must hold trades to compare"

    run = ScalperRun(tmp_path, "--replay", str(seg), "--lockstep", "--duration", "240",
                     env={"SCALPER_SYMBOLS": '{"BTC-USDT-SWAP": {}}'})  # fmt: skip
    try:
        run.wait_for("scalper: running", 60)
        server = run.server()
        keys = Keys()
        run.wait_replayed(BTC, 4 * (len(starts) - WARMUP))  # every tick fed and stepped on, the system idle
        shift = float(server.xrange(keys.history(BTC), count=1)[0][1]["ts"]) - starts[0]
        store = PositionStore(server)
        closed = sorted((p for p in store.load_symbol(BTC) if p.state == "closed"), key=lambda p: p.opened_at)
    finally:
        run.stop()
    got = [(round(p.opened_at - shift - t0, 3), p.side.value, p.entry_price, p.entry_size, p.exit_reason,
            round(p.state_since - shift - t0, 3), p.realized_pnl, p.fees) for p in closed]  # fmt: skip
    assert got == expected, "\n".join(["live:", *map(str, got), "backtest:", *map(str, expected)])
    assert sum((g[-2] + g[-1] for g in got), Decimal(0)) == sum((e[-2] + e[-1] for e in expected), Decimal(0))

"""`scalper backtest`: the live decision code on recorded real data, deterministic, with its report."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from backtest.load import load
from backtest.run import END_OF_DATA, run_backtest
from config.settings import Settings
from scalper.backtest_cmd import overrides_of

ROOT = Path(__file__).resolve().parents[1]
MONTH = ROOT.parent / "shared" / "data" / "market" / "btc_perp_1m_20211231_20220201.csv"


def scalper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "scalper", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_a_month_of_real_bars_gives_the_report_and_the_same_trades_twice(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        done = scalper("backtest", str(MONTH), "--out", str(tmp_path / name), "--quiet", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        runs.append(done)
    assert "Net PnL after fees and funding" in runs[0].stdout and "By exit reason" in runs[0].stdout
    for f in ("trades.csv", "equity.csv", "report.json", "report.html"):
        assert (tmp_path / "a" / f).stat().st_size > 0
    assert (tmp_path / "a" / "trades.csv").read_bytes() == (tmp_path / "b" / "trades.csv").read_bytes()
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    rows = (tmp_path / "a" / "trades.csv").read_text().splitlines()
    assert len(rows) - 1 == report["summary"]["trades"] > 100


def test_the_balance_moves_by_exactly_the_trades_net_pnl() -> None:
    """Every fee, funding payment and realized PnL at the venue belongs to a trade, to the last digit."""
    settings = Settings()
    data = load(["sample"], settings)
    result = run_backtest(settings, data.series)
    net = sum((t.net_pnl for t in result.trades), Decimal(0))
    assert result.trades and result.end_balance - result.start_balance == net
    assert all(t.exit_reason for t in result.trades)


def test_positions_open_at_the_end_of_the_data_are_closed_through_the_close_path() -> None:
    settings = Settings()
    data = load(["sample"], settings, end=load(["sample"], settings).start_ts + 5 * 3600)
    result = run_backtest(settings, data.series)
    last = result.trades[-1]
    assert last.exit_reason == END_OF_DATA or last.exit_ts < result.end_ts
    assert result.end_balance - result.start_balance == sum((t.net_pnl for t in result.trades), Decimal(0))


def test_one_file_given_as_two_instruments_is_traded_as_both() -> None:
    settings = Settings()
    data = load(["BTC-USDT-SWAP=sample", "ETH-USDT-SWAP=sample"], settings)
    result = run_backtest(settings, data.series)
    assert sorted(d.symbol for d in data.series) == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    assert {t.symbol for t in result.trades} == {"BTC-USDT-SWAP", "ETH-USDT-SWAP"}


def test_settings_given_with_set_change_the_run_per_symbol_too() -> None:
    base = run_backtest(Settings(), load(["sample"], Settings()).series)
    tight = Settings(**overrides_of(["symbols.BTC-USDT-SWAP.exits.stop_loss_max_pct=0.3",
                                     "symbols.BTC-USDT-SWAP.exits.stop_loss_min_pct=0.1"]))  # fmt: skip
    other = run_backtest(tight, load(["sample"], tight).series)
    assert [t.exit_reason for t in other.trades].count("stop_loss") > [
        t.exit_reason for t in base.trades].count("stop_loss")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backtest", "/nonexistent.csv"], "/nonexistent.csv"),
        (["backtest", "sample", "--set", "risk.leverag=3"], "risk.leverag"),
        (["backtest", "sample", "--set", "leverage"], "SECTION.FIELD=VALUE"),
        (["backtest", "sample", "--from", "yesterday"], "--from"),
        (["backtest", str(MONTH.parent / "binance_usdm_btcusdt_20240808_ws.gz")], "too short to warm the"),
        (["backtest", "sample", "--from", "2030-01-01"], "no bars of BTC-USDT-SWAP from 2030-01-01 00:00:00"),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path: Path, args: list[str], expected: str) -> None:
    done = scalper(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert expected in lines[-1] and "Traceback" not in done.stderr, done.stderr


def test_several_symbols_ticks_reach_the_engine_in_time_order_ties_in_the_given_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run merges the symbols' ticks as heapq.merge does: by time, and on equal times in the order the
    symbols were given; a symbol whose ticks end early drops out, the others go on."""
    import heapq
    from collections.abc import Callable, Iterable, Iterator
    from dataclasses import replace

    from backtest.engine import BacktestEngine, Lane, Played
    from backtest.run import DataTooShort, SymbolData
    from exchanges.paper import DEFAULT_INSTRUMENTS
    from feeds.data.series import Tick

    streams = {
        "A-USDT-SWAP": [(10.0, 1.0), (20.0, 1.1), (20.0, 1.2), (35.0, 1.3)],
        "B-USDT-SWAP": [(5.0, 2.0), (20.0, 2.1), (30.0, 2.2), (40.0, 2.3), (50.0, 2.4)],
        "C-USDT-SWAP": [(20.0, 3.0), (25.0, 3.1)],
    }
    seen: list[tuple[str, float, float]] = []
    real = BacktestEngine.play

    def recording(self: BacktestEngine, ticks: Iterable[tuple[Lane, Tick]], every: float,
                  sample: Callable[[float], None]) -> Played:  # fmt: skip
        def each() -> Iterator[tuple[Lane, Tick]]:
            for lane, tick in ticks:
                seen.append((lane.symbol, tick[0], tick[1]))
                yield lane, tick

        return real(self, each(), every, sample)

    monkeypatch.setattr(BacktestEngine, "play", recording)
    data = [SymbolData(s, lambda t=t: [(ts, px, None, None) for ts, px in t]) for s, t in streams.items()]
    btc = DEFAULT_INSTRUMENTS[0]
    with pytest.raises(DataTooShort):  # no warm-up: nothing is traded, the order of the ticks is the point
        run_backtest(Settings(symbols={s: {} for s in streams}), data,
                     instruments=[replace(btc, inst_id=s) for s in streams])  # fmt: skip
    keyed = [[(ts, i, s, px) for ts, px in t] for i, (s, t) in enumerate(streams.items())]
    assert seen == [(s, ts, px) for ts, _, s, px in heapq.merge(*keyed)]
    assert [s for s, _, _ in seen][:6] == ["B-USDT-SWAP", "A-USDT-SWAP", "A-USDT-SWAP", "A-USDT-SWAP",
                                           "B-USDT-SWAP", "C-USDT-SWAP"]  # fmt: skip

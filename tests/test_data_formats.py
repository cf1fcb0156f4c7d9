"""Every data format is read from real data, recognised by its content whatever the file is called, and
comes out as the same bars or ticks as an independent reading of that data (tests/datakit.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from feeds.data import Bars, DataError, Format, Ticks, load_market_data, sample_path
from feeds.data.files import read_file
from tests import datakit as kit
from tests.okx_data import doc, load

SYMBOL = kit.SYMBOL


def load_one(path: Path | str, *, candle_seconds: int = 60) -> Bars | Ticks:
    data = load_market_data([str(path)], default_symbol=SYMBOL, candle_seconds=candle_seconds)
    assert len(data.series) == 1
    return next(iter(data.series.values()))


def assert_bars(
    bars: Bars | Ticks, expected: list[kit.Bar] | tuple[kit.Bar, ...], *, volume: bool = True
) -> None:
    assert isinstance(bars, Bars)
    cols = list(zip(*expected, strict=True))
    assert len(bars) == len(expected)
    for got, want in zip((bars.ts, bars.open, bars.high, bars.low, bars.close), cols, strict=False):
        assert got.tolist() == list(want)
    if volume:
        assert np.allclose(bars.volume, cols[5], rtol=1e-12)


def test_the_real_one_minute_csv_loads_every_bar_exactly() -> None:
    bars = load_one(kit.require(kit.BARS_1M))
    assert_bars(bars, kit.real_bars())
    assert isinstance(bars, Bars)
    assert (bars.interval_s, bars.gaps, bars.duplicates, bars.symbol) == (60, 0, 0, SYMBOL)
    assert bars.span_s == 45_031 * 60
    assert read_file(kit.BARS_1M).format is Format.OHLCV_CSV


@pytest.mark.parametrize("times", ["s", "ms", "iso"])
@pytest.mark.parametrize("name", ["bars.csv", "bars.json", "noname"])
def test_a_csv_is_read_by_its_content_with_any_time_format_gzip_or_not(
    tmp_path: Path, times: str, name: str
) -> None:
    bars = kit.real_bars()[:3000]
    for gz in (False, True):
        path = kit.write_csv(tmp_path / name, bars, times=times, gz=gz)
        assert_bars(load_one(path), bars)


def test_a_headerless_kline_csv_in_binance_column_order(tmp_path: Path) -> None:
    bars = kit.real_bars()[:2000]
    rows = [
        f"{int(ts * 1000)},{o!r},{h!r},{low!r},{c!r},{v!r},{int(ts * 1000) + 59_999},{v * c!r},10,1.0,2.0,0"
        for ts, o, h, low, c, v in bars
    ]
    path = kit.write_lines(tmp_path / "BTCUSDT-1m-2022-01.csv", rows)
    assert read_file(path).format is Format.KLINE_CSV
    assert_bars(load_one(path), bars)


def test_five_minute_bars_are_detected_refused_against_one_minute_candles_and_accepted_with_five(
    tmp_path: Path,
) -> None:
    five = kit.resample(kit.real_bars(), 300)
    path = kit.write_csv(tmp_path / "btc_1m.csv", five)  # the name says 1m: the content decides
    with pytest.raises(DataError) as caught:
        load_one(path, candle_seconds=60)
    assert str(caught.value) == (
        f"{path}: bars of 5m (300 s) are coarser than the 60 s candles of indicators.candle_seconds: "
        "run with indicators.candle_seconds=300 (--set indicators.candle_seconds=300, or "
        "SCALPER_INDICATORS__CANDLE_SECONDS=300)"
    )
    bars = load_one(path, candle_seconds=300)
    assert isinstance(bars, Bars) and bars.interval_s == 300
    assert_bars(bars, five)
    assert len(five) == 9007  # 45,031 minutes from 23:01: a first 5-minute bar of 4, then whole ones


def test_one_minute_bars_feed_five_minute_candles_and_bars_must_divide_the_candle(tmp_path: Path) -> None:
    path = kit.write_csv(tmp_path / "bars", kit.real_bars()[:1000])
    assert load_one(path, candle_seconds=300).interval_s == 60
    with pytest.raises(DataError, match=r"bars of 60 s do not divide the 90 s candles"):
        load_one(path, candle_seconds=90)


def test_daily_quotes_with_weekends_missing_have_their_gaps_counted_not_filled() -> None:
    bars = load_one(kit.require(kit.DAILY), candle_seconds=86_400)
    assert isinstance(bars, Bars)
    assert (len(bars), bars.interval_s) == (502, 86_400)
    steps = np.diff(bars.ts)
    assert bars.gaps == int(np.count_nonzero(steps > 86_400)) > 90  # a weekend every week, and holidays
    assert bars.missing == int((steps // 86_400 - 1).sum())
    data = load_market_data([str(kit.DAILY)], default_symbol=SYMBOL, candle_seconds=86_400)
    assert data.notes() == [
        f"{SYMBOL}: {bars.gaps} gaps in the bars, {bars.missing} bars of 1d missing (not filled in)"
    ]


def test_freqtrade_json_candles(tmp_path: Path) -> None:
    bars = kit.real_bars()[:5000]
    path = kit.write_freqtrade_json(tmp_path / "BTC_USDT_USDT-1m-futures.json", bars)
    assert read_file(path).format is Format.FREQTRADE_JSON
    assert_bars(load_one(path), bars)


def test_freqtrade_feather_candles(tmp_path: Path) -> None:
    bars = kit.real_bars()
    path = kit.write_freqtrade_feather(tmp_path / "BTC_USDT_USDT-1m-futures.feather", bars)
    assert read_file(path).format is Format.FREQTRADE_FEATHER
    assert_bars(load_one(path), bars)


def test_a_feather_file_without_pyarrow_says_which_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kit.write_freqtrade_feather(tmp_path / "candles", kit.real_bars()[:100])
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(DataError) as caught:
        load_one(path)
    assert str(caught.value) == (
        f"{path}: is a feather (Arrow) file: reading it needs pyarrow (pip install 'scalper[feather]')"
    )


def test_the_real_okx_candle_response_newest_first_becomes_hourly_bars_oldest_first(tmp_path: Path) -> None:
    entry = next(e for e in load("ccxt/response_extract.json")["entries"] if e["ccxt_method"] == "fetchOHLCV")
    path = tmp_path / "history-candles"
    path.write_text(json.dumps(entry["httpResponse"], indent=2))  # pretty-printed, as a user may save it
    with pytest.raises(DataError, match="bars of 1h"):
        load_one(path)
    bars = load_one(path, candle_seconds=3600)
    rows = entry["httpResponse"]["data"][::-1]
    assert_bars(bars, [(int(r[0]) / 1000, *(float(x) for x in r[1:6])) for r in rows])  # type: ignore[misc]


def test_okx_candles_from_the_real_bars_one_response_per_line_forming_candle_left_out(tmp_path: Path) -> None:
    bars = kit.real_bars()[:900]
    pages = [kit.okx_rows(bars[i : i + 300]) for i in range(0, 900, 300)][::-1]  # paging back in time
    pages[0][0][8] = "0"  # the newest candle of the first page is still forming
    lines = [json.dumps({"code": "0", "msg": "", "data": page}) for page in pages]
    path = kit.write_lines(tmp_path / "okx.jsonl", lines)
    assert read_file(path).format is Format.OKX_CANDLES
    assert_bars(load_one(path), bars[:-1])
    data = load_market_data([str(path)], default_symbol=SYMBOL)
    assert data.notes() == [f'{path}: 1 OKX candles still forming (confirm "0") left out']


def test_okx_candle_rows_as_json_lines(tmp_path: Path) -> None:
    bars = kit.real_bars()[:500]
    path = kit.write_lines(tmp_path / "rows", [json.dumps(r) for r in kit.okx_rows(bars)], gz=True)
    assert_bars(load_one(path), bars)


def test_the_real_binance_capture_gives_its_trades_with_the_best_quote_before_each() -> None:
    ticks = load_one(kit.require(kit.CAPTURE))
    assert isinstance(ticks, Ticks)
    assert ticks.symbol == "BTC-USDT-SWAP"  # its "s": "BTCUSDT", as OKX names the perpetual
    assert list(ticks.ticks()) == kit.binance_ticks()
    assert len(ticks) == 21_313 and ticks.quoted == 21_313
    assert 340 < ticks.span_s < 346  # too short to warm the indicators: the backtest says so, not the loader


def test_an_okx_capture_of_the_same_market_gives_the_same_ticks(tmp_path: Path) -> None:
    path = kit.write_lines(tmp_path / "okx-capture", list(kit.okx_capture_from_binance(kit.capture_lines())))
    assert read_file(path).format is Format.OKX_CAPTURE
    ticks = load_one(path)
    assert list(ticks.ticks()) == kit.binance_ticks()


def test_the_okx_docs_pushes_tickers_bbo_and_trades(tmp_path: Path) -> None:
    """A ticker is a tick of its last price with its quote; a bbo-tbt push a quote; a trade a tick carrying
    the latest quote of its instrument (OKX's own examples, each line after a receive time)."""
    names = [
        "ws_subscribe_ack_tickers.json",
        "ws_tickers_push.json",
        "ws_bbo_tbt_push.json",
        "ws_trades_push.json",
    ]
    lines = [f"{1_700_000_000_000_000_000 + i} {json.dumps(doc(n))}" for i, n in enumerate(names)]
    path = kit.write_lines(tmp_path / "okx-docs", lines)
    data = load_market_data([str(path)])
    assert list(data.series) == ["BTC-USDT"]  # BCH-USDT-SWAP has a quote but no tick
    assert list(data["BTC-USDT"].ticks()) == [
        (1597026383.085, 9999.99, 8888.88, 9999.99),
        (1630048897.897, 42219.9, 8888.88, 9999.99),
    ]


def test_the_sample_loads_as_one_day_of_bars() -> None:
    bars = load_one("sample")
    assert isinstance(bars, Bars) and (len(bars), bars.interval_s) == (1440, 60)
    assert bars.sources == (sample_path(),)


def test_a_capture_too_short_to_warm_up_still_loads_and_says_how_long_it_is(tmp_path: Path) -> None:
    path = kit.write_csv(tmp_path / "six-minutes.csv", kit.real_bars()[:6])
    bars = load_one(path)
    assert (len(bars), bars.span_s) == (6, 360.0)


def test_a_copy_under_another_name_reads_the_same(tmp_path: Path) -> None:
    copy = tmp_path / "prices.feather"  # a CSV, whatever the name says
    shutil.copyfile(kit.require(kit.BARS_1M), copy)
    assert read_file(copy).format is Format.OHLCV_CSV

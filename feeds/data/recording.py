"""scalper's own tick recordings (`scalper record`): what the live feed wrote to Redis, verbatim, so a live
session can be replayed (`scalper run --replay FILE`) and backtested.

    # scalper ticks v1
    ts,symbol,px,bid,ask
    1723161256.322,BTC-USDT-SWAP,61800.3,61800.2,61800.3
    1723161256.344,ETH-USDT-SWAP,2611.05,,

The first line names the format and its version; then CSV with a header, a row per tick of any symbol in
the order they were read: time (epoch seconds), instrument, price, and the best bid and ask when the feed
had them (both or neither). The numbers are the tick stream's own strings, so a replay sees exactly the
values the engine saw. The file may be gzip-compressed; a recording appended to later is one file.
"""

from __future__ import annotations

import numpy as np

from feeds.data.candles import floats
from feeds.data.captures import TickColumns
from feeds.data.detect import RECORDING_MAGIC
from feeds.data.errors import BadRecords, DataError, excerpt
from feeds.data.source import Source

VERSION = 1
MAGIC_LINE = f"{RECORDING_MAGIC} v{VERSION}"
HEADER = "ts,symbol,px,bid,ask"
COLUMNS = HEADER.count(",") + 1


def preamble() -> bytes:
    return f"{MAGIC_LINE}\n{HEADER}\n".encode()


def row(symbol: str, fields: dict[bytes, bytes]) -> bytes:
    """One tick stream entry (`px`, `ts`, and `bid`, `ask` when present) as a recording's line."""
    bid, ask = fields.get(b"bid", b""), fields.get(b"ask", b"")
    if not (bid and ask):
        bid = ask = b""
    return b"%s,%s,%s,%s,%s\n" % (fields.get(b"ts", b""), symbol.encode(), fields.get(b"px", b""), bid, ask)


def read_recording(source: Source) -> tuple[dict[str | None, TickColumns], BadRecords]:
    path = source.path
    try:
        text = source.read().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(path, 0, "a scalper recording that is not text (not UTF-8)") from None
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip())
    magic = lines[first].strip()
    if magic != MAGIC_LINE:
        raise DataError(path, first + 1, f"a scalper recording of another version ({excerpt(magic)}): this "
                        f"scalper reads {MAGIC_LINE!r}")  # fmt: skip
    header_at = next((i for i in range(first + 1, len(lines)) if lines[i].strip()), None)
    if header_at is None or lines[header_at].strip() != HEADER:
        found = excerpt(lines[header_at]) if header_at is not None else "nothing"
        raise DataError(path, (header_at or first) + 1, f"a scalper recording without its header {HEADER!r}; "
                        f"found {found}")  # fmt: skip
    bad = BadRecords(path)
    rows: list[list[str]] = []
    numbers: list[int] = []
    for i in range(header_at + 1, len(lines)):
        line = lines[i].rstrip("\r")
        if not line.strip() or line.startswith(MAGIC_LINE):  # a recording appended to: its preamble again
            continue
        if line == HEADER:
            continue
        fields = line.split(",")
        if len(fields) != COLUMNS:
            bad.seen(len(rows) + bad.count + 1, i + 1, f"has {len(fields)} fields, a tick {COLUMNS}")
            continue
        rows.append(fields)
        numbers.append(i + 1)
    return _columns(rows, numbers, bad), bad


def _columns(rows: list[list[str]], numbers: list[int], bad: BadRecords) -> dict[str | None, TickColumns]:
    if not rows:
        return {}
    ts_raw, symbols, px_raw, bid_raw, ask_raw = zip(*rows, strict=True)
    ts, px = floats(ts_raw), floats(px_raw)
    bid = floats([b or "nan" for b in bid_raw])
    ask = floats([a or "nan" for a in ask_raw])
    names = np.array(symbols)
    quoted = ~np.isnan(bid) | ~np.isnan(ask)
    with np.errstate(invalid="ignore"):
        wrong = ~np.isfinite(ts) | (ts <= 0) | ~np.isfinite(px) | (px <= 0) | (names == "")
        wrong |= quoted & ~((bid > 0) & (bid <= ask) & np.isfinite(ask))
    for i in np.flatnonzero(wrong).tolist():
        problem = (f"not a tick (time {ts_raw[i]!r}, symbol {symbols[i]!r}, price {px_raw[i]!r}, bid "
                   f"{bid_raw[i]!r}, ask {ask_raw[i]!r})")  # fmt: skip
        bad.seen(i + 1, numbers[i], problem)
    keep = ~wrong
    out: dict[str | None, TickColumns] = {}
    for symbol in dict.fromkeys(names[keep].tolist()):
        mine = keep & (names == symbol)
        out[symbol] = TickColumns(ts[mine], px[mine], bid[mine], ask[mine])
    return out

"""Ticks from raw WebSocket captures, one message per line, optionally after a receive time (`<ns> <json>`,
as hftbacktest and our tests record them):
- Binance USDⓈ-M (combined `{"stream", "data"}` or raw events): each `trade` / `aggTrade` is a tick at its
  trade time `T`; `bookTicker` gives the best bid and ask, which the following trades of the symbol carry.
  The symbol `s` becomes OKX's (BTCUSDT → BTC-USDT-SWAP, BTCUSD_PERP → BTC-USD-SWAP).
- OKX v5 public pushes, decoded by the live client's own decoder and turned into ticks by its own
  conversion (exchanges/okx): a `tickers` push is a tick of its last price with its bid and ask, a `trades`
  push a tick per trade; `bbo-tbt` and `books5` give the best bid and ask that the following trades carry.
Other messages (depth, subscription acks, snapshots) are passed over; a line that does not parse, or a trade
without a time or a price, is a bad record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

import msgspec
import numpy as np

from feeds.data.detect import Format
from feeds.data.errors import BadRecords, excerpt
from feeds.data.source import Source

NAN = float("nan")
_RECEIVE_TIME = re.compile(rb"^\d+\s+")
_USDM = re.compile(r"^([A-Z0-9]+?)(USDT|USDC)$")
_COINM = re.compile(r"^([A-Z0-9]+)USD_PERP$")
_TOP_OF_BOOK = ("bbo-tbt", "books5")  # pushes that carry the whole top of the book, not an update


class TickColumns(NamedTuple):
    ts: np.ndarray  # epoch seconds
    px: np.ndarray
    bid: np.ndarray  # NaN where the data has no quote
    ask: np.ndarray

    def __len__(self) -> int:  # type: ignore[override]
        return len(self.ts)


@cache
def okx_symbol(binance: str) -> str:
    """OKX's instrument for a Binance futures symbol; the symbol itself when there is no obvious one."""
    if m := _USDM.match(binance):
        return f"{m[1]}-{m[2]}-SWAP"
    if m := _COINM.match(binance):
        return f"{m[1]}-USD-SWAP"
    return binance


class TickCollector:
    """Ticks per symbol, each trade carrying the symbol's latest valid quote."""

    def __init__(self) -> None:
        self.columns: dict[str | None, tuple[list[float], list[float], list[float], list[float]]] = {}
        self.quotes: dict[str | None, tuple[float, float]] = {}
        self.other = 0  # messages that are neither trades nor quotes

    def quote(self, symbol: str | None, bid: float, ask: float) -> None:
        if 0 < bid <= ask:
            self.quotes[symbol] = (bid, ask)

    def tick(self, symbol: str | None, ts: float, px: float, bid: float | None, ask: float | None) -> None:
        if bid is not None and ask is not None and 0 < bid <= ask:
            self.quotes[symbol] = (bid, ask)
        else:
            bid, ask = self.quotes.get(symbol, (NAN, NAN))
        cols = self.columns.get(symbol)
        if cols is None:
            cols = self.columns[symbol] = ([], [], [], [])
        cols[0].append(ts)
        cols[1].append(px)
        cols[2].append(bid)
        cols[3].append(ask)

    def result(self) -> dict[str | None, TickColumns]:
        return {
            symbol: TickColumns(*(np.array(c, dtype=np.float64) for c in cols))
            for symbol, cols in self.columns.items()
        }


def read_capture(source: Source, fmt: Format) -> tuple[dict[str | None, TickColumns], BadRecords, int]:
    """Ticks per symbol, the bad records, and the number of other messages passed over."""
    out, bad = TickCollector(), BadRecords(source.path)
    parse = _binance if fmt is Format.BINANCE_CAPTURE else _okx_parser()
    record = 0
    for number, line in source.lines():
        if not line.strip():
            continue
        record += 1
        try:
            parse(_RECEIVE_TIME.sub(b"", line, count=1), out)
        except ValueError as err:
            text = line.decode(errors="replace")
            bad.seen(record, number, f"not a {fmt.value} line: {err}: {excerpt(text)}")
    return out.result(), bad, out.other


class _BinanceEvent(msgspec.Struct):
    """The fields of a Binance event that make ticks; a depth update's `b` and `a` (lists) stay raw."""

    e: str = ""
    s: str = ""
    T: int | float | None = None
    p: str | None = None
    b: msgspec.Raw = msgspec.Raw()
    a: msgspec.Raw = msgspec.Raw()


class _BinanceMessage(_BinanceEvent):
    data: _BinanceEvent | None = None  # the combined stream's envelope; a raw stream's event is the message


_BINANCE = msgspec.json.Decoder(_BinanceMessage)


def _binance(raw: bytes, out: TickCollector) -> None:
    try:
        message = _BINANCE.decode(raw)
    except msgspec.ValidationError as err:
        raise ValueError(f"not a Binance message ({err})") from None
    except msgspec.DecodeError as err:
        raise ValueError(f"its JSON does not parse ({err})") from None
    event = message.data or message
    if event.e in ("trade", "aggTrade"):
        stamp, price = event.T, _number(event.p)
        if not (stamp is not None and stamp > 0 and price > 0):
            raise ValueError("a trade without a numeric time `T` and a positive price `p`")
        out.tick(okx_symbol(event.s) if event.s else None, stamp / 1000.0, price, None, None)
    elif event.e == "bookTicker":
        out.quote(okx_symbol(event.s) if event.s else None, _raw_number(event.b), _raw_number(event.a))
    else:
        out.other += 1


def _okx_parser() -> Callable[[bytes, TickCollector], None]:
    """The OKX line parser. The live client's decoder is imported here, not at the top: the exchanges.okx
    package brings its REST and WebSocket clients along, which only an OKX capture needs."""
    from exchanges.okx.convert import ticks as okx_ticks
    from exchanges.okx.messages import Push, decode_ws
    from exchanges.okx.records import Book
    from exchanges.okx.wire import DecodeError

    def parse(raw: bytes, out: TickCollector) -> None:
        if raw.strip() == b"pong":
            out.other += 1
            return
        try:
            message = decode_ws(raw)
        except DecodeError as err:
            if err.reason == "unknown_channel":  # a channel we do not read (funding, mark price, ...)
                out.other += 1
                return
            raise ValueError(f"it is not an OKX message ({err})") from None
        if not isinstance(message, Push):
            out.other += 1
            return
        if message.channel in _TOP_OF_BOOK:
            for book in message.data:
                if isinstance(book, Book) and book.bids and book.asks:
                    out.quote(message.arg.inst_id, float(book.bids[0].px), float(book.asks[0].px))
            return
        found = okx_ticks(message)  # the live feed's own conversion: tickers and trades
        if not found:
            out.other += 1
        for tick in found:
            out.tick(tick.inst_id or message.arg.inst_id, tick.ts, tick.price, tick.bid, tick.ask)

    return parse


def _raw_number(raw: msgspec.Raw) -> float:
    """A JSON string or number, not decoded yet, as a float; NaN if it is neither."""
    text = bytes(raw).strip(b'"')
    return _number(text) if text else NAN


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN

"""1-minute candles of the fake's price path, for the candle1m push and GET /api/v5/market/candles.

A row is OKX's [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]: ts the bar's open time in ms, confirm
"0" while the bar is forming and "1" once it closed. REST answers newest first, the forming bar included,
paged by `after` (bars older than that ts) and `before` (newer), at most `limit` (OKX: 300, default 100).
Bars close as the price path crosses minute boundaries; `seed` gives an instrument closed history, as the
real market has before the bot starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tests.fakeokx import templates as t
from tests.fakeokx.records import Refused

BAR_MS = 60_000
MAX_LIMIT = 300
Bar = tuple[int, Decimal, Decimal, Decimal, Decimal]  # (open time ms, open, high, low, close)


class Candles:
    def __init__(self, keep: int = 1440) -> None:
        self.keep = keep
        self._closed: dict[str, list[Bar]] = {}  # oldest first
        self._forming: dict[str, Bar] = {}

    def on_price(self, inst_id: str, px: Decimal, ts_ms: int) -> list[str]:
        """The price path moved: the forming bar as a candle1m push row."""
        bar_ts = ts_ms // BAR_MS * BAR_MS
        cur = self._forming.get(inst_id)
        if cur is not None and cur[0] != bar_ts:
            self._close(inst_id, cur)
            cur = None
        if cur is None:
            cur = (bar_ts, px, px, px, px)
        cur = self._forming[inst_id] = (bar_ts, cur[1], max(cur[2], px), min(cur[3], px), px)
        return _row(cur, confirm="0")

    def seed(self, inst_id: str, bars: Iterable[Bar]) -> None:
        """Closed history before the price path starts (oldest first, whole minutes)."""
        for bar in bars:
            if bar[0] % BAR_MS:
                raise ValueError(f"bar time {bar[0]} is not a whole minute")
            self._close(inst_id, bar)

    def _close(self, inst_id: str, bar: Bar) -> None:
        closed = self._closed.setdefault(inst_id, [])
        closed.append(bar)
        del closed[: -self.keep]

    def rows(self, q: Mapping[str, str]) -> list[list[str]]:
        """GET candles / history-candles: newest first."""
        if q.get("bar", "1m") != "1m":
            raise Refused("51000", "Parameter bar error (fake: 1m only)")
        try:
            limit = min(int(q.get("limit") or 100), MAX_LIMIT)
            after, before = int(q.get("after") or 0), int(q.get("before") or 0)
        except ValueError:
            raise Refused("51000", "Parameter limit/after/before error") from None
        inst_id = q.get("instId", "")
        rows = [_row(b, confirm="1") for b in self._closed.get(inst_id, [])]
        if inst_id in self._forming:
            rows.append(_row(self._forming[inst_id], confirm="0"))
        rows.reverse()
        rows = [r for r in rows if (not after or int(r[0]) < after) and (not before or int(r[0]) > before)]
        return rows[:limit]


def _row(bar: Bar, confirm: str) -> list[str]:
    template: Any = t.doc("ws_candle1D_push_en.json")["data"][0]  # vol, volCcy, volCcyQuote as OKX shows
    return [str(bar[0]), *(t.num(v) for v in bar[1:5]), *template[5:8], confirm]

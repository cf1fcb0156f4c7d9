"""The trade ledger: one compact row per closed position, per UTC day. It outlives the position's own keys
(removed after `engine.closed_retention_s` by workers/retention.py), so a day's trades still add up.

    {prefix}:ledger:{YYYYMMDD}   HASH   position id -> {"symbol", "side", "entry_ts", "exit_ts",
                                        "entry_price", "size", "exit_reason", "pnl", "fees", "net",
                                        "time_in"} (JSON)
    {prefix}:ledger:days         SET    the days that have a ledger

The day is the UTC day of the close on the engine's clock (market time in a replay), the same clock the
daily risk counters use (workers/riskstate.py). A day's hash expires `engine.ledger_retention_days` after
its last write. Rows are written by the store's scripts (statemachines/store.py); this module encodes them
and reads them back. `time_in` (seconds per lifecycle state, for the report) came later: a row without it
reads as one with no time recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import redis

from statemachines import lua
from statemachines.keys import Keys
from statemachines.position import Position, encode_value
from statemachines.redis_text import as_str


def utc_day(ts: float) -> str:
    """YYYYMMDD of the UTC day `ts` (epoch seconds) falls in."""
    return time.strftime("%Y%m%d", time.gmtime(ts))


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A closed position as the ledger keeps it."""

    id: str
    symbol: str
    side: str
    entry_ts: float  # the entry fill on the engine's clock (the creation, if it never filled)
    exit_ts: float  # the close on the engine's clock
    entry_price: Decimal
    size: Decimal  # contracts of the entry, as requested
    exit_reason: str
    pnl: Decimal  # realized, before fees
    fees: Decimal  # OKX's sign: negative = charged
    time_in: dict[str, float] = field(default_factory=dict)  # seconds spent per lifecycle state

    @property
    def net(self) -> Decimal:
        return self.pnl + self.fees

    @property
    def day(self) -> str:
        return utc_day(self.exit_ts)

    @classmethod
    def of(cls, pos: Position) -> TradeRecord:
        return cls(
            id=pos.id, symbol=pos.symbol, side=pos.side.value, entry_ts=pos.opened_at or pos.created_at,
            exit_ts=pos.state_since, entry_price=pos.entry_price, size=pos.entry_size,
            exit_reason=pos.exit_reason, pnl=pos.realized_pnl, fees=pos.fees, time_in=dict(pos.time_in),
        )  # fmt: skip

    def encode(self) -> str:
        row = {
            "symbol": self.symbol, "side": self.side, "entry_ts": encode_value(float(self.entry_ts)),
            "exit_ts": encode_value(float(self.exit_ts)), "entry_price": encode_value(self.entry_price),
            "size": encode_value(self.size), "exit_reason": self.exit_reason,
            "pnl": encode_value(self.pnl), "fees": encode_value(self.fees), "net": encode_value(self.net),
            "time_in": {state: float(seconds) for state, seconds in sorted(self.time_in.items())},
        }  # fmt: skip
        return json.dumps(row, separators=(",", ":"))

    @classmethod
    def decode(cls, position_id: str, text: str | bytes) -> TradeRecord:
        """Raises ValueError for a row that is not one of ours."""
        try:
            row = json.loads(text)
            return cls(
                id=position_id, symbol=str(row["symbol"]), side=str(row["side"]),
                entry_ts=float(row["entry_ts"]), exit_ts=float(row["exit_ts"]),
                entry_price=Decimal(row["entry_price"]), size=Decimal(row["size"]),
                exit_reason=str(row["exit_reason"]), pnl=Decimal(row["pnl"]), fees=Decimal(row["fees"]),
                time_in={str(k): float(v) for k, v in row.get("time_in", {}).items()},
            )  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError, InvalidOperation) as err:
            raise ValueError(f"ledger row of {position_id} unreadable: {err!r}") from None


class TradeLedger:
    """Reads the day ledgers. A row that cannot be parsed is skipped and counted in `malformed`."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.malformed: list[str] = []  # "day/id" of the rows skipped
        self._forget = client.register_script(lua.FORGET_EXPIRED_DAYS)

    def days(self) -> list[str]:
        return sorted(as_str(d) for d in self.client.smembers(self.keys.ledger_days()))

    def day(self, day: str) -> list[TradeRecord]:
        """The day's trades, by exit time."""
        return self.rows(day, self.client.hgetall(self.keys.ledger(day)))

    def all(self) -> list[TradeRecord]:
        """Every trade the ledger still holds, by exit time: one round trip."""
        days = self.days()
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.ledger(day))
        rows = [r for day, raw in zip(days, pipe.execute(), strict=True) for r in self.rows(day, raw)]
        return sorted(rows, key=lambda r: (r.exit_ts, r.id))

    def find(self, position_id: str) -> TradeRecord | None:
        """The position's row in whichever day holds it (one round trip over the days)."""
        days = self.days()
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hget(self.keys.ledger(day), position_id)
        for day, raw in zip(days, pipe.execute(), strict=True):
            if raw is not None:
                found = self.rows(day, {position_id: raw})
                return found[0] if found else None
        return None

    def forget_expired_days(self) -> int:
        """Drop from the days set the days whose ledger has expired; returns how many."""
        days = self.days()
        if not days:
            return 0
        keys = [self.keys.ledger_days(), *(self.keys.ledger(day) for day in days)]
        return int(self._forget(keys=keys, args=days))

    def rows(self, day: str, raw: dict[Any, Any]) -> list[TradeRecord]:
        """The rows of `raw` (a day's hash as read), by exit time; unreadable ones counted in `malformed`."""
        out = []
        for pid, text in raw.items():
            try:
                out.append(TradeRecord.decode(as_str(pid), text))
            except ValueError:
                self.malformed.append(f"{day}/{as_str(pid)}")
        return sorted(out, key=lambda r: (r.exit_ts, r.id))

"""The closed trades `scalper web` shows (the totals, the latest closed rows), kept up to date by reading only
what changed: the dashboard and /metrics read them every second, and a bot that has run for months holds
days of closed positions and a ledger of a year, which a whole read a second would turn into a steady load
on Redis and on the cores the engine trades on.

Why reading the changes is enough:
- A closed position's hash never changes: closed is terminal (statemachines/lifecycle.py) and the store's
  scripts write a hash only at the state and version they read. So a position is read and parsed once, when
  its id first appears in its symbol's closed set, and forgotten when the retention removes it.
- A ledger row is written once per position and never rewritten or deleted alone (statemachines/lua.py:
  ARCHIVE_CLOSED, REMOVE_CLOSED; a day goes as a whole when its hash expires). So a day whose row count
  (HLEN) is unchanged is unchanged, a day with more rows decodes only its new ones, and a day with fewer
  expired (and is read anew). A day that expired and was written anew with as many rows between two reads
  would be missed; a day expires `engine.ledger_retention_days` after its last write, not within a second.

A closed position is in the ledger within a second of closing and stays stored for the retention: the same
trade, counted once (by id).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from scalper.inspect import archived_row, row
from scalper.run_history import contract_values
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord, utc_day
from statemachines.position import Position
from statemachines.store import PositionStore, parse_hash


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class Tally:
    """Closed trades added up: count, gross, fees, wins (net > 0)."""

    trades: int = 0
    gross: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    wins: int = 0

    def add(self, gross: Decimal, fees: Decimal) -> None:
        self.trades += 1
        self.gross += gross
        self.fees += fees
        self.wins += gross + fees > 0

    def merge(self, other: Tally) -> None:
        self.trades += other.trades
        self.gross += other.gross
        self.fees += other.fees
        self.wins += other.wins

    def as_json(self) -> dict[str, Any]:
        return {"trades": self.trades, "net": float(self.gross + self.fees), "gross": float(self.gross),
                "fees": float(self.fees), "wins": self.wins}  # fmt: skip


@dataclass
class LedgerDay:
    """One ledger day as last read: the ids it held (readable or not), its rows, their tallies by UTC day of
    the close (one day, unless the hash holds a row of another), and its rows newest entry first."""

    seen: set[str] = field(default_factory=set)
    rows: dict[str, TradeRecord] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    newest_first: list[TradeRecord] = field(default_factory=list)

    def add(self, ids: set[str], new: list[TradeRecord]) -> None:
        self.seen |= ids
        for rec in new:
            self.rows[rec.id] = rec
            self.tallies.setdefault(utc_day(rec.exit_ts), Tally()).add(rec.pnl, rec.fees)
        self.newest_first = sorted(self.rows.values(), key=lambda r: (r.entry_ts, r.id), reverse=True)


class ClosedBook:
    """The stored closed positions and the ledger, as of the last `refresh`. Not thread-safe: one caller at
    a time (scalper/web/views.py holds a lock)."""

    def __init__(self, client: redis.Redis, store: PositionStore) -> None:
        self.client = client
        self.store = store
        self.positions: dict[str, Position] = {}  # stored closed positions by id
        self.days: dict[str, LedgerDay] = {}
        self.malformed: set[str] = set()  # "day/id" of ledger rows that cannot be parsed (left out)

    @property
    def keys(self) -> Keys:
        return self.store.keys

    def refresh(self) -> None:
        """Read what changed since the last call: a few round trips, and only new records are parsed."""
        k = self.keys
        symbols = self.store.symbols()
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.smembers(k.state(symbol, "closed"))
        pipe.smembers(k.ledger_days())
        *closed_sets, raw_days = pipe.execute()
        days = sorted(_s(d) for d in raw_days)
        stored = {_s(i): symbol for symbol, ids in zip(symbols, closed_sets, strict=True) for i in ids}
        self.positions = {i: p for i, p in self.positions.items() if i in stored}
        new = sorted((symbol, i) for i, symbol in stored.items() if i not in self.positions)
        pipe = self.client.pipeline(transaction=False)
        for symbol, i in new:
            pipe.hgetall(k.pos(symbol, i))
        for day in days:
            pipe.hlen(k.ledger(day))
        replies = pipe.execute()
        for (symbol, i), raw in zip(new, replies, strict=False):
            if raw:  # gone between the two reads: the retention removed it (its ledger row is read below)
                self.positions[i] = parse_hash(raw, symbol, i)
        self.days = {d: got for d, got in self.days.items() if d in days}
        changed = []
        for day, n in zip(days, replies[len(new):], strict=True):
            if day in self.days and int(n) < len(self.days[day].seen):
                del self.days[day]  # expired (listed until the retention forgets it); maybe written anew
            if day not in self.days or int(n) != len(self.days[day].seen):
                changed.append(day)
        if changed:
            self._read_days(changed)

    def _read_days(self, days: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.ledger(day))
        ledger = TradeLedger(self.client, self.keys)
        for day, raw in zip(days, pipe.execute(), strict=True):
            got = self.days.setdefault(day, LedgerDay())
            new = {_s(i): text for i, text in raw.items() if _s(i) not in got.seen}
            got.add(set(new), ledger.rows(day, new))
        self.malformed.update(ledger.malformed)

    # --- what is shown ---

    def tallies(self, today: str) -> tuple[Tally, Tally]:
        """(every closed trade, today's), each trade once: the ledger's rows and the closed positions not yet
        in it."""
        everything, todays = Tally(), Tally()
        in_ledger: set[str] = set()
        for got in self.days.values():
            in_ledger.update(got.rows)
            for day, tally in got.tallies.items():
                everything.merge(tally)
                if day == today:
                    todays.merge(tally)
        for pid, pos in self.positions.items():
            if pid not in in_ledger:
                everything.add(pos.realized_pnl, pos.fees)
                if utc_day(pos.state_since) == today:
                    todays.add(pos.realized_pnl, pos.fees)
        return everything, todays

    def latest(self, n: int) -> list[dict[str, Any]]:
        """The `n` latest closed trades by entry (newest first), as `positions --json` rows: stored positions
        as they are, removed ones (`archived`) as their ledger row."""
        ct = contract_values()
        stored = heapq.nlargest(n, self.positions.values(), key=lambda p: (p.created_at, p.id))
        archived: list[TradeRecord] = []
        for rec in heapq.merge(*(d.newest_first for d in self.days.values()),
                               key=lambda r: (r.entry_ts, r.id), reverse=True):  # fmt: skip
            if rec.id not in self.positions:
                archived.append(rec)
                if len(archived) == n:
                    break
        keyed = [((p.created_at, p.id), row(p, ct.get(p.symbol))) for p in stored]
        keyed += [((r.entry_ts, r.id), archived_row(r, ct.get(r.symbol))) for r in archived]
        return [r for _, r in sorted(keyed, key=lambda kr: kr[0], reverse=True)[:n]]

"""The closed trades `scalper web` shows (the totals, the latest closed rows), kept up to date by reading only
what changed: the dashboard and /metrics read them every second, and a bot that has run for months holds
days of closed positions and a ledger of a year, which a whole read a second would turn into a steady load
on Redis and on the cores the engine trades on.

Why reading the changes is enough:
- A closed position's hash never changes: closed is terminal (statemachines/lifecycle.py) and the store's
  scripts write a hash only at the state and version they read. So a position is read and parsed once, when
  its id first appears in its symbol's closed set, and forgotten when the retention removes it.
- A ledger row is written once per position, in the hash of its close's UTC day, and never rewritten or
  deleted alone (statemachines/lua.py: ARCHIVE_CLOSED, REMOVE_CLOSED; a day goes as a whole when its hash
  expires). So a day whose row count (HLEN) is unchanged is unchanged, a day with more rows reads only its
  new ones (HKEYS, then HMGET), and a day with fewer expired (and is read anew).
What the counts cannot see (a Redis rolled back by a restart or a failover, a day expired and written anew
between two reads) is mended by reading everything anew after any Redis error and every REBUILD_S.

What is kept of a ledger day: its ids, its totals, and its KEEP newest rows (the latest-closed list needs no
more), so the web process's memory grows by an id per trade, not a decoded row.

A closed position is in the ledger within a second of closing and stays stored for the retention: the same
trade, counted once (by id).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from scalper.inspect import archived_row, row
from scalper.run_history import contract_values
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord, utc_day
from statemachines.position import Position
from statemachines.redis_text import as_str
from statemachines.store import PositionStore, parse_hash

KEEP = 50  # newest rows kept per ledger day: the most `latest(n)` can show
REBUILD_S = 300.0  # everything is read anew this often (what the counts cannot see; see above)


def _newest(rec: TradeRecord) -> tuple[float, str]:
    return rec.entry_ts, rec.id


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
    """One ledger day as last read: the ids it held (readable or not), the ids of its readable rows, their
    tallies by UTC day of the close (one day, unless the hash holds a row of another), its newest rows."""

    seen: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    tallies: dict[str, Tally] = field(default_factory=dict)
    newest: list[TradeRecord] = field(default_factory=list)  # newest entry first, at most KEEP

    def add(self, seen: set[str], new: list[TradeRecord]) -> None:
        self.seen |= seen
        for rec in new:
            self.ids.add(rec.id)
            self.tallies.setdefault(utc_day(rec.exit_ts), Tally()).add(rec.pnl, rec.fees)
        self.newest = heapq.nlargest(KEEP, [*self.newest, *new], key=_newest)


class ClosedBook:
    """The stored closed positions and the ledger, as of the last `refresh`. Not thread-safe: one caller at
    a time (scalper/web/views.py holds a lock)."""

    def __init__(self, client: redis.Redis, store: PositionStore) -> None:
        self.client = client
        self.store = store
        self.malformed: set[str] = set()  # "day/id" of ledger rows that cannot be parsed (left out)
        self.unreadable: set[str] = set()  # stored closed positions whose hash cannot be parsed (left out)
        self._forget()

    def _forget(self) -> None:
        self.positions: dict[str, Position] = {}  # stored closed positions by id
        self.days: dict[str, LedgerDay] = {}
        self._ledger: dict[str, Tally] | None = None  # the ledger's tallies by UTC day, summed over its days
        self._built = time.monotonic()

    @property
    def keys(self) -> Keys:
        return self.store.keys

    def refresh(self) -> None:
        """Read what changed since the last call: a few round trips, and only new records are parsed."""
        if time.monotonic() - self._built > REBUILD_S:
            self._forget()
        try:
            self._refresh()
        except redis.RedisError:
            self._forget()  # Redis may come back with less (a restart, a failover): read it all anew
            raise

    def _refresh(self) -> None:
        k = self.keys
        symbols = self.store.symbols()
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.smembers(k.state(symbol, "closed"))
        pipe.smembers(k.ledger_days())
        *closed_sets, raw_days = pipe.execute()
        days = sorted(as_str(d) for d in raw_days)
        stored = {as_str(i): symbol for symbol, ids in zip(symbols, closed_sets, strict=True) for i in ids}
        self.positions = {i: p for i, p in self.positions.items() if i in stored}
        self.unreadable &= set(stored)
        new = sorted((symbol, i) for i, symbol in stored.items() if i not in self.positions
                     and i not in self.unreadable)  # fmt: skip
        pipe = self.client.pipeline(transaction=False)
        for symbol, i in new:
            pipe.hgetall(k.pos(symbol, i))
        for day in days:
            pipe.hlen(k.ledger(day))
        replies = pipe.execute()
        for (symbol, i), raw in zip(new, replies, strict=False):
            if not raw:
                continue  # the retention removed it since the first read (its ledger row is read below)
            try:
                self.positions[i] = parse_hash(raw, symbol, i)
            except ValueError:
                self.unreadable.add(i)  # as `scalper positions --all` leaves it out; not read again
        changed = [d for d in self.days if d not in days]
        for day in changed:
            del self.days[day]
        for day, n in zip(days, replies[len(new):], strict=True):
            if day in self.days and int(n) < len(self.days[day].seen):
                del self.days[day]  # expired (listed until the retention forgets it); maybe written anew
            if day not in self.days or int(n) != len(self.days[day].seen):
                changed.append(day)
        if changed:
            self._read_days([d for d in changed if d in days])
            self._ledger = None

    def _read_days(self, days: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hkeys(self.keys.ledger(day))
        unseen = {day: sorted({as_str(i) for i in ids} - self.days.get(day, LedgerDay()).seen)
                  for day, ids in zip(days, pipe.execute(), strict=True)}  # fmt: skip
        reading = [day for day in days if unseen[day]]
        pipe = self.client.pipeline(transaction=False)
        for day in reading:
            pipe.hmget(self.keys.ledger(day), unseen[day])
        ledger = TradeLedger(self.client, self.keys)
        for day in days:
            self.days.setdefault(day, LedgerDay())
        for day, texts in zip(reading, pipe.execute(), strict=True):
            raw = {i: t for i, t in zip(unseen[day], texts, strict=True) if t is not None}
            self.days[day].add(set(raw), ledger.rows(day, raw))
        self.malformed.update(ledger.malformed)

    # --- what is shown ---

    def tallies(self, today: str) -> tuple[Tally, Tally]:
        """(every closed trade, today's), each trade once: the ledger's rows and the closed positions not yet
        in it (a row is in the hash of its close's day)."""
        if self._ledger is None:
            self._ledger = {}
            for got in self.days.values():
                for day, tally in got.tallies.items():
                    self._ledger.setdefault(day, Tally()).merge(tally)
        everything, todays = Tally(), Tally()
        for day, tally in self._ledger.items():
            everything.merge(tally)
            if day == today:
                todays.merge(tally)
        for pid, pos in self.positions.items():
            day = utc_day(pos.state_since)
            if pid not in self.days.get(day, LedgerDay()).ids:
                everything.add(pos.realized_pnl, pos.fees)
                if day == today:
                    todays.add(pos.realized_pnl, pos.fees)
        return everything, todays

    def latest(self, n: int) -> list[dict[str, Any]]:
        """The `n` (at most KEEP) latest closed trades by entry (newest first), as `positions --json` rows:
        stored positions as they are, removed ones (`archived`) as their ledger row."""
        if n > KEEP:
            raise ValueError(f"at most {KEEP} latest closed trades are kept, not {n}")
        ct = contract_values()
        stored = heapq.nlargest(n, self.positions.values(), key=lambda p: (p.created_at, p.id))
        archived: list[TradeRecord] = []
        for rec in heapq.merge(*(d.newest for d in self.days.values()), key=_newest, reverse=True):
            if rec.id not in self.positions:
                archived.append(rec)
                if len(archived) == n:
                    break
        keyed = [((p.created_at, p.id), row(p, ct.get(p.symbol))) for p in stored]
        keyed += [((r.entry_ts, r.id), archived_row(r, ct.get(r.symbol))) for r in archived]
        return [r for _, r in sorted(keyed, key=lambda kr: kr[0], reverse=True)[:n]]

"""Bounded growth of the position store: a closed position gets its row in the day's trade ledger within a
second of closing, and leaves Redis `engine.closed_retention_s` after it closed (statemachines/archive.py
does each step in one script per position; statemachines/ledger.py reads the ledger).

The engine calls `run_once(now)` from its loop next to the mark flush, never on the tick path. A call does
something at most once a second and then a bounded amount of work: at most BATCH positions archived and
BATCH removed, in a few round trips, so a backlog (the first start after an upgrade, or after a long stop)
drains over several calls instead of stalling the loop.

Nothing still needed is removed: the retention is at least a day (config/settings.py), far beyond the hour
in which the reconciler treats a position with no record as lost (workers/lost_records.py), and the scripts
touch only positions that are closed. A record this process cannot parse is left alone and logged once.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import redis

from config.settings import DAY_S, EngineSettings
from statemachines.archive import ArchiveResult, ClosedArchive
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger
from workers.redis_trouble import transient

log = logging.getLogger("scalper.retention")

BATCH = 100  # positions archived, and positions removed, per call at most
EVERY_S = 1.0  # a call does nothing until this long after the last one that worked
FORGET_DAYS_EVERY_S = 3600.0  # how often the list of ledger days drops the days that have expired


class Sweep(NamedTuple):
    archived: int
    removed: int


class ClosedRetention:
    def __init__(
        self, client: redis.Redis, keys: Keys, symbols: list[str], *, retention_s: float, ledger_ttl_s: int
    ) -> None:
        """`retention_s`: how long a closed position stays (0 = forever); `ledger_ttl_s`: how long a day's
        ledger lives after its last write (0 = forever)."""
        self.archive = ClosedArchive(client, keys)
        self.ledger = TradeLedger(client, keys)
        self.symbols = list(symbols)
        self.retention_s = retention_s
        self.ledger_ttl_s = ledger_ttl_s
        self._last = float("-inf")
        self._last_days = float("-inf")
        # Per symbol, the ids left alone (see _leave_alone): not to be archived, not to be removed.
        self._no_archive: dict[str, set[str]] = {s: set() for s in self.symbols}
        self._no_removal: dict[str, set[str]] = {s: set() for s in self.symbols}
        self._failing = ""  # the last error logged, so a persistent one is logged once
        self._failed_once: set[tuple[str, str]] = set()  # (step, id) whose script failure was logged

    @classmethod
    def from_settings(
        cls, client: redis.Redis, keys: Keys, symbols: list[str], engine: EngineSettings
    ) -> ClosedRetention:
        return cls(client, keys, symbols, retention_s=engine.closed_retention_s,
                   ledger_ttl_s=engine.ledger_retention_days * DAY_S)  # fmt: skip

    def run_once(self, now: float) -> Sweep | None:
        """Archive what closed since the last call and remove what is past the retention; None when not due
        yet. A Redis error reply (a key of the wrong type, a script refused) is logged and the call skipped;
        a lost connection or a passing refusal (BUSY, OOM, ...) propagates, as from any other step of the
        engine's loop, which waits it out with one line in words (workers/redis_trouble.py)."""
        if 0 <= now - self._last < EVERY_S:  # (a clock set back does not pause it)
            return None
        self._last = now
        try:
            sweep = self._sweep(now)
        except redis.ResponseError as err:
            if transient(err):  # BUSY, OOM, READONLY...: an outage, ridden out like a lost connection
                raise
            if str(err) != self._failing:
                log.warning("retention pass skipped: %s", err)
                self._failing = str(err)
            return None
        self._failing = ""
        return sweep

    def _sweep(self, now: float) -> Sweep:
        cutoff = now - self.retention_s if self.retention_s else float("-inf")
        extra = max((len(ids) for ids in self._no_removal.values()), default=0)
        queues = self.archive.queue(self.symbols, cutoff, BATCH + extra)
        # Symbols with closed positions that have no ledger row, besides those left alone.
        behind = [q.symbol for q in queues if q.unarchived > len(self._no_archive[q.symbol])]
        archived = 0
        if behind:
            todo = [(s, i) for s, i in self.archive.unarchived(behind) if i not in self._no_archive[s]]
            result = self.archive.archive(todo[:BATCH], now, self.ledger_ttl_s)
            self._leave_alone(todo[:BATCH], result, self._no_archive, "archive")
            archived = len(result.done)
        due = [(q.symbol, i) for q in queues for i in q.due if i not in self._no_removal[q.symbol]][:BATCH]
        removed = 0
        if due:
            result = self.archive.remove(due, self.ledger_ttl_s)
            self._leave_alone(due, result, self._no_removal, "removal")
            removed = len(result.done)
            log.info("retention: removed %d closed positions (closed before %.0f); their ledger rows stay",
                     removed, cutoff)  # fmt: skip
        if not 0 <= now - self._last_days < FORGET_DAYS_EVERY_S:
            self._last_days = now
            self.ledger.forget_expired_days()
        return Sweep(archived=archived, removed=removed)

    def _leave_alone(
        self, pairs: list[tuple[str, str]], result: ArchiveResult, skip: dict[str, set[str]], step: str
    ) -> None:
        """A record that cannot be archived or removed as it is, is logged once and not tried again by this
        process: a hash that does not parse; for the archive also a closed id with no hash or whose hash is
        not closed (check_consistency reports those). A script that failed (out of memory, a key of the
        wrong type) is logged once and tried again on the next pass."""
        bad = {"unparsable": result.malformed}
        if step == "archive":
            bad |= {"no hash": result.gone, "not closed": result.refused}
        symbol_of = {pid: s for s, pid in pairs}
        for why, ids in bad.items():
            for pid in ids:
                skip[symbol_of[pid]].add(pid)
                log.warning("retention: %s of %s %s left alone (%s)", step, symbol_of[pid], pid, why)
        for pid, err in result.failed:
            if (step, pid) not in self._failed_once:
                self._failed_once.add((step, pid))
                log.warning("retention: %s of %s %s failed, tried again next pass: %s",
                            step, symbol_of[pid], pid, err)  # fmt: skip

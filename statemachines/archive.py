"""Closed positions' way out of Redis: a row in the day's trade ledger, then, after the retention, removal.

Each step is one Lua script per position (statemachines/lua.py): ARCHIVE_CLOSED writes the ledger row and
queues the position in its symbol's `archived` sorted set, scored by its close (wall) time; REMOVE_CLOSED
writes the row again unless it is there and deletes the hash, the log, the index entries, the queue entry
and the id -> symbol entry together. Both act only on a position that is `closed` at the version the caller
read (closed is terminal, so the row computed from that read stays true): a live position is never touched,
and an interrupted pass leaves each position whole or gone, never half. When to run them is the caller's
policy (workers/retention.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from statemachines import lua
from statemachines.keys import Keys
from statemachines.ledger import TradeRecord
from statemachines.lifecycle import State
from statemachines.position import Position
from statemachines.redis_text import as_str
from statemachines.store import parse_hash

CLOSED = State.CLOSED.value


@dataclass
class ArchiveResult:
    """What a pass did with each (symbol, id) it was given."""

    done: list[str] = field(default_factory=list)  # archived, or removed
    refused: list[str] = field(default_factory=list)  # not closed, or moved, when the script ran: untouched
    gone: list[str] = field(default_factory=list)  # no hash
    malformed: list[str] = field(default_factory=list)  # a hash that cannot be parsed: untouched
    # (id, error) of the scripts that raised (out of memory, a key of the wrong type): untouched
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueueState:
    symbol: str
    unarchived: int  # closed positions without a ledger row
    due: list[str]  # archived ids closed at or before the cutoff, oldest first


# (pipeline, symbol, id, position, its ledger row): queue one script on the pipeline
_Script = Callable[[Any, str, str, Position, TradeRecord], None]


class ClosedArchive:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._archive = client.register_script(lua.ARCHIVE_CLOSED)
        self._remove = client.register_script(lua.REMOVE_CLOSED)

    def queue(self, symbols: Sequence[str], cutoff: float, limit: int) -> list[QueueState]:
        """Per symbol: how many closed positions have no ledger row yet, and up to `limit` archived ids
        closed at or before `cutoff`. One round trip."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.scard(k.state(symbol, CLOSED))
            pipe.zcard(k.archived(symbol))
            pipe.zrangebyscore(k.archived(symbol), "-inf", cutoff, start=0, num=limit)
        replies = pipe.execute()
        rows = zip(symbols, replies[0::3], replies[1::3], replies[2::3], strict=True)
        return [QueueState(sym, max(0, int(closed) - int(archived)), [as_str(i) for i in due])
                for sym, closed, archived, due in rows]  # fmt: skip

    def unarchived(self, symbols: Sequence[str]) -> list[tuple[str, str]]:
        """(symbol, id) of the closed positions without a ledger row, oldest id first. One round trip: the
        server compares each closed set with its queue (ZDIFF takes a plain set; Redis 6.2)."""
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.execute_command("ZDIFF", 2, k.state(symbol, CLOSED), k.archived(symbol))
        pairs = [(sym, as_str(i)) for sym, ids in zip(symbols, pipe.execute(), strict=True) for i in ids]
        return sorted(pairs, key=lambda p: (p[1], p[0]))

    def archive(self, pairs: Sequence[tuple[str, str]], now: float, ledger_ttl_s: int = 0) -> ArchiveResult:
        """Write each closed position's ledger row and queue it for removal, scored by its close (wall)
        time, or by `now` when that is unknown or ahead of `now`."""
        k = self.keys

        def script(pipe: Any, symbol: str, pid: str, pos: Position, rec: TradeRecord) -> None:
            closed_at = pos.wall_since if 0 < pos.wall_since <= now else now
            self._archive(
                keys=[k.pos(symbol, pid), k.archived(symbol), k.ledger(rec.day), k.ledger_days()],
                args=[pid, str(pos.version), rec.encode(), repr(closed_at), str(ledger_ttl_s), rec.day],
                client=pipe,
            )

        return self._each(pairs, script, zero_is_gone=False)

    def remove(self, pairs: Sequence[tuple[str, str]], ledger_ttl_s: int = 0) -> ArchiveResult:
        """Remove closed positions, each with its ledger row written first (unless it is there). An id
        whose position is gone or not closed only leaves the queue."""
        k = self.keys

        def script(pipe: Any, symbol: str, pid: str, pos: Position, rec: TradeRecord) -> None:
            self._remove(
                keys=[
                    k.pos(symbol, pid), k.log(symbol, pid), k.state(symbol, CLOSED), k.positions(symbol),
                    k.archived(symbol), k.pos_symbol(), k.ledger(rec.day), k.ledger_days(),
                ],
                args=[pid, str(pos.version), rec.encode(), str(ledger_ttl_s), rec.day, symbol],
                client=pipe,
            )  # fmt: skip

        result = self._each(pairs, script, zero_is_gone=True)
        if result.gone:  # nothing of them left to remove but their queue entries
            gone = set(result.gone)
            pipe = self.client.pipeline(transaction=False)
            for symbol, pid in pairs:
                if pid in gone:
                    pipe.zrem(k.archived(symbol), pid)
            pipe.execute()
        return result

    def _each(
        self, pairs: Sequence[tuple[str, str]], script: _Script, *, zero_is_gone: bool
    ) -> ArchiveResult:
        """Read the positions (one round trip), then run `script` for each one that parses (one more): the
        script checks the state. Its 1 is done; 0 is gone when `zero_is_gone`, else refused; < 0 refused."""
        result = ArchiveResult()
        if not pairs:
            return result
        reads = self.client.pipeline(transaction=False)
        for symbol, pid in pairs:
            reads.hgetall(self.keys.pos(symbol, pid))
        scripts = self.client.pipeline(transaction=False)
        queued: list[str] = []
        for (symbol, pid), raw in zip(pairs, reads.execute(), strict=True):
            if not raw:
                result.gone.append(pid)
                continue
            try:
                pos = parse_hash(raw, symbol, pid)
            except ValueError:
                result.malformed.append(pid)
                continue
            rec = TradeRecord.of(pos)
            script(scripts, symbol, pid, pos, rec)
            queued.append(pid)
        replies = scripts.execute(raise_on_error=False) if queued else []
        for pid, reply in zip(queued, replies, strict=True):
            if isinstance(reply, Exception):
                result.failed.append((pid, str(reply)))
            elif int(reply) == 1:
                result.done.append(pid)
            elif int(reply) == 0 and zero_is_gone:
                result.gone.append(pid)
            else:
                result.refused.append(pid)
        return result

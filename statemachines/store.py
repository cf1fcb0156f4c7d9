"""Positions in Redis: one hash, one transition log (stream) and index sets per position, all plain strings.

Every write that must move together runs as one Lua script over one symbol's keys, with the hand-off of the
order intent it decides (statemachines/lua.py): RQ's enqueue commands when the store was given a `handoff`
(the engine's), else an entry in the symbol's outbox for the relay. The two global keys (`symbols`,
`pos-symbol`) only grow and are written before the creation script, so a crash in between leaves at worst an
id that maps to no hash, never a hash nobody can find.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields as dc_fields
from decimal import Decimal
from typing import Any

import redis

from statemachines import lua
from statemachines.keys import DEFAULT_PREFIX, Keys
from statemachines.lifecycle import LIVE_STATES, STATES, State, is_legal
from statemachines.machine import StaleTransition
from statemachines.position import Position, encode_value
from statemachines.redis_text import as_str

# Written only by the store itself (state, version) or fixed for the position's life.
RESERVED_FIELDS = frozenset({"state", "version", "id", "symbol", "side"})
# Persisted Position fields a mark update may write: taken from the encoding itself, so derived caches
# (entry_px, sign, ...) are never writable; time_in (t_<state>) is written by transitions only.
MARK_FIELDS = frozenset(Position(id="x", symbol="x", side="long").to_hash()) - RESERVED_FIELDS
# A transition may also write the time spent in the state it leaves.
TRANSITION_FIELDS = MARK_FIELDS | {f"t_{state}" for state in STATES}
# Parse a written value back with the field's declared type (annotations are strings here).
_TYPES: dict[str, Any] = {"int": int, "float": float, "Decimal": Decimal}
_PARSE: dict[str, Any] = {f.name: _TYPES.get(str(f.type), str) for f in dc_fields(Position)}
# The fields of every log (stream) entry, in the order they are written.
LOG_FIELDS = ("from", "to", "trigger", "reason", "price", "ts", "version")


# Told of a position hash that cannot be parsed: (symbol, id, the raw hash, what is wrong with it).
OnBadHash = Callable[[str, str, Mapping[Any, Any], str], None]


def parse_hash(raw: Mapping[Any, Any], symbol: str, position_id: str) -> Position:
    """The position of a stored hash; ValueError (naming the field) when it cannot be one, or when it is
    not the position its key says (a hand-edited id or symbol)."""
    try:
        pos = Position.from_hash(raw)
        int(as_str(raw.get(b"version", raw.get("version", b"x"))))  # a transition needs a number to compare
    except (ValueError, TypeError, ArithmeticError) as err:  # decimal.InvalidOperation is an ArithmeticError
        raise ValueError(f"position {position_id} ({symbol}): {err}") from None
    if pos.id != position_id or pos.symbol != symbol:
        raise ValueError(f"hash under {symbol}/{position_id} says {pos.symbol}/{pos.id}")
    return pos


class PositionExists(RuntimeError):
    """create() of an id that is already stored (possibly under another symbol)."""


class PositionNotFound(LookupError):
    """No stored position with that id."""


def _flat(mapping: Mapping[str, str]) -> list[str]:
    return [x for kv in mapping.items() for x in kv]


# An order intent's fields -> the Redis commands that hand it to the workers (each a command and its args),
# run inside the transition's script: see workers/relay.py, RqHandOff.
HandOff = Callable[[Mapping[str, str]], Sequence[Sequence[Any]]]


class PositionStore:
    """Implements machine.TransitionStore; see keys.py for the key schema."""

    def __init__(
        self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, handoff: HandOff | None = None,
        replica_wait: tuple[int, int] = (0, 0),
    ) -> None:  # fmt: skip
        self.client = client
        self.keys = Keys(prefix)
        self.handoff = handoff
        # (replicas, timeout ms): WAIT after a creation and after a transition that hands an order off.
        self.replica_wait = replica_wait
        self.replicas_short = 0  # WAITs that timed out before that many replicas had the write
        # register_script: EVALSHA, falling back to EVAL (and re-caching) after a server restart.
        self._create = client.register_script(lua.CREATE)
        self._transition = client.register_script(lua.TRANSITION)
        self._update_marks = client.register_script(lua.UPDATE_MARKS)
        self._request_close = client.register_script(lua.REQUEST_CLOSE)
        # Outbox entries this store wrote: lets the engine's relay skip reading the outbox when none is new.
        self.intents_written = 0

    # --- writes ---

    def create(
        self,
        pos: Position,
        *,
        reason: str = "",
        price: float = 0.0,
        ts: float | None = None,
        intent: Mapping[str, str] | None = None,
    ) -> None:
        """Store a new position in `opening` at version 1 with its creation log entry, and hand the entry
        order's intent over (RQ, or the symbol's outbox), all in one script."""
        if pos.state != State.OPENING:
            raise ValueError(f"a new position starts in {State.OPENING.value!r}, not {pos.state!r}")
        now = time.time() if ts is None else ts
        created_at = pos.created_at or now
        state_since = pos.state_since or created_at  # so the first transition can account time in opening
        data = pos.to_hash() | {
            "version": "1",
            "created_at": encode_value(created_at),
            "state_since": encode_value(state_since),
        }
        k = self.keys
        # Globals first (see module doc). HSETNX: never re-point an existing id to another symbol.
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(k.symbols(), pos.symbol)
        pipe.hsetnx(k.pos_symbol(), pos.id, pos.symbol)
        pipe.hget(k.pos_symbol(), pos.id)
        owner = as_str(pipe.execute()[2])
        if owner != pos.symbol:
            raise PositionExists(f"position {pos.id} already exists under symbol {owner}")
        ok = self._create(
            keys=[
                k.pos(pos.symbol, pos.id),
                k.log(pos.symbol, pos.id),
                k.state(pos.symbol, State.OPENING.value),
                k.positions(pos.symbol),
                k.outbox(pos.symbol),
                k.transitions(pos.symbol),
            ],
            args=[
                pos.id, reason, encode_value(float(price)), encode_value(now), str(2 * len(data)),
                *_flat(data), *self._handoff_args(intent),
            ],
        )  # fmt: skip
        if not int(ok):
            raise PositionExists(f"position {pos.id} ({pos.symbol}) already exists")
        if intent and self.handoff is None:
            self.intents_written += 1
        pos.created_at, pos.state_since, pos.version = created_at, state_since, 1
        self._wait_replicas()

    def apply_transition(
        self,
        pos: Position,
        *,
        source: str,
        dest: str,
        trigger: str,
        reason: str,
        price: float,
        ts: float,
        fields: dict[str, str],
        intent: Mapping[str, str] | None = None,
    ) -> int:
        """The compare-and-set of one transition, with the hand-off of the order intent it calls for (RQ, or
        the symbol's outbox) in the same script; returns the new version or raises StaleTransition.
        Leaves `pos` untouched: the machine applies the change in memory once this returned."""
        bad = set(fields) - TRANSITION_FIELDS
        if bad:
            raise ValueError(f"a transition may not write {sorted(bad)}: not a writable position field")
        k = self.keys
        res = self._transition(
            keys=[
                k.pos(pos.symbol, pos.id),
                k.log(pos.symbol, pos.id),
                k.state(pos.symbol, source),
                k.state(pos.symbol, dest),
                k.outbox(pos.symbol),
                k.transitions(pos.symbol),
            ],
            args=[
                pos.id, source, dest, str(pos.version), trigger, reason,
                encode_value(float(price)), encode_value(float(ts)), str(2 * len(fields)),
                *_flat(fields), *self._handoff_args(intent),
            ],
        )  # fmt: skip
        if int(res[0]) != 1:
            state, version = as_str(res[1]), as_str(res[2])
            found = f"stored state {state!r} version {version}" if state else "it is not stored"
            raise StaleTransition(
                f"position {pos.id} ({pos.symbol}): {trigger} {source}->{dest} expected state {source!r} "
                f"version {pos.version}, but {found}"
            )
        if intent and self.handoff is None:
            self.intents_written += 1
        if intent:
            self._wait_replicas()
        return int(res[1])

    def _wait_replicas(self) -> None:
        """Redis WAIT, when set: the write reached that many replicas, or the timeout passed (counted; the
        write stands either way, as replication stays asynchronous)."""
        replicas, timeout_ms = self.replica_wait
        if replicas and int(self.client.execute_command("WAIT", replicas, timeout_ms)) < replicas:
            self.replicas_short += 1

    def _handoff_args(self, intent: Mapping[str, str] | None) -> list[Any]:
        """The scripts' hand-off ARGV (lua.py): an outbox entry, or the queue's commands, or nothing."""
        if not intent:
            return ["0"]
        if self.handoff is None:
            return [str(2 * len(intent)), *_flat(intent)]
        out: list[Any] = ["0"]
        for command in self.handoff(intent):
            out += [str(len(command)), *command]
        return out

    def update_marks(self, pos: Position, fields: Mapping[str, Any]) -> bool:
        """Write mark-to-market fields if the stored state and version are still those `pos` holds; no
        version bump, no log entry. On success `pos` gets the values too; False (nothing written) if stale."""
        bad = set(fields) - MARK_FIELDS
        if bad:
            raise ValueError(f"update_marks may not write {sorted(bad)} (only {sorted(MARK_FIELDS)})")
        encoded = {name: encode_value(value) for name, value in fields.items()}
        ok = self._update_marks(
            keys=[self.keys.pos(pos.symbol, pos.id)],
            args=[pos.state, str(pos.version), *_flat(encoded)],
        )
        if not int(ok):
            return False
        for name, text in encoded.items():
            # Parsed with the field's type: a caller passing "1.5" must not turn a float field into a str.
            setattr(pos, name, _PARSE[name](text))
        pos.entry_px = float(pos.entry_price)
        return True

    def request_close(self, position_id: str, reason: str = "manual") -> bool:
        """The operator's close: flag a live position for the engine; False if closed or unknown."""
        symbol = self._symbol_of(position_id)
        if symbol is None:
            return False
        ok = self._request_close(keys=[self.keys.pos(symbol, position_id)], args=[reason or "manual"])
        return bool(int(ok))

    # --- reads ---

    def load(self, position_id: str, symbol: str | None = None) -> Position:
        """The stored position; one round trip when the caller knows its symbol."""
        symbol = symbol or self._symbol_of(position_id)
        raw = self.client.hgetall(self.keys.pos(symbol, position_id)) if symbol else None
        if not raw:
            raise PositionNotFound(f"no stored position {position_id}")
        return parse_hash(raw, symbol, position_id)  # type: ignore[arg-type]

    def load_symbol(self, symbol: str, states: Iterable[str] | None = None,
                    on_bad: OnBadHash | None = None) -> list[Position]:  # fmt: skip
        """The symbol's positions (only those in `states` if given), oldest id first; a hash that cannot be
        parsed raises ValueError, or, given `on_bad`, is reported to it and left out."""
        return self._load_many([(symbol, i) for i in self._ids(symbol, states)], on_bad)

    def load_live(self, on_bad: OnBadHash | None = None) -> list[Position]:
        """Every non-closed position of every symbol: what crash recovery must settle. A hash that cannot
        be parsed raises ValueError, or, given `on_bad`, is reported to it and left out."""
        symbols = sorted(as_str(x) for x in self.client.smembers(self.keys.symbols()))
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.sunion([self.keys.state(symbol, st) for st in LIVE_STATES])
        pairs = [(sym, as_str(i)) for sym, ids in zip(symbols, pipe.execute(), strict=True) for i in ids]
        return self._load_many(sorted(pairs, key=lambda p: (p[1], p[0])), on_bad)

    def ids(self, symbol: str, state: str | None = None) -> list[str]:
        """Ids of the symbol's positions in `state` (all if None), sorted."""
        return self._ids(symbol, None if state is None else [state])

    def symbols(self) -> list[str]:
        return sorted(as_str(x) for x in self.client.smembers(self.keys.symbols()))

    def log(self, position_id: str) -> list[dict[str, str]]:
        """The position's transitions, oldest first, as plain dicts (from, to, trigger, ...)."""
        symbol = self._symbol_of(position_id)
        if symbol is None:
            raise PositionNotFound(f"no stored position {position_id}")
        return _decode_log(self.client.xrange(self.keys.log(symbol, position_id)))

    # --- consistency ---

    def check_consistency(self, pos_or_id: Position | str) -> list[str]:
        """Problems in what Redis holds for one position (the in-memory object is not compared); [] = ok."""
        pid = pos_or_id.id if isinstance(pos_or_id, Position) else pos_or_id
        k = self.keys
        problems: list[str] = []
        symbol = self._symbol_of(pid)
        if symbol is None:
            problems.append(f"{pid}: no entry in {k.pos_symbol()}")
            if not isinstance(pos_or_id, Position):
                return problems
            symbol = pos_or_id.symbol
        # One MULTI over one slot: a consistent snapshot even while other processes write.
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(k.pos(symbol, pid))
        pipe.xrange(k.log(symbol, pid))
        pipe.sismember(k.positions(symbol), pid)
        for st in STATES:
            pipe.sismember(k.state(symbol, st), pid)
        raw, entries, in_positions, *in_states = pipe.execute()
        if not self.client.sismember(k.symbols(), symbol):
            problems.append(f"symbol {symbol} missing from {k.symbols()}")
        if not raw:
            return [*problems, f"{pid}: hash {k.pos(symbol, pid)} missing"]
        data = {as_str(a): as_str(b) for a, b in raw.items()}
        state, version = data.get("state", ""), data.get("version", "")
        if data.get("id") != pid or data.get("symbol") != symbol:
            problems.append(f"hash says id {data.get('id')} symbol {data.get('symbol')}, not {pid} {symbol}")
        if not in_positions:
            problems.append(f"not in {k.positions(symbol)}")
        member_of = [st for st, yes in zip(STATES, in_states, strict=True) if yes]
        if member_of != [state]:
            problems.append(f"state {state!r} but in state sets {member_of}")
        problems += _check_log(_decode_log(entries), state, version)
        return problems

    # --- internals ---

    def _symbol_of(self, position_id: str) -> str | None:
        symbol = self.client.hget(self.keys.pos_symbol(), position_id)
        return None if symbol is None else as_str(symbol)

    def _ids(self, symbol: str, states: Iterable[str] | None) -> list[str]:
        if states is None:
            members = self.client.smembers(self.keys.positions(symbol))
        else:
            members = self.client.sunion([self.keys.state(symbol, st) for st in states])
        return sorted(as_str(x) for x in members)

    def _load_many(self, pairs: Sequence[tuple[str, str]], on_bad: OnBadHash | None = None) -> list[Position]:
        pipe = self.client.pipeline(transaction=False)
        for symbol, pid in pairs:
            pipe.hgetall(self.keys.pos(symbol, pid))
        out = []
        for (symbol, pid), raw in zip(pairs, pipe.execute(), strict=True):
            if not raw:
                continue  # an index entry without a hash; check_consistency reports it
            try:
                out.append(parse_hash(raw, symbol, pid))
            except ValueError as err:
                if on_bad is None:
                    raise
                on_bad(symbol, pid, raw, str(err))
        return out


def _decode_log(entries: Sequence[tuple[Any, Mapping[Any, Any]]]) -> list[dict[str, str]]:
    return [{as_str(a): as_str(b) for a, b in fields.items()} for _id, fields in entries]


def _check_log(log: list[dict[str, str]], state: str, version: str) -> list[str]:
    """The log must be the creation entry then a chain of legal edges ending at the stored state/version."""
    problems: list[str] = []
    if str(len(log)) != version:
        problems.append(f"version {version!r} but {len(log)} log entries")
    if not log:
        return problems
    first = log[0]
    if (first.get("from"), first.get("to"), first.get("trigger")) != ("", State.OPENING.value, "create"):
        problems.append(f"first log entry is not the creation: {first}")
    prev_to = State.OPENING.value
    for n, entry in enumerate(log, start=1):
        if entry.get("version") != str(n):
            problems.append(f"log entry {n} has version {entry.get('version')!r}")
        if n == 1:
            continue
        src, dst, trig = entry.get("from", ""), entry.get("to", ""), entry.get("trigger", "")
        if src != prev_to:
            problems.append(f"log entry {n} starts at {src!r}, the previous one ended at {prev_to!r}")
        if not is_legal(src, dst, trig):
            problems.append(f"log entry {n}: {trig} {src}->{dst} is not a legal transition")
        prev_to = dst
    last = log[-1]
    if last.get("to") != state or last.get("version") != version:
        problems.append(
            f"last log entry ends at {last.get('to')!r} v{last.get('version')}, hash at {state!r} v{version}"
        )
    return problems

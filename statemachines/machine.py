"""Moving positions through the lifecycle, with every transition persisted before it takes effect.

The `transitions` library checks that a trigger is legal from the current state; our `before_state_change`
hook writes the transition to the store as one compare-and-set (state and version) together with its log
entry. If the write fails (another process moved the position first), the exception propagates out of the
trigger before `transitions` changes the state, so memory never runs ahead of Redis.

Positions are not added to the machine as models: the library would give each one a method per trigger
(`pos.close()` would move a position to `closing` without any close order). Every move goes through `fire`
with a `Trigger`, so the table and the store see all of them. The store is the live Redis store or the
backtest's memory (backtest/memory.py): the same table and the same decisions either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import fields as dataclass_fields
from typing import Any, Protocol

from transitions import EventData, Machine

from statemachines.lifecycle import Trigger, build_machine
from statemachines.position import Position, encode_value


class StaleTransition(RuntimeError):
    """The stored position is no longer in the state/version this process last saw."""


class TransitionStore(Protocol):
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
        """Atomically: check state == source and version == pos.version, write dest, version + 1 and
        `fields`, move the index entries, append the log entry and hand the order intent (if any) over (RQ,
        or the outbox); return the new version, or raise StaleTransition."""
        ...


class PositionMachine:
    """One shared `transitions` Machine for every position; a position is data, never a model of it."""

    def __init__(
        self,
        store: TransitionStore | None = None,
        clock: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.time,
    ):
        self.store = store
        self.clock = clock  # the engine's time: market time in a replay
        self.wall = wall
        self.machine = build_machine(before_state_change=[self._persist])
        self._events = {Trigger(name): event for name, event in self.machine.events.items()}
        self._moves = _plain_moves(self.machine, self._persist)

    def fire(
        self,
        pos: Position,
        trigger: Trigger,
        *,
        reason: str = "",
        price: float = 0.0,
        fields: dict[str, Any] | None = None,
        intent: Mapping[str, str] | None = None,
    ) -> None:
        """Fire `trigger` on `pos`: raises MachineError if illegal from its state, StaleTransition if
        another process moved it first. `fields` are position attributes written with the transition;
        `intent` is the order intent (OrderIntent.to_fields()) handed over with it."""
        event = self._events[Trigger(trigger)]
        move = self._moves.get((event.name, pos.state)) if self._moves is not None else None
        if move is None:  # an illegal move (the library raises its MachineError), or callbacks to run
            event.trigger(pos, reason=reason, price=price, fields=fields or {}, intent=intent)
            return
        # What the library does for a legal move of this table, without its dispatch (most of a transition's
        # cost): the write first (the store's compare-and-set), then the new state.
        source, dest, state = move
        self._write(pos, source, dest, event.name, reason, price, fields or {}, intent)
        if state is not None:
            pos.state = state

    def _persist(self, event: EventData) -> None:
        kw = event.kwargs
        self._write(
            event.model,
            event.transition.source,
            event.transition.dest or event.transition.source,
            event.event.name,
            str(kw.get("reason", "")),
            float(kw.get("price", 0.0)),
            kw.get("fields") or {},
            kw.get("intent"),
        )

    def _write(
        self,
        pos: Position,
        source: str,
        dest: str,
        trigger: str,
        reason: str,
        price: float,
        fields: dict[str, Any],
        intent: Mapping[str, str] | None,
    ) -> None:
        now = self.clock()
        updates: dict[str, Any] = dict(fields)
        spent = pos.time_in.get(source, 0.0) + (max(0.0, now - pos.state_since) if pos.state_since else 0.0)
        updates["state_since"] = now
        updates["wall_since"] = self.wall()
        encoded = _encode(pos, updates)
        encoded[f"t_{source}"] = repr(spent)
        if self.store is not None:
            version = self.store.apply_transition(
                pos,
                source=source,
                dest=dest,
                trigger=trigger,
                reason=str(reason),
                price=float(price),
                ts=now,
                fields=encoded,
                intent=intent,
            )
        else:
            version = pos.version + 1
        for name, value in updates.items():
            if name == "entry_price":
                pos.set_entry(value, updates.get("size", pos.size))
            else:
                setattr(pos, name, value)
        pos.time_in[source] = spent
        pos.version = version


Move = tuple[str, str, str | None]  # source, dest as the store logs it, the state set (None: internal)
Moves = dict[tuple[str, str], Move]  # by (trigger, source)


def _plain_moves(machine: Machine, persist: Callable[[EventData], None]) -> Moves | None:
    """The table as the library parsed it: (trigger, source) -> (source, dest, the state it sets, None for an
    internal move). None when the machine has any callback besides `persist` (before every state change):
    then every move goes through the library, which runs them."""
    if (
        list(machine.before_state_change) != [persist]
        or machine.after_state_change
        or machine.prepare_event
        or machine.finalize_event
        or machine.on_exception
        or machine.on_final
        or any(st.on_enter or st.on_exit or st.final for st in machine.states.values())
    ):
        return None
    moves: Moves = {}
    for name, event in machine.events.items():
        for source, transitions in event.transitions.items():
            if len(transitions) != 1:
                return None
            tr = transitions[0]
            if tr.prepare or tr.conditions or tr.before or tr.after:
                return None
            state = None if tr.dest is None else machine.get_state(tr.dest).value
            moves[(name, source)] = (source, tr.dest or source, state)
    return moves


def _encode(pos: Position, updates: dict[str, Any]) -> dict[str, str]:
    """Encode updates as Position.to_hash does; state, version and identity are the store's to write."""
    unknown = [k for k in updates if k not in _WRITABLE]
    if unknown:
        raise ValueError(f"not a writable position field: {unknown}")
    return {k: encode_value(v) for k, v in updates.items()}


# Only persisted data fields: not identity, and not derived caches.
_WRITABLE = frozenset(f.name for f in dataclass_fields(Position)) - {
    "state",
    "version",
    "id",
    "symbol",
    "side",
    "time_in",
    "entry_px",
    "sign",
}

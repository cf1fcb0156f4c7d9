"""The position lifecycle: the one transition table every position obeys.

Read top to bottom, this table is the whole lifecycle. Every way out of a position goes through `closing`
(one close path); only `external_close` (the exchange closed or liquidated it) and `entry_failed`
(nothing was ever filled) reach `closed` without it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from transitions import Machine


class State(StrEnum):
    OPENING = "opening"  # entry order in flight
    OPEN = "open"  # every exit guard evaluated on every tick
    HARVESTING = "harvesting"  # reduce-only partial take-profit in flight
    TRAILING = "trailing"  # trailing stop armed; TP and harvest no longer apply
    CLOSING = "closing"  # reduce-only close in flight, retried until the exchange shows it gone
    CLOSED = "closed"  # terminal


STATES: tuple[str, ...] = tuple(s.value for s in State)
LIVE_STATES: tuple[str, ...] = tuple(s for s in STATES if s != State.CLOSED)

OPENING, OPEN, HARVESTING, TRAILING, CLOSING, CLOSED = STATES
AWAITING_ORDER: tuple[str, ...] = (OPENING, HARVESTING, CLOSING)  # an order of the position is on its way


class Trigger(StrEnum):
    """What moves a position: the events of the table below, the only names `PositionMachine.fire` takes."""

    ENTRY_FILLED = "entry_filled"
    ENTRY_FAILED = "entry_failed"
    HARVEST = "harvest"
    HARVEST_FILLED = "harvest_filled"
    HARVEST_FAILED = "harvest_failed"
    ARM_TRAILING = "arm_trailing"
    CLOSE = "close"
    RETRY_CLOSE = "retry_close"
    CLOSE_FILLED = "close_filled"
    EXTERNAL_CLOSE = "external_close"
    RESYNC = "resync"


# fmt: off
TRANSITIONS: list[dict[str, Any]] = [
    # trigger                    from                                    to              why
    {"trigger": "entry_filled",   "source": OPENING,                   "dest": OPEN},        # filled (partial: rest cancelled)
    {"trigger": "entry_failed",   "source": OPENING,                   "dest": CLOSED},      # rejected/cancelled/timed out, nothing filled
    {"trigger": "harvest",        "source": OPEN,                      "dest": HARVESTING},  # partial reduce-only take-profit sent
    {"trigger": "harvest_filled", "source": HARVESTING,                "dest": TRAILING},    # rest trails, stop >= breakeven + fees
    {"trigger": "harvest_failed", "source": HARVESTING,                "dest": OPEN},        # harvest order rejected, nothing filled
    {"trigger": "arm_trailing",   "source": OPEN,                      "dest": TRAILING},    # activation reached, or take profit blocked
    {"trigger": "close",          "source": [OPEN, HARVESTING, TRAILING], "dest": CLOSING},  # any exit guard, manual close, panic
    {"trigger": "retry_close",    "source": CLOSING,                   "dest": CLOSING},     # close order gone, position not: next attempt
    {"trigger": "close_filled",   "source": CLOSING,                   "dest": CLOSED},      # the exchange shows the position gone
    {"trigger": "external_close", "source": list(LIVE_STATES),         "dest": CLOSED},      # closed or liquidated outside the bot
    {"trigger": "resync",         "source": [OPEN, HARVESTING, TRAILING], "dest": "="},      # reconciler adopted the exchange's size
]
# fmt: on


def build_machine(**kwargs: Any) -> Machine:
    """A `transitions` Machine with the lifecycle and no models; positions join it with `add_model`.

    One shared machine keeps the per-position cost at a model's size instead of a machine's.
    """
    return Machine(
        model=None,
        states=list(STATES),
        transitions=TRANSITIONS,
        initial=State.OPENING.value,
        auto_transitions=False,
        send_event=True,
        **kwargs,
    )


def edges(machine: Machine) -> list[tuple[str, str, str]]:
    """(source, dest, trigger) for every transition the machine knows, in table order."""
    out = []
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            for tr in transitions:
                out.append((source, tr.dest or source, trigger))
    return out


def is_legal(source: str, dest: str, trigger: str, machine: Machine | None = None) -> bool:
    return (source, dest, trigger) in _legal_edges(machine)


_EDGE_CACHE: set[tuple[str, str, str]] = set()


def _legal_edges(machine: Machine | None) -> set[tuple[str, str, str]]:
    if machine is not None:
        return set(edges(machine))
    if not _EDGE_CACHE:
        _EDGE_CACHE.update(edges(build_machine()))
    return _EDGE_CACHE


def mermaid(machine: Machine | None = None) -> str:
    """A Mermaid stateDiagram generated from the machine definition itself."""
    machine = machine or build_machine()
    lines = ["stateDiagram-v2", f"    [*] --> {machine.initial}"]
    lines += [f"    {src} --> {dst}: {trigger}" for src, dst, trigger in edges(machine)]
    final = [s for s in machine.states if not any(src == s for src, _, _ in edges(machine))]
    lines += [f"    {s} --> [*]" for s in final]
    return "\n".join(lines) + "\n"

"""The transition table: its shape, its one close path, and the Mermaid diagram generated from it."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal

import pytest
from transitions import MachineError

from statemachines.lifecycle import STATES, TRANSITIONS, Trigger, build_machine, edges, is_legal, mermaid
from statemachines.machine import PositionMachine
from statemachines.position import Position

SIX = {"opening", "open", "harvesting", "trailing", "closing", "closed"}


def test_exactly_the_six_states() -> None:
    assert set(STATES) == SIX
    assert set(build_machine().states) == SIX


def test_no_implicit_transitions() -> None:
    """auto_transitions would add a to_<state>() for every state: a back door around the table."""
    triggers = set(build_machine().events)
    assert not any(t.startswith("to_") for t in triggers)


def test_one_close_path() -> None:
    """Into `closed` only from `closing` (our close), `opening` (nothing filled) or an external close."""
    into_closed = {(src, trig) for src, dst, trig in edges(build_machine()) if dst == "closed"}
    ours = {(s, t) for s, t in into_closed if t != "external_close"}
    assert ours == {("closing", "close_filled"), ("opening", "entry_failed")}
    assert {s for s, t in into_closed if t == "external_close"} == SIX - {"closed"}
    into_closing = {src for src, dst, _ in edges(build_machine()) if dst == "closing"}
    assert into_closing == {"open", "harvesting", "trailing", "closing"}


def test_closed_is_terminal_and_everything_can_reach_it() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges(build_machine()):
        graph.setdefault(src, set()).add(dst)
    assert "closed" not in graph
    for state in SIX - {"closed"}:
        seen, todo = set(), [state]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert "closed" in seen, state


def test_mermaid_is_generated_from_the_machine() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2\n")
    arrows = re.findall(r"^\s+(\w+) --> (\w+): (\w+)$", text, re.M)
    assert set(arrows) == set(edges(build_machine()))
    assert len(arrows) == len(edges(build_machine()))
    named = {s for a in arrows for s in a[:2]}
    assert named == SIX
    assert "[*] --> opening" in text and "closed --> [*]" in text


def test_mermaid_follows_a_changed_machine() -> None:
    """Not a hand-written copy: a machine with one more transition yields one more arrow."""
    machine = build_machine()
    machine.add_transition("rewind", "trailing", "open")
    assert "trailing --> open: rewind" in mermaid(machine)
    assert "trailing --> open: rewind" not in mermaid()


def test_cli_prints_the_diagram() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scalper", "fsm", "--mermaid"], capture_output=True, text=True, check=True
    ).stdout
    assert out == mermaid()


def test_is_legal() -> None:
    assert is_legal("open", "closing", "close")
    assert not is_legal("closed", "open", "entry_filled")
    assert not is_legal("open", "closed", "close")


def test_illegal_trigger_raises_and_changes_nothing() -> None:
    pm = PositionMachine()
    pos = Position(id="p1", symbol="BTC-USDT-SWAP", side="short")  # type: ignore[arg-type]
    with pytest.raises(MachineError):
        pm.fire(pos, "close")
    assert (pos.state, pos.version) == ("opening", 0)
    pm.fire(pos, "entry_filled", fields={"entry_price": Decimal("10"), "size": Decimal("3")})
    assert (pos.state, pos.version, pos.entry_px, pos.size) == ("open", 1, 10.0, Decimal("3"))


def test_transition_refuses_to_write_identity_fields() -> None:
    pm = PositionMachine()
    pos = Position(id="p1", symbol="BTC-USDT-SWAP", side="long")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a writable"):
        pm.fire(pos, "entry_filled", fields={"side": "short"})
    assert pos.state == "opening"


def test_loaded_position_resumes_in_its_stored_state() -> None:
    stored = Position(id="p2", symbol="ETH-USDT-SWAP", side="long", state="trailing", version=4)  # type: ignore[arg-type]
    pos = Position.from_hash(stored.to_hash())
    assert pos.state == "trailing"
    with pytest.raises(MachineError):  # harvest is not a move out of trailing
        PositionMachine().fire(pos, Trigger.HARVEST)
    PositionMachine().fire(pos, Trigger.CLOSE)
    assert (pos.state, pos.version) == ("closing", 5)


def test_readme_shows_the_generated_diagram() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", readme, re.S)
    assert block is not None and block.group(1) == mermaid()


def test_a_position_carries_no_trigger_methods() -> None:
    """Only `fire` moves a position: no `pos.close()` that would reach closing without a close order."""
    pm = PositionMachine()
    pos = Position(id="p3", symbol="BTC-USDT-SWAP", side="long")  # type: ignore[arg-type]
    pm.fire(pos, Trigger.ENTRY_FILLED)
    assert pos.state == "open"
    assert not any(hasattr(pos, name) for name in [*Trigger, "trigger", "may_close", "is_open"])
    with pytest.raises(ValueError, match="not a writable"):
        pm.fire(pos, Trigger.CLOSE, fields={"close": "oops"})
    with pytest.raises(ValueError):  # a name that is no trigger of the table
        pm.fire(pos, "shut")  # type: ignore[arg-type]


def test_the_trigger_enum_is_the_table() -> None:
    assert {t["trigger"] for t in TRANSITIONS} == {t.value for t in Trigger}


def test_time_in_state_accumulates_when_a_state_is_reentered() -> None:
    clock = iter([100.0, 110.0, 125.0, 140.0]).__next__
    pm = PositionMachine(clock=clock)
    pos = Position(id="p4", symbol="BTC-USDT-SWAP", side="long", state="closing", state_since=90.0)  # type: ignore[arg-type]
    pm.fire(pos, "retry_close")  # 10 s in closing
    pm.fire(pos, "retry_close")  # +10 s
    pm.fire(pos, "close_filled")  # +15 s
    assert pos.time_in["closing"] == pytest.approx(35.0)


class _Recorder:
    """A store that records every compare-and-set it is asked for."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    def apply_transition(self, pos: Position, **kw: object) -> int:
        self.calls.append({"id": pos.id, "state_before": pos.state, **kw})
        return pos.version + 1


def _outcome(pm: PositionMachine, state: str, trigger: Trigger) -> tuple[object, ...]:
    pos = Position(id="p3", symbol="BTC-USDT-SWAP", side="long", state=state, version=2,  # type: ignore[arg-type]
                   state_since=100.0, time_in={"opening": 1.5})  # fmt: skip
    fields = {"size": Decimal("2"), "entry_price": Decimal("50000.5"), "trail_stop": 49000.25}
    try:
        pm.fire(pos, trigger, reason="why", price=50001.0, fields=fields, intent={"cl_ord_id": "c1"})
        error = None
    except Exception as err:  # the exception itself is what is compared
        error = (type(err), str(err))
    return error, pos.state, type(pos.state), pos.version, pos.to_hash(), pos.entry_px, pm.store.calls  # type: ignore[union-attr]


def test_direct_moves_do_exactly_what_the_library_does() -> None:
    """PositionMachine.fire moves a legal (trigger, state) of the table itself, from the table the library
    parsed; every trigger from every state gives the same result, the same write and the same error as the
    library's own dispatch."""
    clock = iter(range(1000, 100000, 7))
    fast = PositionMachine(_Recorder(), clock=lambda: float(next(clock)), wall=lambda: 5.0)  # type: ignore[arg-type]
    clock2 = iter(range(1000, 100000, 7))
    lib = PositionMachine(_Recorder(), clock=lambda: float(next(clock2)), wall=lambda: 5.0)  # type: ignore[arg-type]
    lib._moves = None  # every move through transitions' Event.trigger
    assert fast._moves is not None and len(fast._moves) == len(edges(build_machine()))
    moved = 0
    for trigger in Trigger:
        for state in STATES:
            a, b = _outcome(fast, state, trigger), _outcome(lib, state, trigger)
            assert a == b, (trigger, state)
            moved += a[0] is None
    assert moved == len(edges(build_machine()))  # every edge was taken, every other pair refused


def test_a_callback_on_the_machine_sends_every_move_through_the_library() -> None:
    """The direct move only stands in for the library while the table has no callback besides the write."""
    from statemachines.machine import _plain_moves

    pm = PositionMachine()
    assert pm._moves is not None
    machine = build_machine(before_state_change=[pm._persist], after_state_change=[lambda _e: None])
    assert _plain_moves(machine, pm._persist) is None
    machine = build_machine(before_state_change=[pm._persist])
    machine.get_state("closing").add_callback("enter", lambda _e: None)
    assert _plain_moves(machine, pm._persist) is None
    machine = build_machine(before_state_change=[pm._persist])
    machine.events["close"].transitions["open"][0].add_callback("after", lambda _e: None)
    assert _plain_moves(machine, pm._persist) is None

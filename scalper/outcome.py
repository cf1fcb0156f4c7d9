"""What the CLI prints after `scalper open` and `scalper close`: the engine's answer, then, within the wait,
what became of the position (filled, failed, closed with its net PnL). Exit codes: 0 done or under way,
1 refused or no answer, 2 rejected (not a valid command). A wait of 0 sends the command and returns at
once."""

from __future__ import annotations

import sys
import time

from statemachines.lifecycle import State
from statemachines.position import Position
from statemachines.store import PositionNotFound, PositionStore
from workers import commands


def _err(text: str) -> None:
    print(f"scalper: {text}", file=sys.stderr)


def _await_state(store: PositionStore, pid: str, leave: str, deadline: float) -> Position | None:
    """The position once it left state `leave`, or as it is at the deadline."""
    pos = None
    while True:
        try:
            pos = store.load(pid)
        except PositionNotFound:
            return None
        if pos.state != leave or time.monotonic() >= deadline:
            return pos
        time.sleep(0.1)


def _net(pos: Position) -> str:
    # Fees are negative when charged (OKX's convention), so the net is their sum.
    return f"net PnL {pos.realized_pnl + pos.fees:f} (gross {pos.realized_pnl:f}, fees {pos.fees:f})"


def report_open(store: PositionStore, cmd_id: str, symbol: str, side: str, wait_s: float) -> int:
    if wait_s <= 0:
        print(f"entry requested: position {cmd_id} {side} {symbol} (the engine applies the risk gates)")
        return 0
    deadline = time.monotonic() + wait_s
    answer = commands.wait_outcome(store.client, store.keys, cmd_id, wait_s)
    if answer is None:
        _err(f"no engine answered within {wait_s:g} s (is `scalper engine` or `scalper run` running, with "
             f"{symbol} in its symbols?). The request stays valid for {commands.REPLAY_S:.0f} s; "
             f"`scalper show {cmd_id}` tells whether it opened")  # fmt: skip
        return 1
    if answer.status == "refused":
        _err(f"entry {symbol} {side} refused by the risk gate {answer.code}: {answer.message}")
        return 1
    if answer.status == "rejected":
        _err(f"entry {symbol} {side} rejected: {answer.message}")
        return 2
    pos = _await_state(store, answer.position_id, State.OPENING, deadline)
    if pos is None:
        print(f"opening: position {answer.position_id} ({answer.message})")
    elif pos.state == State.OPENING:
        print(f"opening: position {pos.id} {side} {pos.entry_size:f} {symbol}, entry order sent "
              f"(not filled after {wait_s:g} s; `scalper show {pos.id}`)")  # fmt: skip
    elif pos.state == State.CLOSED and not pos.opened_at:
        print(f"entry failed: position {pos.id} {side} {symbol}: {pos.exit_reason}")
        return 1
    else:
        print(f"opened: position {pos.id} {side} {pos.size:f} {symbol} at {pos.entry_price:f} "
              f"(state {pos.state})")  # fmt: skip
    return 0


def report_close(store: PositionStore, cmd_id: str, position_id: str, wait_s: float) -> int:
    if wait_s <= 0:
        print(f"close requested: {position_id}")
        return 0
    deadline = time.monotonic() + wait_s
    answer = commands.wait_outcome(store.client, store.keys, cmd_id, wait_s)
    if answer is None:
        _err(f"close of {position_id} requested and kept on the position, but no engine answered within "
             f"{wait_s:g} s: it is applied when the engine of its symbol runs")  # fmt: skip
        return 1
    if answer.status == "rejected":
        _err(f"close of {position_id} rejected: {answer.message}")
        return 2
    pos = _await_state(store, position_id, State.CLOSING, deadline)
    if pos is not None and pos.state == State.CLOSED:
        print(f"closed: position {pos.id} ({pos.exit_reason}), {_net(pos)}")
    else:
        state = pos.state if pos is not None else answer.status
        print(f"closing: position {position_id} ({answer.message}); state {state}")
    return 0

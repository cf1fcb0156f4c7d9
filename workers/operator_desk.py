"""The engine's side of operator commands (workers/commands.py): apply each once, answer each.

An `open` goes through the same entries and risk gates as the strategy's signals and takes its command's id
as its position id; a `close` flags the position and steps it at once, so the answer says `closing` (or why
not). A command for a symbol or position of another shard is left to that shard's engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statemachines.risk import Refusal
from statemachines.store import PositionNotFound
from workers import commands

if TYPE_CHECKING:
    from workers.engine import Engine


class OperatorDesk:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(self, entry_id: str, fields: dict[str, str]) -> None:
        """Apply one control entry if it is this shard's and not applied before; answer it."""
        engine = self.engine
        try:
            cmd = commands.parse_command(fields)
        except commands.BadCommand as err:
            engine.quarantine.put("control", f"bad_command: {err}", fields, ref=entry_id)
            engine.quarantine.flush()  # before its answer: a kill in between must not lose the record
            cmd_id = fields.get("cmd_id", "")
            if commands.valid_id(cmd_id):
                commands.reply(engine.client, engine.keys, cmd_id, commands.Outcome("rejected", str(err)))
            return
        target = engine.book.get(cmd.symbol) if cmd.cmd == "open" else engine.find(cmd.position_id)
        if target is None or commands.applied(engine.client, engine.keys, cmd.cmd_id):
            return  # another shard's, or answered before (this is a replay after a restart)
        outcome = self._open(cmd) if cmd.cmd == "open" else self._close(cmd)
        commands.reply(engine.client, engine.keys, cmd.cmd_id, outcome)

    def _open(self, cmd: commands.Command) -> commands.Outcome:
        engine = self.engine
        pid = cmd.cmd_id  # an open's position id is its command's id: a replay finds it
        try:
            known = engine.store.load(pid)
        except PositionNotFound:
            known = None
        except ValueError:
            return commands.Outcome("rejected", f"position {pid} exists but cannot be read", pid)
        if known is not None:
            return commands.Outcome(known.state, f"position {pid} is {known.state}", pid)
        if engine.entries is None:
            return commands.Outcome("rejected", "this engine takes no entries")
        if engine.symbol_quarantined(cmd.symbol):
            return commands.Outcome("refused", f"{cmd.symbol} has a position that cannot be read",
                                    code="quarantined_position")  # fmt: skip
        assert cmd.side is not None
        result = engine.entries.open(engine, cmd.symbol, cmd.side, "manual entry (scalper open)",
                                     engine.now(), pid)  # fmt: skip
        if isinstance(result, Refusal):
            return commands.Outcome("refused", result.message, code=result.code)
        return commands.Outcome(result.state, f"{result.side.value} {result.entry_size} {result.symbol}", pid)

    def _close(self, cmd: commands.Command) -> commands.Outcome:
        engine = self.engine
        pos = engine.find(cmd.position_id)
        assert pos is not None
        pos.close_request = pos.close_request or cmd.reason
        engine.step_symbol(pos.symbol)  # at once, not on the next tick
        pos = engine.find(cmd.position_id) or pos
        return commands.Outcome(pos.state, pos.exit_reason or f"close requested ({cmd.reason})", pos.id)

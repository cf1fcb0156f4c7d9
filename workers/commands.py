"""Operator commands (`scalper open`, `close`, `panic`), applied exactly once, each with an answer.

A command is an entry of the control stream with an id made by the CLI (12 letters and digits, the shape of a
position id). Every engine reads the stream; the one that owns the command's symbol or position applies it
and writes its outcome under `{prefix}:control:reply:{id}`, which the CLI waits for and prints. The outcome
key doubles as the "applied" mark: an engine that starts again reads the last minute of the stream again
(commands sent while no engine ran still apply) and skips what already has an outcome. An `open` also takes
its command id as its position id, so even with its outcome lost (a Redis that restarted behind) a replayed
`open` finds its position and opens nothing; the entry order's client id comes from the position id, so the
exchange would refuse a second order anyway.

A command that cannot be parsed is quarantined (workers/quarantine.py) and, when its id can be read, answered
`rejected` with the reason: never a crash.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from statemachines.keys import Keys
from statemachines.position import Side, new_position_id

REPLY_TTL_S = 86_400  # an outcome (and the mark that the command was applied) is kept a day
REPLAY_S = 60.0  # an engine starting reads the commands of the last minute again
CONTROL_MAXLEN = 1000

_ID = re.compile(r"[0-9a-z]{12}")
_REASON = re.compile(r"[\w .:,;()+-]{0,64}")


def new_command_id(now: float | None = None) -> str:
    """A command's id: an `open`'s becomes its position's id, so it has a position id's shape."""
    return new_position_id(now)


def valid_id(cmd_id: str) -> bool:
    return bool(_ID.fullmatch(cmd_id))


class BadCommand(ValueError):
    """A control entry that is not a command this version understands; the message names the field."""


@dataclass(frozen=True, slots=True)
class Command:
    cmd: str  # "open" or "close"
    cmd_id: str
    symbol: str = ""  # open
    side: Side | None = None  # open
    position_id: str = ""  # close
    reason: str = ""  # close: recorded as the exit reason (manual, panic, ...)

    def to_fields(self) -> dict[str, str]:
        out = {"cmd": self.cmd, "cmd_id": self.cmd_id, "ts": repr(time.time())}
        if self.cmd == "open":
            out |= {"symbol": self.symbol, "side": self.side.value if self.side else ""}
        else:
            out |= {"position_id": self.position_id, "reason": self.reason}
        return out


def parse_command(fields: dict[str, str]) -> Command:
    cmd_id = fields.get("cmd_id", "")
    if not _ID.fullmatch(cmd_id):
        raise BadCommand(f"cmd_id {cmd_id!r} is not 12 lowercase letters and digits")
    cmd = fields.get("cmd", "")
    if cmd == "open":
        symbol, side = fields.get("symbol", ""), fields.get("side", "")
        if not symbol:
            raise BadCommand("open: no symbol")
        if side not in (Side.LONG.value, Side.SHORT.value):
            raise BadCommand(f"open: side {side!r} is not long or short")
        return Command("open", cmd_id, symbol=symbol, side=Side(side))
    if cmd == "close":
        pid, reason = fields.get("position_id", ""), fields.get("reason", "") or "manual"
        if not _ID.fullmatch(pid):
            raise BadCommand(f"close: position_id {pid!r} is not a position id")
        if not _REASON.fullmatch(reason):
            raise BadCommand("close: reason has characters other than letters, digits and . : , ; ( ) + -")
        return Command("close", cmd_id, position_id=pid, reason=reason)
    raise BadCommand(f"cmd {cmd!r} is not open or close")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a command: `status` is opening (the entry order is on its way), refused (a risk
    gate: `code` is its stable code), closing, closed, rejected (not a valid command) or unknown."""

    status: str
    message: str
    position_id: str = ""
    code: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Outcome:
        data: dict[str, Any] = json.loads(text)
        return cls(**{k: str(data.get(k, "")) for k in ("status", "message", "position_id", "code")})


# --- the engine's side ---


def reply(client: redis.Redis | Any, keys: Keys, cmd_id: str, outcome: Outcome) -> None:
    """Write the outcome once (the first answer stands: a replay cannot overwrite it)."""
    client.set(keys.control_reply(cmd_id), outcome.to_json(), nx=True, ex=REPLY_TTL_S)


def applied(client: redis.Redis, keys: Keys, cmd_id: str) -> bool:
    return bool(client.exists(keys.control_reply(cmd_id)))


# --- the CLI's side ---


def send(client: redis.Redis, keys: Keys, command: Command) -> str:
    client.xadd(keys.control(), command.to_fields(), maxlen=CONTROL_MAXLEN, approximate=True)
    return command.cmd_id


def wait_outcome(client: redis.Redis, keys: Keys, cmd_id: str, timeout_s: float,
                 poll_s: float = 0.05) -> Outcome | None:  # fmt: skip
    """The command's outcome once an engine wrote it, or None after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    key = keys.control_reply(cmd_id)
    while True:
        raw = client.get(key)
        if raw is not None:
            return Outcome.from_json(raw)
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)

"""Order intents: what a transition asks the order workers to do, handed over atomically with it.

A transition into `opening`, `closing` or `harvesting` needs an order; the intent is handed over by the same
Lua script that writes the transition (as an RQ job from the engine, else as an entry in the symbol's outbox
stream for the relay), so a crash can neither lose the order (the transition without its intent) nor invent
one (the intent without its transition). A job may run more than once, so every job is idempotent by its
client order id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from statemachines.position import Position, Side


class IntentAction(StrEnum):
    OPEN = "open"  # market entry
    CLOSE = "close"  # reduce-only market close of the whole position
    HARVEST = "harvest"  # reduce-only partial close of `fraction`
    PROTECT = "protect"  # place the exchange-side catastrophe stop
    UNPROTECT = "unprotect"  # cancel it


_CODE = {
    IntentAction.OPEN: "o",
    IntentAction.CLOSE: "c",
    IntentAction.HARVEST: "h",
    IntentAction.PROTECT: "s",
    IntentAction.UNPROTECT: "s",  # cancels the stop placed under the same id
}


def client_order_id(position_id: str, action: IntentAction, attempt: int) -> str:
    """Deterministic per position, action and attempt; letters and digits only, at most 32 (OKX clOrdId)."""
    cid = f"{position_id}{_CODE[action]}{attempt}"
    if not cid.isalnum() or len(cid) > 32:
        raise ValueError(f"client order id {cid!r} is not 1-32 letters and digits")
    return cid


class ClientOrderId(NamedTuple):
    position_id: str
    action: IntentAction  # PROTECT for a stop's id (UNPROTECT cancels under the same id)
    attempt: int


_ACTION_OF = {"o": IntentAction.OPEN, "c": IntentAction.CLOSE, "h": IntentAction.HARVEST,
              "s": IntentAction.PROTECT}  # fmt: skip
_OURS = re.compile(r"([0-9a-z]{12})([ochs])([0-9]+)")  # a position id (statemachines.position), code, attempt


def parse_client_order_id(cid: str) -> ClientOrderId | None:
    """The inverse of client_order_id: None for an id the bot did not make (a hand-placed order or stop)."""
    m = _OURS.fullmatch(cid)
    return ClientOrderId(m[1], _ACTION_OF[m[2]], int(m[3])) if m else None


def _text(v: object) -> str:
    return format(v, "f") if isinstance(v, Decimal) else str(v)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    action: IntentAction
    position_id: str
    symbol: str
    side: str  # the position's side: long / short
    cl_ord_id: str
    attempt: int = 1
    size: Decimal = Decimal(0)  # contracts for OPEN; 0 = "what the exchange holds" for CLOSE
    fraction: float = 0.0  # for HARVEST
    reason: str = ""
    stop_px: float = 0.0  # for PROTECT

    @property
    def order_side(self) -> str:
        """buy/sell of the order: an entry goes with the position, every other order against it."""
        opening = self.action is IntentAction.OPEN
        return "buy" if (self.side == Side.LONG) == opening else "sell"

    def to_fields(self) -> dict[str, str]:
        # Not dataclasses.asdict: it deep-copies every value, a third of an intent's hand-off to RQ.
        # Nor fields(self) per call, which builds its tuple each time: the names are taken once (below).
        return {name: _text(getattr(self, name)) for name in _INTENT_FIELDS}

    @classmethod
    def from_fields(cls, raw: dict) -> OrderIntent:
        d = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return cls(
            action=IntentAction(d["action"]),
            position_id=d["position_id"],
            symbol=d["symbol"],
            side=d["side"],
            cl_ord_id=d["cl_ord_id"],
            attempt=int(d.get("attempt", 1)),
            size=Decimal(d.get("size", "0")),
            fraction=float(d.get("fraction", 0.0)),
            reason=d.get("reason", ""),
            stop_px=float(d.get("stop_px", 0.0)),
        )


_INTENT_FIELDS = tuple(f.name for f in fields(OrderIntent))


def intent_for(pos: Position, action: IntentAction, attempt: int = 1, **details: object) -> OrderIntent:
    """The intent of `action` for `pos`, with its deterministic client order id."""
    cid = client_order_id(pos.id, action, attempt)
    return OrderIntent(action, pos.id, pos.symbol, pos.side.value, cid, attempt, **details)  # type: ignore[arg-type]


def open_intent(pos: Position, size: Decimal) -> OrderIntent:
    return intent_for(pos, IntentAction.OPEN, max(1, pos.entry_attempt), size=size)


def close_intent(pos: Position, attempt: int, reason: str) -> OrderIntent:
    return intent_for(pos, IntentAction.CLOSE, attempt, reason=reason)


def harvest_intent(pos: Position, attempt: int, fraction: float) -> OrderIntent:
    return intent_for(pos, IntentAction.HARVEST, attempt, fraction=fraction)


def protect_intent(pos: Position, stop_px: float) -> OrderIntent:
    return intent_for(pos, IntentAction.PROTECT, stop_px=stop_px)


def unprotect_intent(pos: Position) -> OrderIntent:
    return intent_for(pos, IntentAction.UNPROTECT)

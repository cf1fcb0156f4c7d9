"""A position's data: what the machine moves and what Redis stores as one hash of plain strings."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from statemachines.lifecycle import STATES, State
from statemachines.redis_text import as_str


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"


_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_position_id(now: float | None = None) -> str:
    """12 lowercase letters/digits: 8 of time (sortable) + 4 random. Short enough that a client order id
    built from it plus an action and an attempt stays within OKX's 32 alphanumerics."""
    n = int((now if now is not None else time.time()) * 1000)
    stamp = ""
    for _ in range(8):
        n, r = divmod(n, 36)
        stamp = _ID_ALPHABET[r] + stamp
    return stamp + "".join(secrets.choice(_ID_ALPHABET) for _ in range(4))


# Fields that are not persisted: derived caches for the hot path.
_TRANSIENT = frozenset({"entry_px", "sign"})


@dataclass(eq=False)
class Position:
    id: str
    symbol: str
    side: Side
    state: str = State.OPENING.value
    version: int = 0  # number of transitions logged in the position's stream
    leverage: int = 1
    entry_size: Decimal = Decimal(0)  # contracts requested
    size: Decimal = Decimal(0)  # contracts held, as the exchange reports them
    entry_price: Decimal = Decimal(0)  # average fill price
    created_at: float = 0.0
    opened_at: float = 0.0
    state_since: float = 0.0  # the engine's clock (market time in a replay)
    wall_since: float = 0.0  # wall clock at the last transition: order timeouts are about the exchange
    stop_price: float = 0.0  # ATR stop loss level, set on entry fill
    trail_stop: float = 0.0  # trailing stop level, 0 until armed
    peak_pnl_pct: float = 0.0  # best net PnL seen, percent
    harvests_done: int = 0
    close_request: str = ""  # operator's manual close (its reason), honoured on the next tick
    exit_reason: str = ""
    entry_attempt: int = 0
    close_attempt: int = 0
    liq_price: float = 0.0  # from the exchange, 0 = unknown
    margin_ratio: float = 0.0  # from the exchange (OKX mgnRatio), 0 = unknown
    realized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    time_in: dict[str, float] = field(default_factory=dict)  # seconds spent per state, on leaving it
    # Derived, for the tick path: never stored, never written by a transition.
    entry_px: float = field(default=0.0, repr=False)  # float mirror of entry_price
    sign: int = field(default=0, init=False, repr=False)  # +1 long, -1 short

    def __post_init__(self) -> None:
        self.side = Side(self.side)
        self.sign = 1 if self.side is Side.LONG else -1
        if self.state not in STATES:
            raise ValueError(f"unknown state {self.state!r}")
        self.entry_px = float(self.entry_price)

    def set_entry(self, price: Decimal, size: Decimal) -> None:
        """The only way to change the entry price, so the float mirror never goes stale."""
        self.entry_price = price
        self.size = size
        self.entry_px = float(price)

    # --- plain-string hash encoding (readable with redis-cli HGETALL) ---

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in fields(self):
            if f.name in _TRANSIENT:
                continue
            value = getattr(self, f.name)
            if f.name == "time_in":
                for state, seconds in value.items():
                    out[f"t_{state}"] = encode_value(seconds)
            else:
                out[f.name] = encode_value(value)
        return out

    @classmethod
    def from_hash(cls, raw: dict[Any, Any]) -> Position:
        data = {as_str(k): as_str(v) for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        time_in: dict[str, float] = {}
        for name, text in data.items():
            if name.startswith("t_") and name[2:] in STATES:
                time_in[name[2:]] = float(text)
            elif name in _PARSERS:
                kwargs[name] = _PARSERS[name](text)
        missing = {"id", "symbol", "side"} - kwargs.keys()
        if missing:
            raise ValueError(f"position hash lacks {sorted(missing)}")
        return cls(**kwargs, time_in=time_in)


def encode_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


_PARSERS: dict[str, Any] = {}
for _f in fields(Position):
    if _f.name in _TRANSIENT or _f.name == "time_in":
        continue
    _PARSERS[_f.name] = {"int": int, "float": float, "Decimal": Decimal}.get(str(_f.type), str)

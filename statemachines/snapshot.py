"""What the guards see and what they answer: a market snapshot in, a decision out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(slots=True)
class MarketSnapshot:
    """One symbol's latest view, shared by every position of that symbol on a tick."""

    symbol: str
    price: float
    price_ts: float  # when the exchange produced the price (seconds)
    now: float  # the engine's clock at evaluation
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    atr: float | None = None
    panic: bool = False  # operator's "close everything"

    @property
    def age(self) -> float:
        return self.now - self.price_ts


class Action(StrEnum):
    HOLD = "hold"
    CLOSE = "close"
    ARM_TRAILING = "arm_trailing"
    HARVEST = "harvest"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    fraction: float = 0.0  # share of the position to close, for HARVEST

    def __bool__(self) -> bool:
        return self.action is not Action.HOLD


HOLD = Decision(Action.HOLD)


class Signal(StrEnum):
    """The smart filter's answer for one position on one tick."""

    NONE = "none"
    CLOSE = "close"
    BLOCK = "block"


# Exit reasons, as stored in the position's hash and log.
MANUAL = "manual"
PANIC = "panic"
MARGIN_RATIO = "margin_ratio"
LIQUIDATION_DISTANCE = "liquidation_distance"
STALE_PRICE = "stale_price_emergency"
STOP_LOSS = "stop_loss"
TRAILING_STOP = "trailing_stop"
MAX_HOLD = "max_hold_time"
SMART_EXIT = "smart_exit"
STRATEGY_EXIT = "strategy_exit"  # the strategy's exit hint (statemachines/strategy.py)
TAKE_PROFIT = "take_profit"
TAKE_PROFIT_BLOCKED = "take_profit_blocked"
DRAWDOWN = "profit_drawdown"
HARVEST = "profit_harvest"
TRAILING_ACTIVATED = "trailing_activated"

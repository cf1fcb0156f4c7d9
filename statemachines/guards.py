"""The exit guards: small pure functions, one rule each.

Sign convention: `sign` is +1 for a long and -1 for a short, so "in the position's favour" is
`sign * move > 0` and one formula serves both sides (the old bot's short trailing stop could never lock
profit). Percent arguments are percent of price, as in the settings.
"""

from __future__ import annotations

from config.settings import ExitSettings, RiskSettings, SmartExitSettings
from statemachines.position import Position
from statemachines.snapshot import (
    LIQUIDATION_DISTANCE,
    MANUAL,
    MARGIN_RATIO,
    PANIC,
    Action,
    Decision,
    MarketSnapshot,
    Signal,
)

# Percent thresholds are compared with this tolerance: 1.1% gross less 0.1% fees must reach a 1.0% take
# profit, though in binary floating point it comes out 0.99999999999999.
EPS_PCT = 1e-9

# --- prices and PnL ---


def net_pnl_pct(sign: int, entry: float, price: float, fee_pct: float) -> float:
    """PnL in percent of entry, net of the estimated round-trip fee (a fee per side, paid twice)."""
    return sign * (price - entry) / entry * 100.0 - 2.0 * fee_pct


def breakeven_price(sign: int, entry: float, fee_pct: float) -> float:
    """The price at which closing pays back both fees."""
    return entry * (1.0 + sign * 2.0 * fee_pct / 100.0)


def better(sign: int, a: float, b: float) -> float:
    """The stop level more in the position's favour (higher for a long, lower for a short)."""
    return a if sign * (a - b) >= 0 else b


def initial_stop(sign: int, entry: float, atr: float | None, exits: ExitSettings) -> float:
    """ATR-based stop loss, its distance clamped to [min, max] percent; the max when ATR is unknown."""
    if atr and atr > 0:
        dist = min(
            max(exits.stop_loss_atr_mult * atr / entry * 100.0, exits.stop_loss_min_pct),
            exits.stop_loss_max_pct,
        )
    else:
        dist = exits.stop_loss_max_pct
    return entry * (1.0 - sign * dist / 100.0)


def ratchet(sign: int, current: float, price: float, distance_pct: float, floor: float = 0.0) -> float:
    """The trailing stop after seeing `price`: `distance_pct` behind it, never below `floor` (if set),
    and never moved against the position (0 = not armed yet)."""
    level = price * (1.0 - sign * distance_pct / 100.0)
    if floor:
        level = better(sign, level, floor)
    return better(sign, current, level) if current else level


def crossed(sign: int, price: float, stop: float) -> bool:
    """Has the price reached a stop level (a long's from above, a short's from below)?"""
    return stop > 0 and sign * (price - stop) <= 0


# --- the guards, in precedence order ---

# The signals as module globals: an Enum class's attribute is read through EnumType.__getattr__, four times
# a global's cost, and smart_signal answers on every position-tick.
_NONE, _CLOSE, _BLOCK = Signal.NONE, Signal.CLOSE, Signal.BLOCK


def manual_close(pos: Position, mkt: MarketSnapshot) -> Decision | None:
    if pos.close_request:  # the operator's `close`, or `panic` (which asks each position to close)
        return Decision(Action.CLOSE, PANIC if pos.close_request == PANIC else MANUAL)
    if mkt.panic:
        return Decision(Action.CLOSE, PANIC)
    return None


def risk_exit(pos: Position, price: float, risk: RiskSettings) -> Decision | None:
    """Margin ratio or liquidation distance beyond limits (values from the exchange; 0 = unknown)."""
    if pos.margin_ratio and pos.margin_ratio <= risk.min_margin_ratio:
        return Decision(Action.CLOSE, MARGIN_RATIO)
    if (
        pos.liq_price
        and pos.sign * (price - pos.liq_price) / price * 100.0 <= risk.min_liq_distance_pct + EPS_PCT
    ):
        return Decision(Action.CLOSE, LIQUIDATION_DISTANCE)
    return None


def stale_emergency(age: float, risk: RiskSettings) -> bool:
    """No fresh price for so long that holding blind is the bigger risk."""
    return bool(risk.stale_emergency_s) and age >= risk.stale_emergency_s


def stop_loss_hit(pos: Position, price: float) -> bool:
    return crossed(pos.sign, price, pos.stop_price)


def trailing_hit(pos: Position, price: float) -> bool:
    return crossed(pos.sign, price, pos.trail_stop)


def max_hold_exceeded(pos: Position, now: float, exits: ExitSettings) -> bool:
    return bool(exits.max_hold_s) and pos.opened_at > 0 and now - pos.opened_at >= exits.max_hold_s


def smart_signal(sign: int, mkt: MarketSnapshot, cfg: SmartExitSettings) -> Signal:
    """The seed's smart filter, read in order: RSI extreme → CLOSE; RSI on the wrong side of the middle
    → BLOCK; otherwise MACD against the position → CLOSE, MACD with it → BLOCK."""
    rsi = mkt.rsi
    if not cfg.enabled or rsi is None:
        return _NONE
    if sign > 0:
        if rsi > cfg.rsi_overbought:
            return _CLOSE
        if rsi < cfg.rsi_mid:
            return _BLOCK
    else:
        if rsi < cfg.rsi_oversold:
            return _CLOSE
        if rsi > cfg.rsi_mid:
            return _BLOCK
    macd, signal = mkt.macd, mkt.macd_signal
    if macd is None or signal is None:
        return _NONE
    diff = sign * (macd - signal)
    if diff < 0:
        return _CLOSE
    if diff > 0:
        return _BLOCK
    return _NONE


def smart_close_allowed(pnl_pct: float, held_s: float, cfg: SmartExitSettings) -> bool:
    """A smart CLOSE acts only on a position in net profit above the minimum, held long enough."""
    return pnl_pct >= cfg.min_profit_pct - EPS_PCT and held_s >= cfg.min_hold_s


def take_profit_reached(pnl_pct: float, exits: ExitSettings) -> bool:
    return bool(exits.take_profit_pct) and pnl_pct >= exits.take_profit_pct - EPS_PCT


def drawdown_hit(peak_pct: float, pnl_pct: float, exits: ExitSettings) -> bool:
    """Giveback from the peak: once the peak net profit reached the activation level, close when a
    `drawdown_giveback` share of it has been given back."""
    return (
        bool(exits.drawdown_activation_pct)
        and peak_pct >= exits.drawdown_activation_pct - EPS_PCT
        and pnl_pct <= peak_pct * (1.0 - exits.drawdown_giveback) + EPS_PCT
    )


def harvest_due(pos: Position, pnl_pct: float, exits: ExitSettings) -> bool:
    """At most `max_harvests` harvests per position: the counter is written with the transition, so a
    harvest can never fire every tick (the old bot's 9.35 → 1.87 contracts in 8 minutes)."""
    return (
        bool(exits.harvest_pct)
        and pos.harvests_done < exits.max_harvests
        and pnl_pct >= exits.harvest_pct - EPS_PCT
    )


def trailing_due(pnl_pct: float, exits: ExitSettings) -> bool:
    return bool(exits.trailing_activation_pct) and pnl_pct >= exits.trailing_activation_pct - EPS_PCT

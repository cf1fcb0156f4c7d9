"""Exit evaluation: the guards of guards.py applied in docs/design.md's precedence, per lifecycle state.

Precedence, highest first: 1 manual/panic, 2 risk (margin, liquidation distance, stale-price emergency),
3 stop loss, 4 trailing-stop hit, 5 max holding time, 6 the strategy's exit hint, 7 smart-exit close,
8 take profit, 9 profit drawdown, 10 profit harvesting. 1-5 are the protective exits: the strategy is not
even asked before they have passed, so no hint can hold one back. A BLOCK, the smart filter's or the
strategy's, holds back only 8-10; a blocked take profit arms the trailing stop instead. Nothing but 1 and
the stale emergency is decided on a price older than `max_price_age_s`.
"""

from __future__ import annotations

from config.settings import SymbolConfig
from statemachines import guards
from statemachines.lifecycle import State
from statemachines.position import Position
from statemachines.snapshot import (
    DRAWDOWN,
    HARVEST,
    HOLD,
    MAX_HOLD,
    SMART_EXIT,
    STALE_PRICE,
    STOP_LOSS,
    STRATEGY_EXIT,
    TAKE_PROFIT,
    TAKE_PROFIT_BLOCKED,
    TRAILING_ACTIVATED,
    TRAILING_STOP,
    Action,
    Decision,
    MarketSnapshot,
    Signal,
)
from statemachines.strategy import ExitHints

_OPEN, _HARVESTING, _TRAILING = State.OPEN.value, State.HARVESTING.value, State.TRAILING.value
_GUARDED = frozenset({_OPEN, _HARVESTING, _TRAILING})

HOLD_STALE = Decision(Action.HOLD, "stale_price")
_CLOSE = {
    r: Decision(Action.CLOSE, r)
    for r in (
        STALE_PRICE, STOP_LOSS, TRAILING_STOP, MAX_HOLD, STRATEGY_EXIT, SMART_EXIT, TAKE_PROFIT, DRAWDOWN
    )
}
_ARM_BLOCKED_TP = Decision(Action.ARM_TRAILING, TAKE_PROFIT_BLOCKED)
_ARM = Decision(Action.ARM_TRAILING, TRAILING_ACTIVATED)
# Module globals, not Signal.X: an Enum class's attribute is read through EnumType.__getattr__ (four times a
# global's cost), and these are compared on every position-tick.
_CLOSE_SIGNAL, _BLOCK = Signal.CLOSE, Signal.BLOCK


def evaluate(
    pos: Position, mkt: MarketSnapshot, cfg: SymbolConfig, hints: ExitHints | None = None
) -> Decision:
    """The one decision for `pos` on this tick. Pure: reads the position and snapshot, changes nothing
    (`hints`, the strategy's exit hints, is asked only once the protective exits have passed)."""
    state = pos.state
    if state not in _GUARDED:
        return HOLD  # opening / closing / closed: an order is in flight or it is over
    manual = guards.manual_close(pos, mkt)
    if manual:
        return manual
    risk = cfg.risk
    age = mkt.now - mkt.price_ts
    if age > risk.max_price_age_s:
        return _CLOSE[STALE_PRICE] if guards.stale_emergency(age, risk) else HOLD_STALE
    price = mkt.price
    risky = guards.risk_exit(pos, price, risk)
    if risky:
        return risky
    if guards.stop_loss_hit(pos, price):
        return _CLOSE[STOP_LOSS]
    if state == _TRAILING and guards.trailing_hit(pos, price):
        return _CLOSE[TRAILING_STOP]
    exits = cfg.exits
    if guards.max_hold_exceeded(pos, mkt.now, exits):
        return _CLOSE[MAX_HOLD]
    if state == _HARVESTING:
        return HOLD  # only protective exits while the partial close is in flight

    hint = hints.exit_hint(pos, mkt) if hints is not None else None
    if hint is _CLOSE_SIGNAL:
        return _CLOSE[STRATEGY_EXIT]
    sign = pos.sign
    pnl = guards.net_pnl_pct(sign, pos.entry_px, price, exits.fee_pct)
    signal = guards.smart_signal(sign, mkt, cfg.smart_exit)
    if signal is _CLOSE_SIGNAL and guards.smart_close_allowed(pnl, mkt.now - pos.opened_at, cfg.smart_exit):
        return _CLOSE[SMART_EXIT]
    blocked = signal is _BLOCK or hint is _BLOCK
    if state == _OPEN and guards.take_profit_reached(pnl, exits):
        return _ARM_BLOCKED_TP if blocked else _CLOSE[TAKE_PROFIT]
    if not blocked and guards.drawdown_hit(max(pos.peak_pnl_pct, pnl), pnl, exits):
        return _CLOSE[DRAWDOWN]
    if state == _OPEN:
        if not blocked and guards.harvest_due(pos, pnl, exits):
            return Decision(Action.HARVEST, HARVEST, exits.harvest_fraction)
        if guards.trailing_due(pnl, exits):
            return _ARM
    return HOLD


def mark(pos: Position, mkt: MarketSnapshot, cfg: SymbolConfig) -> bool:
    """Mark-to-market in memory: raise the peak net profit and ratchet an armed trailing stop.
    Returns whether anything changed (the caller persists marks coalesced, not every tick)."""
    if pos.state not in _GUARDED or mkt.now - mkt.price_ts > cfg.risk.max_price_age_s:
        return False
    exits = cfg.exits
    sign = pos.sign
    changed = False
    pnl = guards.net_pnl_pct(sign, pos.entry_px, mkt.price, exits.fee_pct)
    if pnl > pos.peak_pnl_pct:
        pos.peak_pnl_pct = pnl
        changed = True
    if pos.state == _TRAILING:
        level = guards.ratchet(sign, pos.trail_stop, mkt.price, exits.trailing_distance_pct)
        if level != pos.trail_stop:
            pos.trail_stop = level
            changed = True
    return changed


def armed_trail_stop(pos: Position, price: float, cfg: SymbolConfig, *, at_least_breakeven: bool) -> float:
    """The trailing stop when trailing is armed: the distance behind `price`, and never worse than
    breakeven plus fees when required (always after a harvest; by setting otherwise)."""
    exits = cfg.exits
    floor = guards.breakeven_price(pos.sign, pos.entry_px, exits.fee_pct) if at_least_breakeven else 0.0
    return guards.ratchet(pos.sign, pos.trail_stop, price, exits.trailing_distance_pct, floor)

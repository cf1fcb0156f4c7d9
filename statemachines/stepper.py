"""Stepping positions: a tick's decision, or an exchange event, turned into a persisted transition.

This is the hot path's last step: `step` costs a mark-to-market and a guard evaluation on every tick and
touches the store only when the decision changes the state.
"""

from __future__ import annotations

from decimal import Decimal

from config.settings import SymbolConfig
from statemachines import guards
from statemachines.exits import armed_trail_stop, evaluate, mark
from statemachines.intents import close_intent, harvest_intent, protect_intent, unprotect_intent
from statemachines.lifecycle import Trigger
from statemachines.machine import PositionMachine
from statemachines.position import Position
from statemachines.snapshot import Action, Decision, MarketSnapshot
from statemachines.strategy import ExitHints

_HOLD = Action.HOLD  # a global: an Enum class's attribute is read through EnumType.__getattr__, per tick


def step(
    pm: PositionMachine, pos: Position, mkt: MarketSnapshot, cfg: SymbolConfig, hints: ExitHints | None = None
) -> Decision:
    """Mark `pos` to `mkt`, evaluate the exit guards (with the strategy's hints, if it gives any) and fire
    the transition they call for."""
    mark(pos, mkt, cfg)
    decision = evaluate(pos, mkt, cfg, hints)
    if decision.action is _HOLD:
        return decision
    apply(pm, pos, decision, mkt, cfg)
    return decision


def apply(
    pm: PositionMachine, pos: Position, decision: Decision, mkt: MarketSnapshot, cfg: SymbolConfig
) -> None:
    price = mkt.price
    if decision.action is Action.CLOSE:
        attempt = pos.close_attempt + 1
        pm.fire(
            pos,
            Trigger.CLOSE,
            reason=decision.reason,
            price=price,
            fields={"exit_reason": decision.reason, "close_attempt": attempt},
            intent=close_intent(pos, attempt, decision.reason).to_fields(),
        )
    elif decision.action is Action.ARM_TRAILING:
        level = armed_trail_stop(pos, price, cfg, at_least_breakeven=cfg.exits.trailing_breakeven)
        pm.fire(pos, Trigger.ARM_TRAILING, reason=decision.reason, price=price, fields={"trail_stop": level})
    elif decision.action is Action.HARVEST:
        # The counter is written with the transition: a crash cannot make the harvest fire twice.
        pm.fire(
            pos,
            Trigger.HARVEST,
            reason=decision.reason,
            price=price,
            fields={"harvests_done": pos.harvests_done + 1},
            intent=harvest_intent(pos, pos.harvests_done + 1, decision.fraction).to_fields(),
        )


# --- exchange events ---


def entry_filled(
    pm: PositionMachine,
    pos: Position,
    *,
    price: Decimal,
    size: Decimal,
    atr: float | None,
    cfg: SymbolConfig,
    now: float,
    fee: Decimal = Decimal(0),
) -> None:
    """The entry filled (a partial fill arrives here with the filled size once the rest is cancelled):
    the position opens with its ATR stop loss fixed at the fill."""
    stop = guards.initial_stop(pos.sign, float(price), atr, cfg.exits)
    # The exchange-side catastrophe stop, so that a dead bot never leaves a naked position.
    pm.fire(
        pos,
        Trigger.ENTRY_FILLED,
        reason="fill",
        price=float(price),
        fields={"entry_price": price, "size": size, "opened_at": now, "stop_price": stop, "fees": fee},
        intent=protect_intent(pos, catastrophe_stop(pos, float(price), cfg)).to_fields(),
    )


def catastrophe_stop(pos: Position, entry_price: float, cfg: SymbolConfig) -> float:
    """The exchange-side protective stop's trigger: `risk.protective_stop_pct` from the entry."""
    return entry_price * (1.0 - pos.sign * cfg.risk.protective_stop_pct / 100.0)


def harvest_filled(
    pm: PositionMachine,
    pos: Position,
    *,
    remaining: Decimal,
    price: Decimal,
    cfg: SymbolConfig,
    realized_pnl: Decimal | None = None,
    fees: Decimal | None = None,
) -> None:
    """The partial close filled: the rest trails, its stop at least at breakeven plus fees. The protect job
    runs again: it sizes the exchange-side stop to what is left (or places it, if it never was)."""
    level = armed_trail_stop(pos, float(price), cfg, at_least_breakeven=True)
    pm.fire(
        pos,
        Trigger.HARVEST_FILLED,
        reason="fill",
        price=float(price),
        fields={"size": remaining, "trail_stop": level}
        | ({} if realized_pnl is None else {"realized_pnl": realized_pnl})
        | ({} if fees is None else {"fees": fees}),
        intent=protect_intent(pos, catastrophe_stop(pos, float(pos.entry_price), cfg)).to_fields(),
    )


def harvest_failed(pm: PositionMachine, pos: Position, *, reason: str) -> None:
    pm.fire(pos, Trigger.HARVEST_FAILED, reason=reason)


def retry_close(
    pm: PositionMachine,
    pos: Position,
    *,
    reason: str,
    realized_pnl: Decimal | None = None,
    fees: Decimal | None = None,
) -> None:
    """The close order is gone but the position is not: send the next attempt (a new client order id).
    What the previous attempt filled before it was cancelled is kept in the realized PnL and fees."""
    attempt = pos.close_attempt + 1
    fields: dict[str, object] = {"close_attempt": attempt}
    if realized_pnl is not None:
        fields["realized_pnl"] = realized_pnl
    if fees is not None:
        fields["fees"] = fees
    pm.fire(
        pos,
        Trigger.RETRY_CLOSE,
        reason=reason,
        fields=fields,
        intent=close_intent(pos, attempt, pos.exit_reason or reason).to_fields(),
    )


def settle_closed(
    pm: PositionMachine,
    pos: Position,
    *,
    trigger: Trigger,
    reason: str,
    price: float = 0.0,
    realized_pnl: Decimal | None = None,
    fees: Decimal | None = None,
) -> None:
    """close_filled / external_close / entry_failed: the position is over; its protective stop (if one
    was placed) is cancelled."""
    fields: dict[str, object] = {"size": Decimal(0)}
    if trigger != "close_filled" or not pos.exit_reason:
        fields["exit_reason"] = reason
    if realized_pnl is not None:
        fields["realized_pnl"] = realized_pnl
    if fees is not None:
        fields["fees"] = fees
    intent = None if trigger == "entry_failed" else unprotect_intent(pos).to_fields()
    pm.fire(pos, trigger, reason=reason, price=price, fields=fields, intent=intent)


def resync_size(
    pm: PositionMachine, pos: Position, *, size: Decimal, reason: str, cfg: SymbolConfig
) -> None:
    """Adopt the exchange's size, logged in the position's stream with the reason; the protective stop is
    sized to it (the protect job again)."""
    intent = protect_intent(pos, catastrophe_stop(pos, float(pos.entry_price), cfg)).to_fields()
    pm.fire(pos, Trigger.RESYNC, reason=reason, fields={"size": size}, intent=intent)

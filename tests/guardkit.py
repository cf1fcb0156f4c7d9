"""Builders for guard tests: positions, snapshots and per-symbol settings with exact-arithmetic defaults.

Fees default to 0 here so that threshold boundaries fall on exactly representable prices (entry 100, a
1% move is price 101.0); tests about fees set them explicitly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from config.settings import ExitSettings, RiskSettings, SmartExitSettings, SymbolConfig
from statemachines.position import Position
from statemachines.snapshot import MarketSnapshot

SYMBOL = "BTC-USDT-SWAP"
NOW = 1_700_000_000.0
OPENED_AT = NOW - 1_000.0

EXITS: dict[str, Any] = {
    "fee_pct": 0.0,
    "stop_loss_atr_mult": 2.0,
    "stop_loss_min_pct": 0.5,
    "stop_loss_max_pct": 3.0,
    "take_profit_pct": 1.0,
    "trailing_activation_pct": 0.8,
    "trailing_distance_pct": 0.5,
    "harvest_pct": 0.6,
    "harvest_fraction": 0.5,
    "max_harvests": 1,
    "drawdown_activation_pct": 0.4,
    "drawdown_giveback": 0.5,
    "max_hold_s": 3_600,
}
SMART: dict[str, Any] = {"enabled": True, "min_profit_pct": 0.2, "min_hold_s": 60}
RISK: dict[str, Any] = {
    "max_price_age_s": 5.0,
    "stale_emergency_s": 60.0,
    "min_margin_ratio": 1.5,
    "min_liq_distance_pct": 1.0,
}


def config(
    exits: dict[str, Any] | None = None,
    smart: dict[str, Any] | None = None,
    risk: dict[str, Any] | None = None,
) -> SymbolConfig:
    return SymbolConfig(
        symbol=SYMBOL,
        exits=ExitSettings(**{**EXITS, **(exits or {})}),
        smart_exit=SmartExitSettings(**{**SMART, **(smart or {})}),
        risk=RiskSettings(**{**RISK, **(risk or {})}),
    )


def position(side: str = "long", state: str = "open", entry: str = "100", **fields: Any) -> Position:
    fields.setdefault("opened_at", OPENED_AT)
    fields.setdefault("size", Decimal("1"))
    return Position(id="t1", symbol=SYMBOL, side=side, state=state, entry_price=Decimal(entry), **fields)  # type: ignore[arg-type]


def market(
    price: float,
    *,
    now: float = NOW,
    age: float = 0.0,
    rsi: float | None = None,
    macd: float | None = None,
    signal: float | None = None,
    panic: bool = False,
    atr: float | None = None,
) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=SYMBOL,
        price=price,
        price_ts=now - age,
        now=now,
        rsi=rsi,
        macd=macd,
        macd_signal=signal,
        atr=atr,
        panic=panic,
    )

"""Strategies written outside the package, as a user would: the tests load them through
`engine.strategy` alone (tests/test_strategy_plugins.py), from PYTHONPATH or as a file.

`EveryNthCandle` has a rule no built-in strategy has, so its trades are recognisable: one entry on the
side `side`, on the first tick of every candle whose count is a multiple of `every`, and an exit hint that
closes after `hold_candles` candles (exit reason `strategy_exit`).

`RaisesAfter` enters like it, then raises in its own code from the `fail_at`-th call on: the engine must
quarantine it and leave the open position to its exits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from indicators.symbol import SymbolIndicators
from statemachines.position import Position, Side
from statemachines.snapshot import Signal
from statemachines.strategy import EntrySignal


class EveryParams(BaseModel):
    every: int = Field(5, ge=1)
    side: Literal["long", "short"] = "short"
    hold_candles: int = Field(2, ge=1)


class EveryNthCandle:
    Params = EveryParams

    def __init__(self, params: EveryParams) -> None:
        self.p = params
        self.seen: dict[str, int] = {}  # symbol -> the candle count of the last tick

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> EntrySignal | None:
        candle, last = ind.candles, self.seen.get(symbol)
        self.seen[symbol] = candle
        if ind.atr is None or last is None or candle == last or candle % self.p.every:
            return None  # only the first tick of a new candle whose count is a multiple of `every`
        return EntrySignal(symbol, Side(self.p.side), f"candle {candle}: every {self.p.every}")

    def exit_hint(self, pos: Position, ind: SymbolIndicators, now: float) -> Signal | None:
        # Held long enough by the latest tick's time in `ind`: it must be the engine's current indicators.
        held = (ind.price_ts or 0.0) - pos.opened_at
        return Signal.CLOSE if held >= self.p.hold_candles * 60 else None


class RaisesParams(BaseModel):
    fail_at: int = Field(ge=1)  # the first on_tick call that raises


class RaisesAfter:
    Params = RaisesParams

    def __init__(self, params: RaisesParams) -> None:
        self.p = params
        self.calls = 0

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> EntrySignal | None:
        self.calls += 1
        if self.calls >= self.p.fail_at:
            raise ZeroDivisionError("the strategy's own bug")
        if ind.atr is None:
            return None
        return EntrySignal(symbol, Side.LONG, "enters whenever it can")

    def exit_hint(self, pos: Position, ind: SymbolIndicators, now: float) -> Signal | None:
        return None

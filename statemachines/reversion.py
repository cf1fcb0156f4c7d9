"""A second strategy, shipped as an example beside the default: RSI mean reversion with an exit hint.

Choose it with `SCALPER_ENGINE__STRATEGY=statemachines.reversion:RsiReversionStrategy`; its parameters are
the `strategy` section (SCALPER_STRATEGY__OVERSOLD=25, or `--set strategy.oversold=25` in a backtest).
docs/strategies.md walks through it.

Where the default rides momentum, this one bets on the snap-back after an extreme, on the live 1-minute
RSI (the forming candle's close being the latest tick):

- LONG when RSI climbs back above `oversold` (30) after being at or below it: the selling is exhausted.
- SHORT, mirrored: RSI falls back below `overbought` (70) after being at or above it.
- At most one signal per symbol per candle, nothing until the indicators are warm, and the first warm tick
  only records where RSI is.
- Exit hint: close once RSI has come back to `exit_rsi` (50), the mean it bet on (a long when RSI ≥ 50, a
  short when RSI ≤ 50). Until then the built-in exits stand as they are: the stop loss, the trailing stop,
  the take profit and the rest, and the protective ones always come before the hint.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from indicators.symbol import SymbolIndicators
from statemachines.position import Position, Side
from statemachines.snapshot import Signal
from statemachines.strategy import EntrySignal


class ReversionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    oversold: float = Field(30, gt=0, lt=100)  # a long needs RSI back above this, from at or below it
    overbought: float = Field(70, gt=0, lt=100)  # a short needs RSI back below this, from at or above it
    exit_rsi: float = Field(50, gt=0, lt=100)  # the hint closes once RSI has come back here

    @model_validator(mode="after")
    def _ordered(self) -> ReversionParams:
        if not self.oversold < self.exit_rsi < self.overbought:
            raise ValueError("need oversold < exit_rsi < overbought")
        return self


class RsiReversionStrategy:
    """RSI mean reversion; see the module docstring for the rules."""

    Params = ReversionParams

    def __init__(self, params: ReversionParams | None = None) -> None:
        self.p = params or ReversionParams()
        self._last_rsi: dict[str, float] = {}
        self._last_signal_candle: dict[str, int] = {}

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> EntrySignal | None:
        rsi = ind.rsi
        if rsi is None or ind.atr is None:  # not warm yet (the stop loss needs the ATR)
            return None
        prev = self._last_rsi.get(symbol)
        self._last_rsi[symbol] = rsi
        if prev is None:
            return None
        p = self.p
        if prev <= p.oversold < rsi:
            side = Side.LONG
        elif prev >= p.overbought > rsi:
            side = Side.SHORT
        else:
            return None
        if self._last_signal_candle.get(symbol) == ind.candles:
            return None
        self._last_signal_candle[symbol] = ind.candles
        word = "above oversold" if side is Side.LONG else "below overbought"
        return EntrySignal(symbol, side, f"rsi {prev:.1f} -> {rsi:.1f}: back {word}")

    def exit_hint(self, pos: Position, ind: SymbolIndicators, now: float) -> Signal | None:
        rsi = ind.rsi
        if rsi is None:
            return None
        if pos.sign * (rsi - self.p.exit_rsi) >= 0:  # back at the mean, from the side it entered
            return Signal.CLOSE
        return None

"""Entry strategies: no I/O, a function of the live indicators they are shown: "enter now, which side?".

A strategy only proposes: every signal then goes through the risk gates (statemachines/risk.py), which
decide whether an order is sent and how large it is.

The interface (docs/strategies.md walks through writing one), chosen by `engine.strategy =
package.module:Class` and loaded by workers/strategies.py, the same way live, paper and in a backtest:

- `on_tick(symbol, ind, now) -> EntrySignal | None`, required: called on every accepted tick of `symbol`
  after its indicators were updated and its positions stepped; O(1), no I/O.
- `exit_hint(pos, ind, now) -> Signal | None`, optional: asked for each open position of the strategy's
  symbols when the exit guards reach it (statemachines/exits.py). Its place in the precedence is after
  every protective exit (operator close, panic, risk, stale price, stop loss, trailing stop, max holding
  time): a hint can never hold those back. `Signal.CLOSE` closes now (exit reason `strategy_exit`);
  `Signal.BLOCK` holds back take profit, profit drawdown and harvesting, as the smart filter's BLOCK does;
  None (or `Signal.NONE`) leaves the position to the other guards. A hint adds to the smart filter, it
  does not replace it (`SCALPER_SMART_EXIT__ENABLED=false` switches that off).
- `Params`, optional: a pydantic model of the strategy's parameters, read from the `strategy` settings
  section (SCALPER_STRATEGY__<NAME>, `--set strategy.<name>=...`) and validated at start-up. A class with
  `Params` is constructed as `Class(params)`, one without as `Class()`; a class that needs the settings too
  (as the default does, for the smart-exit thresholds) defines `from_settings(settings, params)`.

A strategy that raises is quarantined on that symbol (workers/strategies.py): it proposes nothing more
there and gives no more hints, and its positions keep every other exit.

The default `ScalpingStrategy` is MACD momentum with an RSI filter and a trend filter, on the live values
of 1-minute RSI(14) and MACD(12,26,9) (the forming candle's close being the latest tick):

- LONG when the MACD line crosses ABOVE its signal line, while the MACD line is above zero (the fast EMA
  above the slow one: the short-term trend is up) and RSI is strictly between `rsi_mid` (50) and
  `rsi_overbought` (70).
- SHORT, mirrored: the MACD line crosses BELOW its signal line, while the MACD line is below zero and RSI
  is strictly between `rsi_oversold` (30) and `rsi_mid` (50).
- A cross is a change of side of MACD − signal with a dead band: the MACD line is "above" once
  MACD − signal > `cross_band_atr` × ATR (default 0.05 × the 1-minute ATR), "below" once it is
  < −band, and in between it keeps its previous side. Live values jitter with every tick of the forming
  candle; without the band, 1-minute BTC data gives ~3× the signals, a third of them repeats one or
  two candles apart. Only the tick of the cross can signal: a cross rejected by a filter is used up, and
  the strategy does not enter later in the middle of a move.
- Nothing until the indicators are warm; the first side seen after that is only recorded.
- At most one signal per symbol per candle: live MACD values can cross back and forth within a minute.

Why these rules fit the exits: the RSI bounds are the smart-exit thresholds (per symbol, from
`smart_exit`), so a new long is never in the smart filter's CLOSE zone (RSI > 70, or MACD below signal)
and a new short never in its mirror (RSI < 30, or MACD above signal). At entry the filter reads BLOCK,
letting the position run until momentum fades.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from config.settings import Settings, SmartExitSettings
from indicators.symbol import SymbolIndicators
from statemachines.position import Position, Side
from statemachines.snapshot import MarketSnapshot, Signal


@dataclass(frozen=True, slots=True)
class EntrySignal:
    symbol: str
    side: Side
    reason: str  # for the position's log: what fired, with the values


class Strategy(Protocol):
    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> EntrySignal | None:
        """Called on every tick of `symbol` after its indicators were updated; O(1)."""
        ...


class ExitHints(Protocol):
    """What the exit guards ask, once every protective exit has passed (statemachines/exits.py)."""

    def exit_hint(self, pos: Position, mkt: MarketSnapshot) -> Signal | None: ...


class _SymbolState:
    """What the strategy remembers per symbol: two numbers and the symbol's thresholds."""

    __slots__ = ("cfg", "last_signal_candle", "sign")

    def __init__(self, cfg: SmartExitSettings) -> None:
        self.cfg = cfg
        self.sign = 0  # side of macd − signal (+1 above, −1 below) outside the dead band; 0 = not seen yet
        self.last_signal_candle = -1  # SymbolIndicators.candles when we last signalled


class ScalpingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The MACD cross's dead band, in 1-minute ATRs (SCALPER_STRATEGY__CROSS_BAND_ATR).
    cross_band_atr: float = Field(0.05, ge=0)


class ScalpingStrategy:
    """MACD cross momentum with RSI and trend filters; see the module docstring for the rules."""

    Params = ScalpingParams

    def __init__(
        self,
        smart_exit: SmartExitSettings | Callable[[str], SmartExitSettings] | None = None,
        cross_band_atr: float = 0.05,
    ) -> None:
        if cross_band_atr < 0:
            raise ValueError("cross_band_atr must be >= 0")
        self.cross_band_atr = cross_band_atr
        # The RSI thresholds per symbol: the same ones the smart exit uses for that symbol.
        if smart_exit is None:
            smart_exit = SmartExitSettings()
        if isinstance(smart_exit, SmartExitSettings):
            fixed = smart_exit
            self._cfg_for: Callable[[str], SmartExitSettings] = lambda _symbol: fixed
        else:
            self._cfg_for = smart_exit
        self._state: dict[str, _SymbolState] = {}

    @classmethod
    def from_settings(cls, settings: Settings, params: ScalpingParams | None = None) -> ScalpingStrategy:
        band = (params or ScalpingParams()).cross_band_atr
        return cls(lambda symbol: settings.for_symbol(symbol).smart_exit, cross_band_atr=band)

    def forget(self, symbol: str) -> None:
        """Drop what was remembered for `symbol` (e.g. after its indicators were rebuilt)."""
        self._state.pop(symbol, None)

    def on_tick(self, symbol: str, ind: SymbolIndicators, now: float) -> EntrySignal | None:
        macd, signal, rsi, atr = ind.macd, ind.macd_signal, ind.rsi, ind.atr
        if macd is None or signal is None or rsi is None or atr is None:  # not warm yet
            return None
        st = self._state.get(symbol)
        if st is None:
            st = self._state[symbol] = _SymbolState(self._cfg_for(symbol))
        diff = macd - signal
        band = self.cross_band_atr * atr
        if diff > band:
            sign = 1
        elif diff < -band:
            sign = -1
        else:  # inside the dead band: still on the side it was
            return None
        prev, st.sign = st.sign, sign
        if prev == 0 or prev == sign:  # first look, or no cross
            return None
        candle = ind.candles  # identifies the forming candle: one signal per candle at most
        if candle == st.last_signal_candle:
            return None
        cfg = st.cfg
        if sign > 0:
            if not (macd > 0 and cfg.rsi_mid < rsi < cfg.rsi_overbought):
                return None
            side = Side.LONG
        else:
            if not (macd < 0 and cfg.rsi_oversold < rsi < cfg.rsi_mid):
                return None
            side = Side.SHORT
        st.last_signal_candle = candle
        word = "above" if sign > 0 else "below"
        return EntrySignal(symbol, side, f"macd {macd:.6g} crossed {word} signal {signal:.6g}, rsi {rsi:.1f}")

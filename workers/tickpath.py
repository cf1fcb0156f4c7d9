"""The engine's decisions on a tick, shared by the live engine (workers/engine.py) and the backtest
(backtest/engine.py), so that the two cannot decide differently.

One tick of a symbol: its indicators, then every live position of the symbol stepped through the exit guards
(statemachines/stepper.py), then the entries (the strategy through the risk gates). What the exchange says
of an order is settled by the same rule table (workers/settlement.py) either way. Only where a transition is
written and where its order intent goes differ: the Redis store and RQ live, memory and the simulated venue
in a backtest. The subclass supplies the clock (`now`, `wall`), `exchange_settled`, `symbol_quarantined`,
what to do with a position that another process moved (`reload`) or that cannot be stepped
(`_bad_position`), and where a quarantined strategy is recorded (`strategy_quarantined`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from transitions import MachineError

from config.plain import plain
from config.settings import Settings, SymbolConfig
from indicators.symbol import SymbolIndicators
from statemachines import guards
from statemachines.lifecycle import State
from statemachines.machine import PositionMachine, StaleTransition
from statemachines.position import Position, Side
from statemachines.risk import Refusal
from statemachines.snapshot import MarketSnapshot
from statemachines.stepper import step
from statemachines.strategy import ExitHints
from workers import settlement
from workers.tickguard import TickGuard

log = logging.getLogger("scalper.engine")


class Entries(Protocol):
    """Entry decisions (strategy + risk gates); see workers/entries.py."""

    def on_tick(self, engine: Any, symbol: str, ind: SymbolIndicators, now: float) -> None: ...
    def open(self, engine: Any, symbol: str, side: Side, reason: str, now: float,
             position_id: str) -> Position | Refusal: ...  # fmt: skip
    def on_closed(self, engine: Any, pos: Position, now: float) -> None: ...
    def forget(self, symbol: str) -> None: ...
    def exit_hints(self, indicators: Callable[[str], SymbolIndicators | None],
                   on_quarantine: Callable[[str, str], None]) -> ExitHints | None: ...  # fmt: skip


def new_indicators(settings: Settings) -> SymbolIndicators:
    ind = settings.indicators
    return SymbolIndicators(ind.rsi_period, ind.macd_fast, ind.macd_slow, ind.macd_signal, ind.atr_period,
                            ind.candle_seconds)  # fmt: skip


def new_guard(settings: Settings) -> TickGuard:
    e = settings.engine
    return TickGuard(e.tick_band_pct, e.tick_confirm, e.max_tick_future_s, e.max_tick_gap_s)


class TickPath:
    # A subclass whose `now()` and `wall()` both return `data_now` (a backtest) says so: the tick path then
    # reads it without two calls per tick.
    data_clock = False
    settings: Settings
    symbols: list[str]
    pm: PositionMachine
    entries: Entries | None
    wall: Callable[[], float]

    def _init_tick_path(self, settings: Settings, symbols: list[str], entries: Entries | None) -> None:
        self.settings = settings
        self.symbols = symbols
        self.entries = entries
        self.ind = {s: new_indicators(settings) for s in symbols}
        # The strategy's exit hints, asked by the exit guards after the protective exits (None: none given).
        self.hints: ExitHints | None = (
            entries.exit_hints(self.indicators_of, self.strategy_quarantined) if entries is not None else None
        )
        # Plain copies: the exit guards and gates read them a dozen times a position-tick (config/plain.py).
        self.cfg: dict[str, SymbolConfig] = {s: plain(settings.for_symbol(s)) for s in symbols}
        self.snap = {s: MarketSnapshot(symbol=s, price=0.0, price_ts=0.0, now=0.0) for s in symbols}
        self.book: dict[str, dict[str, Position]] = {s: {} for s in symbols}
        self.data_now = 0.0
        self.ticks_seen = 0
        self.panic = False
        self._last_step = dict.fromkeys(symbols, 0.0)  # wall time each symbol was last stepped
        self._started_at = 0.0  # the engine's clock when it took the shard

    # --- what the subclass supplies ---

    def now(self) -> float:
        raise NotImplementedError

    @property
    def exchange_settled(self) -> bool:
        raise NotImplementedError

    def symbol_quarantined(self, symbol: str) -> bool:
        raise NotImplementedError

    def reload(self, pos: Position) -> None:
        raise NotImplementedError

    def _bad_position(self, pos: Position, why: str) -> None:
        raise NotImplementedError

    def strategy_quarantined(self, symbol: str, why: str) -> None:
        """The strategy raised on `symbol` and proposes nothing more there (workers/strategies.py)."""
        raise NotImplementedError

    def indicators_of(self, symbol: str) -> SymbolIndicators | None:
        # Looked up each time: the live engine makes fresh indicators whenever it (re)takes its shard.
        return self.ind.get(symbol)

    # --- the tick ---

    def on_tick(self, symbol: str, ts: float, price: float) -> None:
        """The hot path: indicators, then every position of the symbol, then entries."""
        self.ticks_seen += 1
        if ts > self.data_now:
            self.data_now = ts
        ind = self.ind[symbol]
        ind.on_tick(ts, price)
        snap = self.snap[symbol]
        snap.price, snap.price_ts = price, ts
        snap.rsi, snap.macd, snap.macd_signal, snap.atr = ind.rsi, ind.macd, ind.macd_signal, ind.atr
        # step_symbol's lines, inline: on most ticks the symbol has no position and that is all of it.
        if self.data_clock:  # both clocks are the data's: `now()` and `wall()` would return data_now
            snap.now = self._last_step[symbol] = self.data_now
        else:
            snap.now = self.now()
            self._last_step[symbol] = self.wall()
        snap.panic = self.panic
        book = self.book[symbol]
        if book:
            self._step_book(symbol, snap, book)
        if self.entries is not None and not self.panic and self.exchange_settled:
            self.entries.on_tick(self, symbol, ind, snap.now)

    def step_symbol(self, symbol: str) -> None:
        """Step every position of the symbol on its latest snapshot, at the engine's time now."""
        snap = self.snap[symbol]
        snap.now, snap.panic = self.now(), self.panic
        self._last_step[symbol] = self.wall()
        book = self.book[symbol]
        if book:
            self._step_book(symbol, snap, book)

    def _step_book(self, symbol: str, snap: MarketSnapshot, book: dict[str, Position]) -> None:
        cfg = self.cfg[symbol]
        if snap.price > 0:
            todo = list(book.values())
        else:
            # No price since this engine started (the feed is down): the operator's close, a panic and, once
            # there has been no price for `risk.stale_emergency_s`, the stale-price emergency still act;
            # nothing else can be decided without a price.
            snap.price_ts = snap.price_ts or self._started_at
            blind = guards.stale_emergency(snap.now - snap.price_ts, cfg.risk)
            todo = [pos for pos in book.values() if pos.close_request or snap.panic or blind]
        pm, hints = self.pm, self.hints
        for pos in todo:
            try:
                step(pm, pos, snap, cfg, hints)
            except StaleTransition:
                self.reload(pos)
            except (ArithmeticError, ValueError, TypeError, AttributeError) as err:
                self._bad_position(pos, f"step_failed: stepping it failed: {type(err).__name__}: {err}")

    # --- the exchange's word on an order ---

    def settle(self, pos: Position, st: settlement.Settlement, now: float) -> None:
        if not st.trigger:
            return
        try:
            settlement.apply(self.pm, pos, st, self.cfg[pos.symbol], now=now, atr=self.ind[pos.symbol].atr)
        except (StaleTransition, MachineError) as err:
            # Another process moved it (or this copy is behind): the stored position is the truth.
            log.info("%s %s: %s not applied (%s); reloading", pos.symbol, pos.id, st.trigger, err)
            self.reload(pos)
            return
        log.info("%s %s: %s (%s)", pos.symbol, pos.id, st.trigger, st.reason)
        if pos.state == State.CLOSED:
            self.book[pos.symbol].pop(pos.id, None)
            if self.entries is not None:
                self.entries.on_closed(self, pos, now)

    # --- the book ---

    def find(self, position_id: str) -> Position | None:
        """A live position of this shard by id."""
        return next((b[position_id] for b in self.book.values() if position_id in b), None)

    def adopt(self, pos: Position) -> None:
        """A position created by this engine (entry) or the reconciler (adoption)."""
        self.book[pos.symbol][pos.id] = pos

    def live_positions(self) -> list[Position]:
        return [p for book in self.book.values() for p in book.values()]

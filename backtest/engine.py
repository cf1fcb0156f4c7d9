"""The live engine's tick path (workers/tickpath.py) on the backtest's memory store and simulated venue.

Per tick, in market time: the intents whose latency has passed execute at the venue on the quote standing
then; the venue's fills are settled with the live rule table (workers/settlement.py); the tick moves the
venue (stops, liquidation, funding) and is then accepted or dropped by the live tick guard; an accepted tick
steps the indicators, every position of its symbol and the entries, exactly as live. Every
`engine.reconcile_every_s` of market time the positions waiting on an order are settled against the venue,
as the live reconciler does (timeouts included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from backtest.memory import MemoryRisk, MemoryStore, sequential_ids
from backtest.venue import Fill, Quote, SimVenue
from config.settings import Settings
from exchanges.base import Instrument
from feeds.data.series import Tick
from reports.trades import Trade
from statemachines.lifecycle import AWAITING_ORDER, State
from statemachines.machine import PositionMachine
from statemachines.position import Position
from workers import settlement
from workers.entries import StrategyEntries
from workers.tickguard import TickGuard
from workers.tickpath import TickPath, new_guard


@dataclass(slots=True)
class Lane:
    """What the backtest's tick needs of one symbol, held by the run loop."""

    symbol: str
    guard: TickGuard
    quote: Quote | None = None  # the venue's quote of the symbol, once it has one (updated in place)
    funded: bool = False  # funding times are given for it


class Played(NamedTuple):
    ticks: int
    start_ts: float  # the first tick's time
    end_ts: float  # the last tick's


class BacktestBug(RuntimeError):
    """Something the live engine survives (another process moved a position, a step failed) cannot happen
    in a backtest: it is a bug, and the run stops rather than report trades that did not happen."""


class BacktestEngine(TickPath):
    def __init__(self, settings: Settings, symbols: list[str], venue: SimVenue,
                 instruments: dict[str, Instrument]) -> None:  # fmt: skip
        self.venue = venue
        self.strategy_failures: dict[str, tuple[float, str]] = {}  # symbol -> (market time, why)
        self.risk = MemoryRisk(settings, stops=venue.live_stops)
        entries = StrategyEntries(settings, riskstate=self.risk)
        entries.new_id = sequential_ids()
        entries.instruments = instruments
        entries.available = venue.cash
        self.strategy_entries = entries
        self._init_tick_path(settings, symbols, entries)
        self.store = MemoryStore(venue.submit)
        self.pm = PositionMachine(self.store, clock=self.now, wall=self.now)
        self.wall = self.now
        self.guard = {s: new_guard(settings) for s in symbols}
        self.lanes = {s: Lane(s, self.guard[s], funded=s in venue.funding_times) for s in symbols}
        self.reconcile_every_s = settings.engine.reconcile_every_s
        # The class's flags again on the instance: `on_tick` reads both on every tick, and CPython reads an
        # instance's attribute fast but a class attribute through an instance the slow way (3.11).
        self.data_clock = True
        self.exchange_settled = True
        self._next_reconcile = 0.0
        self.trades: list[Trade] = []
        self.dropped_ticks = 0
        self.entries_failed = 0

    # --- the clock and the world: a backtest's is the data ---

    data_clock = True  # now() and wall() below are the data's time

    def now(self) -> float:
        return self.data_now

    exchange_settled = True  # a plain attribute, not TickPath's property: read on every tick

    def symbol_quarantined(self, symbol: str) -> bool:
        return False

    def reload(self, pos: Position) -> None:
        raise BacktestBug(f"{pos.id}: moved by someone else in a backtest")

    def _bad_position(self, pos: Position, why: str) -> None:
        raise BacktestBug(f"{pos.symbol} {pos.id}: {why}")

    def strategy_quarantined(self, symbol: str, why: str) -> None:
        # As live: the symbol gets no more entries, its positions keep their exits, and the run says so.
        self.strategy_failures[symbol] = (self.now(), why)

    # --- the ticks ---

    def play(self, ticks: Iterable[tuple[Lane, Tick]], every: float,
             sample: Callable[[float], None]) -> Played:  # fmt: skip
        """Every tick of `ticks` (each with its symbol's lane, in time order) through the venue and the live
        tick path; `sample(ts)` once every `every` seconds of market time, on the first tick at or past it.

        Per tick, in this order: the intents whose latency has passed execute at the venue on the quote
        standing then and their fills are settled; the tick moves the venue (stops, liquidation, funding)
        and what that fills is settled; the live tick guard accepts or drops it; an accepted tick goes
        through `on_tick` (TickPath's, the live decisions); with no latency an order decided on it executes
        on it; every `engine.reconcile_every_s` the positions waiting on an order are reconciled. This loop
        is the backtest's own glue, written out in one place: a call per tick less than a method per tick
        (a few per cent of a run); the decisions are all in the calls it makes."""
        venue, store, on_tick = self.venue, self.store, self.on_tick
        pending = venue.pending
        no_latency = venue.latency_s == 0
        reconcile_every, next_reconcile = self.reconcile_every_s, self._next_reconcile
        count, start_ts, end_ts, next_sample = 0, 0.0, 0.0, 0.0
        for lane, (ts, px, bid, ask) in ticks:
            if not count:
                start_ts = ts
            count += 1
            if pending and pending[0][0] <= ts:
                venue.deliver(ts)
            if venue.fills:
                self._settle_fills()
            quote = lane.quote
            if quote is None:
                venue.on_quote(lane.symbol, ts, px, bid, ask)
                lane.quote = venue.quotes[lane.symbol]
            else:
                quote.px, quote.bid, quote.ask = px, bid, ask
                if venue.stops or venue.held or lane.funded:  # else a new price moves nothing at the venue
                    venue.quote_moved(lane.symbol, ts, px)
            if venue.fills:
                self._settle_fills()
            if lane.guard.check(ts, px, None, True):
                self.dropped_ticks += 1
            else:
                on_tick(lane.symbol, ts, px)
                if pending and no_latency:
                    venue.deliver(ts)  # no latency: the order executes on the tick it was decided on
                    self._settle_fills()
            if ts >= next_reconcile:
                next_reconcile = self._next_reconcile = ts + reconcile_every
                if store.awaiting:  # the pass only looks at positions waiting on an order
                    self.reconcile()
            if ts >= next_sample:
                next_sample = ts - ts % every + every
                sample(ts)
            end_ts = ts
        return Played(count, start_ts, end_ts)

    def finish(self) -> None:
        """The data ended: the orders on their way land on the last quotes."""
        self.venue.deliver(float("inf"))
        self._settle_fills()
        self.reconcile()

    def _settle_fills(self) -> None:
        for fill in self.venue.take_fills():
            # The engine hears of a fill when it happened: the decision's time plus the latency.
            self.data_now = max(self.data_now, fill.order.u_time_ms / 1000.0)
            pos = self.find(fill.position_id)
            if pos is None:
                continue
            self._settle(pos, fill)
        self.strategy_entries.available = self.venue.cash

    def _settle(self, pos: Position, fill: Fill) -> None:
        order, now = fill.order, self.now()
        if fill.ended_by:  # its protective stop, or a liquidation: the live reconciler's attribution
            if pos.state == State.OPENING:
                return
            st = settlement.Settlement("external_close", f"exchange shows no position ({fill.ended_by})",
                                       {"pnl": order.pnl, "fee": order.fee})  # fmt: skip
        else:
            current = settlement.in_flight_order_id(pos)
            st = settlement.settle(pos, order if order.cl_ord_id == current else None,
                                   fill.position, now, self.cfg[pos.symbol])  # fmt: skip
        self._apply(pos, st, fill)

    def _apply(self, pos: Position, st: settlement.Settlement, fill: Fill | None = None) -> None:
        if st.cancel_cl_ord_id:
            return  # a market order never rests at the simulated venue: nothing to cancel
        if not st.trigger:
            return
        self.settle(pos, st, self.now())
        if pos.state == State.CLOSED and st.trigger != "entry_failed":
            self._record_trade(pos, fill.funding if fill else Decimal(0))
        elif pos.state == State.CLOSED:
            self.entries_failed += 1

    def reconcile(self) -> None:
        """The live reconciler's pass, against the venue, for the positions waiting on an order (an order
        the venue never executed times out as live). Every other change at the venue reached the engine as
        a fill already, so a position that is open there needs no pass."""
        venue, now = self.venue, self.now()
        for book in self.book.values():
            if not book:
                continue
            for pos in [p for p in book.values() if p.state in AWAITING_ORDER]:
                order = venue.order(settlement.in_flight_order_id(pos))
                st = settlement.settle(pos, order, venue.position(pos.symbol, pos.side.value), now,
                                       self.cfg[pos.symbol])  # fmt: skip
                self._apply(pos, st)

    # --- trades ---

    def _record_trade(self, pos: Position, funding: Decimal) -> None:
        exits = self.venue.exit_fills.pop(pos.id, [])
        closed = sum((sz for sz, _ in exits), Decimal(0))
        exit_px = sum((sz * px for sz, px in exits), Decimal(0)) / closed if closed else pos.entry_price
        inst = self.strategy_entries.instruments[pos.symbol]
        self.trades.append(Trade(
            position_id=pos.id, symbol=pos.symbol, side=pos.side.value, entry_ts=pos.opened_at,
            exit_ts=self.now(), entry_price=pos.entry_price, exit_price=exit_px,
            size=closed or pos.entry_size, contract_value=inst.ct_val,
            exit_reason=pos.exit_reason, gross_pnl=pos.realized_pnl, fees=pos.fees, funding=funding,
            time_in=dict(pos.time_in),
        ))  # fmt: skip

"""What the engine reads from its streams, parsed and guarded: the history its indicators warm up from, the
ticks (one XREAD for the shard, each through its symbol's tick guard, then the shared tick path), and the
exchange's order and position events. A record that cannot be parsed is quarantined (workers/quarantine.py),
never a crash. A mixin of workers/engine.Engine, which holds the state these methods use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statemachines.keys import Keys
from statemachines.redis_text import as_str
from workers import settlement
from workers.events import order_from, position_from

_INF = float("inf")
# Before the exchange's clock is measured, a tick may be this far ahead of the host's clock (a host behind the
# exchange by up to that much loses no tick); one stamped further ahead is dropped (chaos seed 370240223: a
# tick an hour ahead, read in the engine's first second, was taken).
UNKNOWN_CLOCK_SLACK_S = 300.0


class StreamIntake:
    # The engine's state these methods use (workers/engine.py sets it).
    client: Any
    keys: Keys
    symbols: list[str]
    cursors: dict[str, str]
    ind: dict[str, Any]
    guard: dict[str, Any]
    book: dict[str, dict[str, Any]]
    cfg: dict[str, Any]
    store: Any
    quarantine: Any
    bus: Any
    io: Any
    passes: Any
    clock_mode: str
    clock_known: bool
    dropped_ticks: int
    dropped_events: int
    _unwarmed: set[str]
    _intents_relayed: int

    if TYPE_CHECKING:  # declared for the type checker only: a stub here would shadow the engine's own

        def now(self) -> float: ...
        def wall(self) -> float: ...
        def on_tick(self, symbol: str, ts: float, price: float) -> None: ...
        def settle(self, pos: Any, st: Any, now: float) -> None: ...
        def _relay(self, sweep: bool = False) -> None: ...

    # --- history ---

    def _warm_up(self) -> None:
        """Closed candles from the history stream, up to where the tick cursor starts. A symbol without any
        is tried again at its first tick: a feed that started with the engine (`scalper run --replay`)
        writes its history just before its first tick, and the engine may have looked before that."""
        self._unwarmed = {s for s in self.symbols if not self._warm_symbol(s)}

    def _warm_symbol(self, s: str) -> bool:
        """Warm the symbol's indicators up from its history; False when it has none."""
        key = self.keys.history(s)
        candles = []
        for entry_id, f in self.client.xrange(key):
            try:
                d = {as_str(k): float(as_str(v)) for k, v in f.items()}
                candle = (d["ts"], d["o"], d["h"], d["l"], d["c"])
            except (KeyError, ValueError) as err:
                self.quarantine.put(f"history:{s}", f"bad_candle: {err!r}", f, ref=as_str(entry_id))
                continue
            if not all(0 < x < _INF for x in candle):
                self.quarantine.put(f"history:{s}", "bad_candle: not positive", f, ref=as_str(entry_id))
                continue
            if candles and candle[0] <= candles[-1][0]:
                continue  # a candle written again (an older feed's restart): the first one stands
            candles.append(candle)
        if candles:
            self.ind[s].warm_up(candles)
            self.guard[s].anchor(candles[-1][0], candles[-1][4])
        elif self.book[s]:  # no history: the newest live position's entry price is a reference
            newest = max(self.book[s].values(), key=lambda p: p.id)
            self.guard[s].anchor(0.0, newest.entry_px)
        return bool(candles)

    # --- ticks ---

    def _ticks(self, block_ms: int) -> int:
        streams = {self.keys.ticks(s): self.cursors[s] for s in self.symbols}
        reply = self.client.xread(streams, count=1000, block=block_ms or None)
        n = 0
        for key, entries in reply or []:
            symbol = Keys.symbol_of(key)
            if symbol in self._unwarmed:  # its first ticks since the start: its history may be there now
                self._unwarmed.discard(symbol)
                if self.ind[symbol].price is None:
                    self._warm_symbol(symbol)
            for entry_id, f in entries:
                if self._accept_tick(symbol, entry_id, f):
                    n += 1
                    if self.store.intents_written != self._intents_relayed:
                        self._relay()  # an order decided on this tick leaves now, not after the batch
            self.cursors[symbol] = as_str(entries[-1][0])
        return n

    def _accept_tick(self, symbol: str, entry_id: Any, f: dict[bytes, bytes]) -> bool:
        """Parse and guard one tick; step on it if it may move the engine, else quarantine it."""
        try:
            ts, px = float(f[b"ts"]), float(f[b"px"])
        except (KeyError, ValueError):
            ts = px = float("nan")
        # NaN fails every comparison; an infinite time (from "inf" or "1e400") would stop the clock.
        if not (0 < px < _INF and 0 < ts < _INF):
            why = "unparseable: not a positive finite price and time"
        else:
            data_clock = self.clock_mode == "data"
            if data_clock:
                why = self.guard[symbol].check(ts, px, None, True)
            elif self.clock_known:
                why = self.guard[symbol].check(ts, px, self.now(), False)
            else:  # the exchange's clock not measured yet: the host's, with minutes of slack
                why = self.guard[symbol].check(ts, px, self.wall(), False, UNKNOWN_CLOCK_SLACK_S)
        if why:
            self.dropped_ticks += 1
            self.quarantine.put(f"ticks:{symbol}", why, f, ref=as_str(entry_id))
            return False
        self.on_tick(symbol, ts, px)
        return True

    # --- exchange events ---

    def _events(self, events: list[tuple[str, str, dict[str, str]]]) -> None:
        for symbol, entry_id, fields in events:
            try:
                self.on_event(symbol, fields)
            except (KeyError, ValueError, TypeError, ArithmeticError) as err:
                self.dropped_events += 1
                self.quarantine.put(f"events:{symbol}", f"bad_event: {type(err).__name__}: {err}", fields,
                                    ref=entry_id)
        self.quarantine.flush()  # before the acknowledgement, as the tick cursors (`_poll`)
        self.bus.ack_all([(symbol, entry_id) for symbol, entry_id, _ in events])

    def on_event(self, symbol: str, fields: dict[str, str]) -> None:
        book = self.book.get(symbol, {})
        now = self.now()
        cfg = self.cfg[symbol]
        if fields.get("kind") == "order":
            order = order_from(fields)
            if order.filled > 0 and "account" in self.io.jobs:
                # A fill moved the balance: the next entry is sized on the new one, not one up to
                # `balance_every_s` old (as a backtest sizes it).
                self.io.request("account")
            pos = book.get(order.cl_ord_id[:12])
            if pos is not None and order.cl_ord_id == settlement.in_flight_order_id(pos):
                st = settlement.settle(pos, order, settlement.UNKNOWN, self.wall(), cfg)
                if st.trigger == "close_filled":
                    # Over at the exchange: the reconciler settles it now, with the PnL of all its orders
                    # (the stop's fill, an earlier attempt's late fill), not this order's alone.
                    self.passes.ask()
                else:
                    self.settle(pos, st, now)
        elif fields.get("kind") == "position":
            ex = position_from(fields)
            mine = [p for p in book.values() if p.side.value == ex.side or ex.size == 0]
            for pos in mine:
                if ex.liq_px is not None:
                    pos.liq_price = float(ex.liq_px)
                if ex.margin_ratio is not None:
                    pos.margin_ratio = float(ex.margin_ratio)
            # A flat or resized exchange position: settle it now through the reconciler, which reads the
            # exchange whole (and finds the fill that flattened it, for the realized PnL).
            if any(p.size != ex.size for p in mine) or (ex.size == 0 and book):
                self.passes.ask()

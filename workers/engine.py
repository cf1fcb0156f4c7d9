"""The engine: steps every position of its symbol shard on every tick.

One loop iteration: keep the shard lease; read a batch of ticks (one XREAD for all symbols); for each
tick update the symbol's indicators and step its positions (pure guards, Redis only on a transition);
apply the exchange's events (consumer group, acknowledged after applying); hand new order intents to RQ;
write coalesced marks about once a second; reconcile periodically. Only the lease holder does any of it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import redis
from transitions import MachineError

from config.settings import Settings
from indicators.symbol import SymbolIndicators
from statemachines.keys import Keys
from statemachines.lifecycle import State
from statemachines.machine import PositionMachine, StaleTransition
from statemachines.position import Position
from statemachines.snapshot import MarketSnapshot
from statemachines.stepper import step
from statemachines.store import PositionStore
from workers import settlement
from workers.events import EventBus, order_from, position_from
from workers.lease import Lease
from workers.relay import Relay, RqHandOff

log = logging.getLogger("scalper.engine")

_INF = float("inf")
MARK_FIELDS = ("peak_pnl_pct", "trail_stop", "liq_price", "margin_ratio")


class Entries(Protocol):
    """Entry decisions (strategy + risk gates); see workers/entries.py."""

    def on_tick(self, engine: Engine, symbol: str, ind: SymbolIndicators, now: float) -> None: ...
    def on_command(self, engine: Engine, fields: dict[str, str], now: float) -> None: ...
    def on_closed(self, engine: Engine, pos: Position, now: float) -> None: ...


class RedisRestarted(redis.ConnectionError):
    """Redis is a new server (restarted): state in memory may be ahead of it."""


class Reconciler(Protocol):
    def reconcile(self, engine: Engine, now: float, at_start: bool = False) -> Any: ...
    def due_to_reconnect(self, engine: Engine) -> bool: ...


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Engine:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        *,
        symbols: list[str] | None = None,
        shard: str = "all",
        clock: Literal["wall", "data"] = "wall",
        entries: Entries | None = None,
        reconciler: Reconciler | None = None,
        lease_ttl_s: float = 5.0,
        reconcile_every_s: float = 10.0,
        mark_every_s: float = 1.0,
        wall: Callable[[], float] = time.time,
        hand_off_to_rq: bool = True,
    ) -> None:
        self.settings = settings
        self.client = client
        self.symbols = symbols or list(settings.symbols)
        # An intent goes to RQ in its transition's script; without (tests): through the outbox and relay.
        handoff = RqHandOff(client) if hand_off_to_rq else None
        self.store = PositionStore(client, settings.redis.prefix, handoff=handoff)
        self.keys = self.store.keys
        self.pm = PositionMachine(self.store, clock=self.now, wall=wall)
        self.bus = EventBus(client, self.keys)
        self.relay = Relay(client, self.keys)
        self.shard = shard
        self.lease = Lease(client, self.keys.lease(shard), ttl_s=lease_ttl_s, owner=f"engine-{shard}")
        self.consumer = f"engine-{shard}"
        self.clock_mode = clock
        self.entries = entries
        self.reconciler = reconciler
        self.reconcile_every_s = reconcile_every_s
        self.mark_every_s = mark_every_s
        self.wall = wall
        self.ind = {s: self._new_indicators() for s in self.symbols}
        self.cfg = {s: settings.for_symbol(s) for s in self.symbols}
        self.snap = {s: MarketSnapshot(symbol=s, price=0.0, price_ts=0.0, now=0.0) for s in self.symbols}
        self.book: dict[str, dict[str, Position]] = {s: {} for s in self.symbols}
        self.cursors: dict[str, str] = {}
        self.data_now = 0.0
        self.panic = False
        # Fail closed: no entries until a reconcile has read the exchange (no reconciler: trust it).
        self.exchange_known = reconciler is None
        # After a Redis restart: no entries until then (engine.redis_restart_hold_s); 0 = none.
        self.entries_held_until = 0.0
        self.started = False
        self.ticks_seen = 0
        self.dropped_ticks = 0
        self.dropped_events = 0
        self._last_marks = 0.0
        self._last_sweep = 0.0
        self._intents_relayed = 0
        self._last_reconcile = 0.0
        self._control_id = "0-0"
        self._redis_run_id = ""  # the server this engine loaded its state from

    # --- clock ---

    def now(self) -> float:
        """Wall time live; in replay, the time of the data (so holding times mean market time)."""
        return self.data_now if self.clock_mode == "data" and self.data_now else self.wall()

    def _new_indicators(self) -> SymbolIndicators:
        ind = self.settings.indicators
        return SymbolIndicators(ind.rsi_period, ind.macd_fast, ind.macd_slow, ind.macd_signal, ind.atr_period,
                                ind.candle_seconds)  # fmt: skip

    # --- lifecycle of the engine process ---

    def start(self) -> None:
        """On taking the lease: load the shard's live positions, warm indicators up, reconcile."""
        self._redis_run_id = self._server_run_id()
        seen = self.client.set(self.keys.seen_redis(self.shard), self._redis_run_id, get=True)
        if seen is not None and _s(seen) != self._redis_run_id:
            # An order sent before the restart, whose record and job it lost, may still land: no new
            # position may take its symbol before the reconciler restores it under its own id.
            hold = self.settings.engine.redis_restart_hold_s
            self.entries_held_until = self.wall() + hold
            log.warning("Redis restarted since this shard's engine last started: no entries for %.0f s, "
                        "until requests sent before it have landed", hold)  # fmt: skip
        self.bus.ensure_groups(self.symbols)
        for book in self.book.values():
            for pos in book.values():
                self.pm.detach(pos)  # the shared machine must not keep models of a stale book
            book.clear()
        for pos in self.store.load_live():
            if pos.symbol in self.book:
                self.book[pos.symbol][pos.id] = self.pm.attach(pos)
        raw = self.client.hgetall(self.keys.cursor())
        self.cursors = {s: _s(raw.get(s.encode(), b"0-0")) for s in self.symbols} if raw else {}
        for s in self.symbols:
            self.cursors.setdefault(s, "0-0")
        # Fresh indicators: after a lost and regained lease the old ones have seen live ticks, and the
        # history is replayed into them again.
        self.ind = {s: self._new_indicators() for s in self.symbols}
        self._warm_up()
        self.panic = bool(self.client.exists(self.keys.panic()))
        # Operator commands from the last minute still apply (sent while the engine restarted); older
        # ones are stale. Closes are also persisted on the position itself, so none is ever lost.
        self._control_id = f"{int((self.wall() - 60) * 1000)}-0"
        self.started = True
        log.info("engine owns %s: %d live positions", self.symbols, sum(len(b) for b in self.book.values()))
        if self.reconciler is not None:
            self.reconciler.reconcile(self, self.now(), at_start=True)
            self._last_reconcile = self.wall()

    def _warm_up(self) -> None:
        """Closed candles from the history stream, up to where the tick cursor starts."""
        for s in self.symbols:
            rows = self.client.xrange(self.keys.history(s))
            candles = []
            for _, f in rows:
                d = {_s(k): float(_s(v)) for k, v in f.items()}
                candles.append((d["ts"], d["o"], d["h"], d["l"], d["c"]))
            if candles:
                self.ind[s].warm_up(candles)

    def run_once(self, block_ms: int = 50) -> int:
        """One loop iteration; returns the number of ticks processed (0 when not the lease holder)."""
        if not self.lease.keep():
            self.started = False
            time.sleep(min(0.2, block_ms / 1000))
            return 0
        if not self.started:
            self.start()
        n = self._ticks(block_ms)
        self._relay()  # first: an order decided on these ticks leaves at once
        self._poll(save_cursors=n > 0)
        wall = self.wall()
        self._relay(sweep=wall - self._last_sweep >= 1.0)
        if wall - self._last_marks >= self.mark_every_s:
            self.flush_marks()
            self._last_marks = wall
        rec = self.reconciler
        hold_over = bool(self.entries_held_until) and wall >= self.entries_held_until
        if rec is not None and (
            wall - self._last_reconcile >= self.reconcile_every_s or rec.due_to_reconnect(self) or hold_over
        ):
            if hold_over:
                rec.sweep_lost_records()  # for records lost with orders that landed during the hold
            self.check_same_redis()
            rec.reconcile(self, self.now())
            self._last_reconcile = wall
        if hold_over and (rec is None or self.exchange_known):
            self.entries_held_until = 0.0
        return n

    @property
    def exchange_settled(self) -> bool:
        """Entries may go: the exchange was read, and nothing sent before a Redis restart can still land."""
        return self.exchange_known and not self.entries_held_until

    def _server_run_id(self) -> str:
        return str(self.client.info("server").get("run_id", ""))

    def check_same_redis(self) -> None:
        """A Redis restarted between two commands goes unnoticed by the client (it reconnects), yet it may
        have come back without its last second of writes: this engine's positions in memory would be ahead
        of the store. Seen by the server's run_id; the process then starts again from what Redis kept."""
        if self.started and self._server_run_id() != self._redis_run_id:
            raise RedisRestarted("Redis restarted under the engine: starting again from what it kept")

    def stop(self) -> None:
        if self.started:
            self.flush_marks()
        self.started = False  # a later owner of the shard starts from Redis, not from this memory
        self.lease.release()

    # --- ticks ---

    def _ticks(self, block_ms: int) -> int:
        streams = {self.keys.ticks(s): self.cursors[s] for s in self.symbols}
        reply = self.client.xread(streams, count=1000, block=block_ms or None)
        n = 0
        for key, entries in reply or []:
            symbol = Keys.symbol_of(key)
            for _id, f in entries:
                try:
                    ts, px = float(f[b"ts"]), float(f[b"px"])
                except (KeyError, ValueError):
                    ts = px = float("nan")
                # NaN fails every comparison; an infinite time (from "inf" or "1e400") would stop the clock.
                if not (0 < px < _INF and 0 < ts < _INF):
                    self.dropped_ticks += 1
                    continue
                self.on_tick(symbol, ts, px)
                n += 1
                if self.store.intents_written != self._intents_relayed:
                    self._relay()  # an order decided on this tick leaves now, not after the rest of the batch
            self.cursors[symbol] = _s(entries[-1][0])
        return n

    def _relay(self, sweep: bool = False) -> None:
        """Move outbox entries to RQ: read when this engine wrote one (a store without a hand-off), and once
        a second for those written by other processes with such a store (tools)."""
        if sweep or self.store.intents_written != self._intents_relayed:
            self._intents_relayed = self.store.intents_written
            self.relay.flush(self.symbols)
            if sweep:
                self._last_sweep = self.wall()

    def on_tick(self, symbol: str, ts: float, price: float) -> None:
        """The hot path: indicators, then every position of the symbol, then entries."""
        self.ticks_seen += 1
        if ts > self.data_now:
            self.data_now = ts
        ind = self.ind[symbol]
        ind.on_tick(ts, price)
        snap = self.snap[symbol]
        snap.price, snap.price_ts, snap.now = price, ts, self.now()
        snap.rsi, snap.macd, snap.macd_signal, snap.atr = ind.rsi, ind.macd, ind.macd_signal, ind.atr
        snap.panic = self.panic
        book = self.book[symbol]
        if book:
            cfg = self.cfg[symbol]
            for pos in list(book.values()):
                try:
                    step(self.pm, pos, snap, cfg)
                except StaleTransition:
                    self.reload(pos)
        if self.entries is not None and not self.panic and self.exchange_settled:
            self.entries.on_tick(self, symbol, ind, snap.now)

    # --- exchange events ---

    def _poll(self, save_cursors: bool) -> None:
        """Everything a loop turn does besides the ticks, in one round trip: the tick cursors saved, the
        exchange events (pending, then new), the panic flag and the operator's commands. Fewer round
        trips per turn also leave Redis and the CPU to the worker running the order just decided."""
        pipe = self.client.pipeline(transaction=False)
        if save_cursors:
            pipe.hset(self.keys.cursor(), mapping=self.cursors)
        self.bus.queue_read(pipe, self.symbols, self.consumer)
        pipe.exists(self.keys.panic())
        pipe.xread({self.keys.control(): self._control_id}, count=100)
        *replies, panic, control = pipe.execute()
        self._events(self.bus.decode(replies[-2:]))
        self._control(bool(panic), control)

    def _events(self, events: list[tuple[str, str, dict[str, str]]]) -> None:
        for symbol, entry_id, fields in events:
            try:
                self.on_event(symbol, fields)
            except (KeyError, ValueError, TypeError, ArithmeticError) as err:
                self.dropped_events += 1
                log.warning("dropped malformed event %s on %s: %s", entry_id, symbol, err)
        self.bus.ack_all([(symbol, entry_id) for symbol, entry_id, _ in events])

    def on_event(self, symbol: str, fields: dict[str, str]) -> None:
        book = self.book.get(symbol, {})
        now = self.now()
        cfg = self.cfg[symbol]
        if fields.get("kind") == "order":
            order = order_from(fields)
            pos = book.get(order.cl_ord_id[:12])
            if pos is not None and order.cl_ord_id == settlement.in_flight_order_id(pos):
                st = settlement.settle(pos, order, settlement.UNKNOWN, self.wall(), cfg)
                if st.trigger == "close_filled":
                    # Over at the exchange: the reconciler settles it now, with the PnL of all its orders
                    # (the stop's fill, an earlier attempt's late fill), not this order's alone.
                    self._last_reconcile = 0.0
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
                self._last_reconcile = 0.0

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
            self.pm.detach(pos)
            if self.entries is not None:
                self.entries.on_closed(self, pos, now)

    def reload(self, pos: Position) -> None:
        """Another process moved the position: take the stored one."""
        self.pm.detach(pos)
        self.book[pos.symbol].pop(pos.id, None)
        fresh = self.store.load(pos.id)
        if fresh.state != State.CLOSED:
            self.book[fresh.symbol][fresh.id] = self.pm.attach(fresh)

    def adopt(self, pos: Position) -> None:
        """A position created by this engine (entry) or the reconciler (adoption)."""
        self.book[pos.symbol][pos.id] = self.pm.attach(pos)

    # --- operator commands: manual close, panic, manual entry ---

    def _control(self, panic: bool, reply: Any) -> None:
        self.panic = panic
        for _, entries in reply or []:
            for entry_id, raw in entries:
                self._control_id = _s(entry_id)
                self.on_command({_s(k): _s(v) for k, v in raw.items()})

    def on_command(self, fields: dict[str, str]) -> None:
        cmd = fields.get("cmd")
        if cmd == "close":
            for book in self.book.values():
                pos = book.get(fields.get("id", ""))
                if pos is not None:
                    pos.close_request = fields.get("reason") or "manual"
        elif cmd == "open" and self.entries is not None and fields.get("symbol") in self.book:
            self.entries.on_command(self, fields, self.now())

    # --- coalesced marks ---

    def flush_marks(self) -> None:
        for book in self.book.values():
            for pos in list(book.values()):
                if pos.state in (State.OPEN, State.TRAILING, State.HARVESTING):
                    self.store.update_marks(pos, {f: getattr(pos, f) for f in MARK_FIELDS})

    def live_positions(self) -> list[Position]:
        return [p for book in self.book.values() for p in book.values()]

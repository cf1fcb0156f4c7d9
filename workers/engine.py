"""The engine: steps every position of its symbol shard on every tick, and on a timer without ticks.

One loop iteration: keep the shard lease; read a batch of ticks (one XREAD for all symbols); pass each through
its symbol's tick guard, then update the indicators and step its positions (pure guards, Redis only on a
transition); step the positions of symbols that had no tick for `engine.idle_step_s`; apply the exchange's
events (consumer group, acknowledged after applying) and the operator's commands; write coalesced marks about
once a second; reconcile periodically. Only the lease holder does any of it. A record that cannot be parsed is
quarantined (workers/quarantine.py) and the loop goes on; a position whose hash or step fails is flagged and
left to its exchange-side stop, and every other position keeps its management. Reading the streams (history,
ticks, exchange events) is workers/intake.py's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import redis

from config.settings import Settings
from statemachines import stepper
from statemachines.intents import protect_intent
from statemachines.lifecycle import AWAITING_ORDER, State
from statemachines.machine import PositionMachine
from statemachines.position import Position
from statemachines.redis_text import as_str
from statemachines.store import PositionNotFound, PositionStore
from workers import commands
from workers.events import EventBus
from workers.exchange_io import ExchangeIO
from workers.flags import FlaggedPositions
from workers.intake import StreamIntake
from workers.lease import Lease
from workers.operator_desk import OperatorDesk
from workers.quarantine import Quarantine
from workers.reconcile_plan import ReconcilePasses
from workers.relay import Relay, RqHandOff
from workers.retention import ClosedRetention
from workers.tickpath import Entries, TickPath, new_guard, new_indicators

log = logging.getLogger("scalper.engine")

MARK_FIELDS = ("peak_pnl_pct", "trail_stop", "liq_price", "margin_ratio")


class RedisRestarted(redis.ConnectionError):
    """Redis is a new server (restarted): state in memory may be ahead of it."""


class Reconciler(Protocol):
    def reconcile(self, engine: Engine, now: float, at_start: bool = False) -> Any: ...
    def due_to_reconnect(self, engine: Engine) -> bool: ...
    def sweep_lost_records(self) -> None: ...


class Engine(StreamIntake, TickPath):
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
        background_io: bool = False,
    ) -> None:
        self._init_tick_path(settings, symbols or list(settings.symbols), entries)
        self.client = client
        # An intent goes to RQ in its transition's script; without (tests): through the outbox and relay.
        handoff = RqHandOff(client) if hand_off_to_rq else None
        wait = (settings.redis.replica_wait, settings.redis.replica_wait_ms)
        self.store = PositionStore(client, settings.redis.prefix, handoff=handoff, replica_wait=wait)
        self.keys = self.store.keys
        self.pm = PositionMachine(self.store, clock=self.now, wall=wall)
        self.bus = EventBus(client, self.keys)
        self.relay = Relay(client, self.keys)
        self.quarantine = Quarantine(client, self.keys, process=f"engine-{shard}")
        # Exchange reads (reconciler, clock, balance, instruments) on their own thread; inline for tests.
        self.io = ExchangeIO(threaded=background_io, name=f"exchange-io-{shard}")
        self.retention = ClosedRetention.from_settings(client, self.keys, self.symbols, settings.engine)
        self.shard = shard
        self.lease = Lease(client, self.keys.lease(shard), ttl_s=lease_ttl_s, owner=f"engine-{shard}",
                           listed_in=(self.keys.leases(), shard))  # fmt: skip
        self.consumer = f"engine-{shard}"
        self.clock_mode = clock
        self.reconciler = reconciler
        self.passes = ReconcilePasses(self, reconcile_every_s)  # run on the I/O thread
        self.desk = OperatorDesk(self)  # operator commands
        self.mark_every_s = mark_every_s
        self.wall = wall
        self.guard = {s: new_guard(self.settings) for s in self.symbols}
        self.cursors: dict[str, str] = {}
        # The exchange's clock minus the host's, seconds, as last measured (live prices' ages use it);
        # not known until the first measurement when a clock job is set up (workers/exchange_io.py).
        self.clock_offset = 0.0
        self.clock_known = True
        # Fail closed: no entries until a reconcile has read the exchange (no reconciler: trust it).
        self.exchange_known = reconciler is None
        # After a Redis restart: no entries until then (engine.redis_restart_hold_s); 0 = none.
        self.entries_held_until = 0.0
        self.redis_fresh = False  # Redis had no trace of this shard's engine when it started
        self.started = False
        self.dropped_ticks = 0
        self.dropped_events = 0
        # Positions left to their exchange-side stops: their hash cannot be parsed, or stepping them failed.
        self.flagged = FlaggedPositions(client, self.keys, self.quarantine)
        self._last_marks = 0.0
        self._last_sweep = 0.0
        self._intents_relayed = 0
        self._control_id = "0-0"
        self._redis_run_id = ""  # the server this engine loaded its state from
        self._lockstep = False  # a lockstep replay's feed is waiting on this engine (Keys.lockstep_on)
        self._lockstep_mark: dict[str, str] = {}
        self._lockstep_at = 0.0
        self._unwarmed: set[str] = set()  # symbols whose history was empty at the start

    # --- clock ---

    def now(self) -> float:
        """Live: the exchange's time (the host's, corrected by the measured offset), so that a price's age
        means the same on a host whose clock is off. In replay: the time of the data, so that holding
        times mean market time."""
        if self.clock_mode == "data" and self.data_now:
            return self.data_now
        return self.wall() + self.clock_offset

    def set_clock_offset(self, offset_s: float) -> None:
        """The exchange's clock minus this host's, as measured off the tick path."""
        limit = self.settings.engine.max_clock_skew_s
        if abs(offset_s) > limit and abs(offset_s - self.clock_offset) > 0.5:
            log.error("this host's clock is %.1f s %s the exchange's (more than %.1f s): prices' ages and "
                      "exits use the exchange's time; fix the host's clock (NTP)", abs(offset_s),
                      "behind" if offset_s > 0 else "ahead of", limit)  # fmt: skip
        self.clock_offset = offset_s
        self.clock_known = True

    # --- lifecycle of the engine process ---

    def start(self) -> None:
        """On taking the lease: load the shard's live positions, warm indicators up, reconcile."""
        self._hold_after_redis_restart()
        self._started_at = self.now()
        self.bus.ensure_groups(self.symbols)
        for book in self.book.values():
            book.clear()
        self.flagged.clear()
        for pos in self.store.load_live(on_bad=self._bad_hash):
            if pos.symbol in self.book:
                self.book[pos.symbol][pos.id] = pos
        self.flagged.unflag_readable(self.symbols)
        raw = self.client.hgetall(self.keys.cursor())
        self.cursors = {s: as_str(raw.get(s.encode(), b"0-0")) for s in self.symbols} if raw else {}
        for s in self.symbols:
            self.cursors.setdefault(s, "0-0")
        # Fresh indicators and tick guards: after a lost and regained lease the old ones have seen live
        # ticks, and the history is replayed into them again.
        self.ind = {s: new_indicators(self.settings) for s in self.symbols}
        self.guard = {s: new_guard(self.settings) for s in self.symbols}
        if self.entries is not None:  # the strategy's memory of the old indicators goes with them
            for s in self.symbols:
                self.entries.forget(s)
        self._warm_up()
        self.io.poll()  # the first exchange reads (inline: done now; threaded: on their way)
        self.panic = bool(self.client.exists(self.keys.panic()))
        # Operator commands of the last minute are read again (sent while the engine restarted); those
        # already applied have an outcome and are skipped (workers/commands.py).
        self._control_id = f"{int((self.wall() - commands.REPLAY_S) * 1000)}-0"
        self.started = True
        self.quarantine.flush()
        log.info("engine owns %s: %d live positions", self.symbols, sum(len(b) for b in self.book.values()))
        if "clock" in self.io.jobs:  # measured before the first pass (one I/O thread, first come first)
            self.clock_known = self.clock_known and self.io.jobs["clock"].runs > 0
            self.io.request("clock")
            self.io.poll()
        self.passes.first()

    def _hold_after_redis_restart(self) -> None:
        """A Redis that restarted since this shard's engine last started may have lost its last second:
        an order sent before, whose record and job it lost, may still land, so no new position may take its
        symbol before the reconciler restores that one under its own id. Not after a clean stop of the
        whole system (`scalper run` marks the server it shut down once every process had stopped)."""
        self._redis_run_id = self._server_run_id()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.seen_redis(self.shard), self._redis_run_id, get=True)
        pipe.get(self.keys.clean_stop())
        seen, clean = pipe.execute()
        # No trace of this shard's engine: a new deployment, or a Redis that came back empty (the marker
        # lost with the rest). The reconciler's first pass tells them apart by the exchange's orders.
        self.redis_fresh = seen is None
        if (seen is None or as_str(seen) == self._redis_run_id
                or (clean is not None and as_str(clean) == as_str(seen))):
            return
        self.hold_entries("Redis restarted since this shard's engine last started")

    def hold_entries(self, why: str) -> None:
        """No entries for `engine.redis_restart_hold_s`: an order sent before Redis lost its record may still
        land, and must be restored under its own id before a new position takes its symbol."""
        hold = self.settings.engine.redis_restart_hold_s
        self.entries_held_until = self.wall() + hold
        log.warning("%s: no entries for %.0f s, until requests sent before it have landed", why, hold)

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
        self.io.poll()  # what the exchange I/O thread read (balance, clock, ...), before the commands
        self._poll(save_cursors=n > 0)
        wall = self.wall()
        self._step_idle(wall)
        self._relay(sweep=wall - self._last_sweep >= 1.0)
        if wall - self._last_marks >= self.mark_every_s:
            self.flush_marks()
            self._last_marks = wall
            self.retention.run_once(wall)  # closed positions: to the ledger, and out after the retention
        self.passes.schedule(wall)
        self.quarantine.flush()
        if self._lockstep:
            self._mark_lockstep()
        return n

    def idle(self) -> bool:
        """Nothing decided is still on its way: entries may go, no order intent waits for the relay, no
        exchange read is running or asked for, and no position waits on an order's outcome. A lockstep
        replay feeds the next tick only then (scalper/lockstep.py), so a replay decides as a backtest does."""
        return (self.exchange_settled and self.store.intents_written == self._intents_relayed
                and not any(job.running or job.requested for job in self.io.jobs.values())
                and not any(p.state in AWAITING_ORDER for p in self.live_positions()))  # fmt: skip

    def _mark_lockstep(self) -> None:
        """For a lockstep replay's feed: publish the last tick stepped on per symbol and whether the engine
        is idle, when either changed (one small write a tick; only while such a feed asks for it)."""
        mark = {**self.cursors, "idle": "1" if self.idle() else "0"}
        wall = self.wall()
        if mark != self._lockstep_mark or wall - self._lockstep_at >= 1.0:  # again each second: a feed
            self.client.hset(self.keys.lockstep(), mapping=mark)          # that started may have cleared it
            self._lockstep_mark, self._lockstep_at = mark, wall

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
        self.io.stop()
        if self.started:
            self.flush_marks()
            self.quarantine.flush()
        self.started = False  # a later owner of the shard starts from Redis, not from this memory
        self.lease.release()

    def _relay(self, sweep: bool = False) -> None:
        """Move outbox entries to RQ: read when this engine wrote one (a store without a hand-off), and once
        a second for those written by other processes with such a store (tools)."""
        if sweep or self.store.intents_written != self._intents_relayed:
            self._intents_relayed = self.store.intents_written
            self.relay.flush(self.symbols, quarantine=self.quarantine)
            if sweep:
                self._last_sweep = self.wall()

    def _step_idle(self, wall: float) -> None:
        """Without ticks, a close, a panic and the stale-price emergency still act: the positions of a symbol
        that had no tick for `engine.idle_step_s` are stepped on the clock. (The other exits wait for a fresh
        price: statemachines/exits.py.)"""
        every = self.settings.engine.idle_step_s
        for symbol in self.symbols:
            if self.book[symbol] and wall - self._last_step[symbol] >= every:
                self.step_symbol(symbol)

    # --- positions that cannot be managed ---

    def _bad_hash(self, symbol: str, position_id: str, raw: Any, why: str) -> None:
        if symbol in self.book:
            self.flagged.flag(symbol, position_id, raw, f"bad_hash: its hash cannot be parsed: {why}")

    def _bad_position(self, pos: Position, why: str) -> None:
        self.book[pos.symbol].pop(pos.id, None)
        self.flagged.flag(pos.symbol, pos.id, pos.to_hash(), why)

    def strategy_quarantined(self, symbol: str, why: str) -> None:
        """The strategy raised on `symbol`: in the dead-letter stream and the `strategy` count, once (the
        notifier and /metrics report it); its positions keep every other exit."""
        record = {"symbol": symbol, "strategy": self.settings.engine.strategy, "why": why}
        self.quarantine.put(f"strategy:{symbol}", f"strategy_raised: {why}", record, ref=symbol)

    def symbol_quarantined(self, symbol: str) -> bool:
        """A position of the symbol cannot be read: nothing on the symbol may be assumed (no entry, no
        adoption of an exchange position that may be that one)."""
        return self.flagged.has(symbol)

    @property
    def bad_positions(self) -> dict[str, str]:
        """Flagged positions: id -> symbol."""
        return self.flagged.ids

    # --- exchange events ---

    def _poll(self, save_cursors: bool) -> None:
        """Everything a loop turn does besides the ticks, in one round trip: the tick cursors saved, the
        exchange events (pending, then new), the panic flag and the operator's commands. Fewer round
        trips per turn also leave Redis and the CPU to the worker running the order just decided."""
        # What this turn quarantined is written before the cursors move past it: a kill in between must
        # not lose a bad record (nothing would count it, and nothing would read it again).
        self.quarantine.flush()
        pipe = self.client.pipeline(transaction=False)
        if save_cursors:
            pipe.hset(self.keys.cursor(), mapping=self.cursors)
        self.bus.queue_read(pipe, self.symbols, self.consumer)
        pipe.exists(self.keys.panic())
        pipe.xread({self.keys.control(): self._control_id}, count=100)
        replay = self.clock_mode == "data"
        if replay:  # a lockstep feed asks the engine to say when it is done with each tick
            pipe.exists(self.keys.lockstep_on())
        results = pipe.execute()
        if replay:
            self._lockstep = bool(results.pop())
        *replies, panic, control = results
        self._events(self.bus.decode(replies[-2:]))
        self._control(bool(panic), control)

    def reload(self, pos: Position) -> None:
        """Another process moved the position: take the stored one."""
        self.book[pos.symbol].pop(pos.id, None)
        try:
            fresh = self.store.load(pos.id, pos.symbol)
        except PositionNotFound:
            return
        except ValueError as err:
            self.flagged.flag(pos.symbol, pos.id, {}, f"bad_hash: its hash cannot be parsed: {err}")
            return
        if fresh.state != State.CLOSED:
            self.book[fresh.symbol][fresh.id] = fresh

    def reprotect(self, pos: Position) -> None:
        """Hand the position's protect job over again (its first was lost): the job places the stop if it
        is missing, and does nothing if it is there. Outside a transition: nothing about the position
        changes, and the job is idempotent by the stop's client id."""
        if pos.state not in (State.OPEN, State.TRAILING, State.HARVESTING) or pos.size <= 0:
            return
        stop_px = stepper.catastrophe_stop(pos, float(pos.entry_price), self.cfg[pos.symbol])
        intent = protect_intent(pos, stop_px)
        if self.store.handoff is not None:
            self.relay.hand_over(intent)
        else:  # a store without a queue (tests): the outbox, which the relay moves on
            self.client.xadd(self.keys.outbox(pos.symbol), intent.to_fields())
            self.store.intents_written += 1
        log.warning("%s %s: its protective stop is missing; placing it again", pos.symbol, pos.id)

    # --- operator commands: manual entry, manual close (workers/operator_desk.py) ---

    def _control(self, panic: bool, reply: Any) -> None:
        self.panic = panic
        for _, entries in reply or []:
            for entry_id, raw in entries:
                self._control_id = as_str(entry_id)
                self.desk.apply(as_str(entry_id), {as_str(k): as_str(v) for k, v in raw.items()})

    # --- coalesced marks ---

    def flush_marks(self) -> None:
        for book in self.book.values():
            for pos in list(book.values()):
                if pos.state in (State.OPEN, State.TRAILING, State.HARVESTING):
                    self.store.update_marks(pos, {f: getattr(pos, f) for f in MARK_FIELDS})

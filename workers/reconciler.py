"""The reconciler: settle every live position of the engine's shard with the exchange.

Runs at the engine's start, every `engine.reconcile_every_s`, and after every private-stream reconnect.
Each position is settled by the rule table of workers/settlement.py; each correction is a transition,
so it is logged in the position's stream with its reason. Fail closed: if the exchange cannot be read,
nothing is closed or forgotten, `{prefix}:exchange` says `unknown`, and no entry is taken until a later
pass reads it again. Exchange positions the bot does not know are adopted (with fresh stops), closed
(adopted, then sent through `closing`: there is one close path), or ignored, by configuration.

Protective stops: every pass cancels the live ones whose positions are over, and forgets from the record of
stops not yet confirmed gone (workers/protection.py) those that are gone, which reopens entries on their
symbol. A position that is over counts a stop's fill as its own when it was the one the stop closed
(workers/attribution.py), whosever stop it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchanges import sync as exchange_loop
from exchanges.base import (
    Exchange,
    ExchangeError,
    ExchangePosition,
    ExchangeUnavailable,
    Order,
    OrderSide,
    OutcomeUnknown,
)
from exchanges.okx import counts as okx_counts
from statemachines.intents import IntentAction, client_order_id, parse_client_order_id, unprotect_intent
from statemachines.position import Position, Side, new_position_id
from workers import attribution, settlement
from workers.relay import job_in_flight
from workers.stop_sweep import REPROTECT_AFTER_S, StopSweep

if TYPE_CHECKING:
    from workers.engine import Engine

log = logging.getLogger("scalper.reconcile")

LOST_RECORD_MAX_AGE_S = 3600.0  # an entry older than this is not a record Redis just lost
GONE_TRIGGERS = frozenset({"entry_failed", "harvest_failed", "retry_close"})  # "the order is not there"
LOST_ATTEMPTS_MAX = 5  # close attempts past the record's that are looked for (each one is one query)
_READ_ERRORS = (ExchangeUnavailable, OutcomeUnknown, ExchangeError, OSError, asyncio.TimeoutError)
__all__ = ["GONE_TRIGGERS", "LOST_RECORD_MAX_AGE_S", "REPROTECT_AFTER_S", "Reconciler", "Report"]


@dataclass
class Report:
    exchange_known: bool = True
    why: str = ""
    corrections: list[tuple[str, str, str]] = field(default_factory=list)  # (position id, trigger, reason)
    adopted: list[str] = field(default_factory=list)
    cancelled_stops: list[str] = field(default_factory=list)
    stops_gone: list[str] = field(default_factory=list)  # confirmed gone: forgotten from the stop record
    reprotected: list[str] = field(default_factory=list)  # stop missing: its job handed over again


def entry_attempt(entries: list[Order]) -> int:
    """The highest entry attempt among a position's entry orders."""
    return max(cid.attempt for o in entries if (cid := parse_client_order_id(o.cl_ord_id)))


def fees(orders: list[Order]) -> Decimal:
    return sum((o.fee for o in orders), Decimal(0))


class Reconciler(StopSweep):
    def __init__(
        self, exchange: Exchange | None = None, *, unknown_positions: str = "adopt", dry_run: bool = False,
        exchange_factory: Callable[[], Exchange] | None = None,
    ) -> None:  # fmt: skip
        """`exchange_factory`: the client is made on first use, on the thread that runs the passes (the
        engine's exchange I/O thread: an async client belongs to its thread's loop)."""
        if exchange is None and exchange_factory is None:
            raise ValueError("an exchange or an exchange_factory is needed")
        self._exchange = exchange
        self._exchange_factory = exchange_factory
        self.unknown_positions = unknown_positions
        self.dry_run = dry_run
        self.last: Report | None = None
        self._reconnected_at = ""
        self._lost_sweep_due = False  # look for positions whose records Redis lost (set on taking a shard)
        self._restored_by_id: set[str] = set()  # open positions whose lost records were restored

    @property
    def exchange(self) -> Exchange:
        if self._exchange is None:
            assert self._exchange_factory is not None
            self._exchange = self._exchange_factory()
        return self._exchange

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return exchange_loop.run(coro, timeout=10)

    def due_to_reconnect(self, engine: Engine) -> bool:
        """True once after the private stream (or the paper venue) reported a reconnect."""
        raw = engine.client.hget(engine.keys.exchange(), "reconnected_at")
        stamp = "" if raw is None else raw.decode()
        if stamp and stamp != self._reconnected_at:
            self._reconnected_at = stamp
            return True
        return False

    def sweep_lost_records(self) -> None:
        """Look for records Redis lost on the next pass (as on taking a shard)."""
        self._lost_sweep_due = True

    @property
    def sweep_pending(self) -> bool:
        """Records Redis may have lost are still to be looked for (at a start, or after a failed sweep)."""
        return self._lost_sweep_due

    def reconcile(self, engine: Engine, now: float, at_start: bool = False) -> Report:
        """One pass. `at_start` (the engine took the shard): also look for records Redis lost."""
        report = Report()
        # Taken now and given back on failure: a sweep asked for while this pass runs is not lost.
        sweep, self._lost_sweep_due = self._lost_sweep_due or at_start, False
        try:
            exch_positions = self._run(self.exchange.positions())
        except _READ_ERRORS as err:
            report.exchange_known, report.why = False, f"positions unreadable: {type(err).__name__}: {err}"
            self._lost_sweep_due |= sweep
            self._mark(engine, report)
            self.last = report  # the failed pass is the latest news, not the previous successful one
            return report
        held = {(p.inst_id, p.side): p for p in exch_positions if p.size > 0 and p.inst_id in engine.book}
        mine: dict[tuple[str, str], list[Position]] = {}
        for pos in engine.live_positions():
            mine.setdefault((pos.symbol, pos.side.value), []).append(pos)
        for key, group in mine.items():
            for pos in group:
                exch: Any = held.get(key)
                if exch is not None and len(group) > 1:
                    exch = settlement.UNKNOWN  # several bot positions share one exchange position: no resize
                self._settle_one(engine, pos, exch, now, report)
        for key, ex_pos in held.items():
            if key in mine:
                continue
            if engine.symbol_quarantined(ex_pos.inst_id):
                # It may be the position whose hash cannot be read: never adopted twice, left to its stop.
                report.why = f"{ex_pos.inst_id}: a position cannot be read; the exchange's is left alone"
                continue
            self._unknown(engine, ex_pos, now, report)
        if sweep and not self.dry_run:
            try:
                self._restore_closed_records(engine, set(held), now, report)
            except _READ_ERRORS as err:  # due again on the next pass
                self._lost_sweep_due = True
                log.warning("recent orders unreadable (%s): the sweep for lost records waits", err)
            else:
                self._after_a_fresh_redis(engine, report)
        self._orphan_stops(engine, report)
        self._mark(engine, report)
        self.last = report
        return report

    def _settle_one(self, engine: Engine, pos: Position, exch: Any, now: float, report: Report) -> None:
        cid = settlement.in_flight_order_id(pos)
        order: Any = None
        if cid:
            try:
                order = self._run(self.exchange.get_order(pos.symbol, cid))
            except _READ_ERRORS:
                order = settlement.UNKNOWN
        st = settlement.settle(pos, order, exch, engine.wall(), engine.cfg[pos.symbol])
        if not st:
            return
        if st.trigger in GONE_TRIGGERS and order is None and self._job_in_flight(engine, cid):
            return  # "never reached the exchange" cannot be concluded while its request may still land
        if st.trigger in ("external_close", "close_filled"):
            try:
                st = self._with_exchange_totals(pos, st)
            except _READ_ERRORS as err:  # settling without all its fills would lose some: next pass
                log.warning("%s: its orders' fills unreadable (%s); next pass", pos.id, err)
                return
        if not self.dry_run and not engine.lease.keep():
            report.why = "lease lost during the pass"
            return  # another engine owns the shard now: it settles the rest
        report.corrections.append((pos.id, st.trigger or "cancel", st.reason))
        if self.dry_run:
            return
        if st.cancel_cl_ord_id:
            try:
                self._run(self.exchange.cancel_order(pos.symbol, st.cancel_cl_ord_id))
            except _READ_ERRORS as err:
                log.warning("cancel %s failed: %s", st.cancel_cl_ord_id, err)
        if st.trigger:
            engine.settle(pos, st, now)

    def _job_in_flight(self, engine: Engine, cl_ord_id: str) -> bool:
        cid = parse_client_order_id(cl_ord_id)
        return cid is not None and job_in_flight(engine.client, cid.action, cl_ord_id, time.time())

    def _with_exchange_totals(self, pos: Position, st: settlement.Settlement) -> settlement.Settlement:
        """The position is over at the exchange: its realized PnL and fees become the exchange's sums over
        every order it sent, not the record's running total plus the last order. Fills the record missed
        are in those sums: our protective stop's, when it is what flattened the position; a close from an
        earlier attempt that arrived after its retry was decided; and harvests and closes sent under
        attempts after the record's own, whose transitions a restarted Redis lost (appendfsync everysec: up
        to its last second). Client ids are deterministic, so each is asked for; past the record's harvest
        and close attempts, in turn until one is not there, and beyond a gap through the exchange's recent
        orders. A few reads, once per position, off the hot path."""
        get = self.exchange.get_order
        orders = [self._run(get(pos.symbol, client_order_id(pos.id, action, n)))
                  for action, last in ((IntentAction.OPEN, pos.entry_attempt),
                                       (IntentAction.HARVEST, pos.harvests_done),
                                       (IntentAction.CLOSE, pos.close_attempt))
                  for n in range(1, last + 1)]  # fmt: skip
        notes = []
        for action, last in ((IntentAction.HARVEST, pos.harvests_done),
                             (IntentAction.CLOSE, pos.close_attempt)):  # fmt: skip
            for attempt in range(last + 1, last + 1 + LOST_ATTEMPTS_MAX):
                order = self._run(get(pos.symbol, client_order_id(pos.id, action, attempt)))
                if order is None:
                    break
                orders.append(order)
                notes.append(f"{action.value} attempt {attempt} unrecorded, filled {order.filled}")
        found = [o for o in orders if o is not None]
        # Past a gap in the attempts (close 1 never reached the exchange, close 2 filled, and a rewound
        # Redis lost both transitions) the asking stops: the exchange's recent orders of this position find
        # the rest, in one read.
        have = {o.cl_ord_id for o in found}
        for order in self._run(self.exchange.recent_orders(pos.symbol)):
            cid = parse_client_order_id(order.cl_ord_id)
            if (cid is None or cid.position_id != pos.id or cid.action is IntentAction.PROTECT
                    or order.cl_ord_id in have or order.filled <= 0):  # fmt: skip
                continue
            found.append(order)
            have.add(order.cl_ord_id)
            notes.append(f"{cid.action.value} attempt {cid.attempt} unrecorded, filled {order.filled}")
        stop_fills, stop_notes = self._stop_fills(pos, found)
        found += stop_fills
        notes = stop_notes + notes
        pnl, fee = sum((o.pnl for o in found), Decimal(0)), fees(found)
        recorded = (pos.realized_pnl + (st.kwargs.get("pnl") or 0), pos.fees + (st.kwargs.get("fee") or 0))
        if (pnl, fee) == recorded:
            return st
        notes = notes or ["fills its record missed"]
        kwargs = {**st.kwargs, "pnl": pnl - pos.realized_pnl, "fee": fee - pos.fees}
        return settlement.Settlement(st.trigger, f"{st.reason} ({'; '.join(notes)})", kwargs)

    def _stop_fills(self, pos: Position, own: list[Order]) -> tuple[list[Order], list[str]]:
        """The protective stops' fills that closed this position, with a note for each: its own stop's,
        unless a later position had opened when it filled (then it closed that one); and those of earlier
        positions' stops that outlived them and filled during its life. The exchange's recent orders are
        read only when a stop of ours may have closed some of it."""
        stop = self._run(self.exchange.stop_fill(pos.symbol, unprotect_intent(pos).cl_ord_id))
        own_stop = stop if stop is not None and stop.filled > 0 else None
        side = pos.side.value
        entries = attribution.entry_times(own, side)
        if not entries:  # adopted: no entry of ours, so no start to its life; its own stop is its own
            return ([own_stop], ["protective stop filled"]) if own_stop else ([], [])
        if own_stop is None and attribution.closed_by_itself(own, side):
            return [], []
        recent = self._run(self.exchange.recent_orders(pos.symbol))
        entries = attribution.entry_times(recent, side) | entries
        fills, notes = [], []
        if own_stop is not None and attribution.owner(own_stop, entries) == pos.id:
            fills.append(own_stop)
            notes.append("protective stop filled")
        elif own_stop is not None:
            notes.append("its protective stop filled after a later position opened: that one's")
        for order in attribution.stop_fills_of(pos.id, side, recent, entries):
            fills.append(order)
            notes.append(f"protective stop {attribution.stop_of(order)} of an earlier position filled")
        return fills, notes

    def _unknown(self, engine: Engine, ex: ExchangePosition, now: float, report: Report) -> None:
        """An exchange position no bot position accounts for (manual trade, lost state)."""
        policy = self.unknown_positions
        report.corrections.append(
            ("", f"unknown:{policy}", f"{ex.inst_id} {ex.side} {ex.size} @ {ex.avg_px}")
        )
        if policy == "ignore" or self.dry_run:
            return
        lost = self._lost_entry(engine, ex)
        pos = Position(
            id=lost[0] if lost else new_position_id(now), symbol=ex.inst_id, side=ex.side,  # type: ignore[arg-type]
            state_since=now, wall_since=engine.wall(), entry_size=ex.size, leverage=int(ex.lever),
            entry_attempt=entry_attempt(lost[1]) if lost else 0,
        )  # fmt: skip
        if lost:
            self._restored_by_id.add(pos.id)
        why = "record lost, restored by its entry's order id" if lost else "adopted unknown exchange position"
        # Adopted as an entry that already filled: the same path as our own fills, with fresh stops; no
        # entry intent, since the position already exists at the exchange.
        engine.store.create(pos, reason=f"{why} ({policy})", ts=now)
        engine.adopt(pos)
        fee = fees(lost[1]) if lost else Decimal(0)
        fill = settlement.Settlement("entry_filled", "adopted", {"price": ex.avg_px, "size": ex.size,
                                                                   "fee": fee})  # fmt: skip
        engine.settle(pos, fill, now)
        if policy == "close":
            # Persisted, not only in memory: a crash before the next tick must not turn "close" into "adopt".
            engine.store.request_close(pos.id, "unknown exchange position")
            pos.close_request = "unknown exchange position"
        report.adopted.append(pos.id)

    def _lost_entry(self, engine: Engine, ex: ExchangePosition) -> tuple[str, list[Order]] | None:
        """The id and entry orders of a recent filled entry of ours on this instrument and side whose
        position has no record in Redis: a record a restarted Redis lost (appendfsync everysec keeps all
        but the last second). Restored under its own id, its fills stay its own. None when the orders
        cannot be read or none fits: then it is adopted under a new id, as any unknown position."""
        try:
            lost = self._lost_records(engine, ex.inst_id)
        except _READ_ERRORS as err:
            log.warning("recent orders on %s unreadable (%s): adopting under a new id", ex.inst_id, err)
            return None
        side = OrderSide.BUY if ex.side == "long" else OrderSide.SELL
        return next(((pid, entries) for pid, entries in lost.items() if entries[0].side is side), None)

    def _after_a_fresh_redis(self, engine: Engine, report: Report) -> None:
        """Redis had no trace of this shard's engine. If the exchange has orders of ours Redis knows nothing
        of, it came back empty (or rolled back past the marker), not new: entries wait as after any restart,
        and the day's records were restored above, which rebuilt the daily loss and the loss streaks."""
        if not engine.redis_fresh:
            return
        engine.redis_fresh = False
        restored = [pid for pid, trigger, _ in report.corrections if trigger == "restored"]
        restored += [pid for pid in report.adopted if pid in self._restored_by_id]
        if restored:
            engine.hold_entries(f"Redis had no record of {len(restored)} of today's positions at the "
                                "exchange (it came back empty or rolled back); restored from its orders")

    def _lost_records(self, engine: Engine, symbol: str,
                      recent: list[Order] | None = None) -> dict[str, list[Order]]:  # fmt: skip
        """Recent filled entry orders of ours on the symbol, by position id, newest first, for the ids that
        have no record in Redis. Read errors propagate. Recent: the last hour; the whole UTC day when
        Redis had no trace of this shard (it may have come back empty: the day's positions rebuild its risk
        state)."""
        since_ms = self.lost_since_ms(engine)
        entries: dict[str, list[Order]] = {}
        if recent is None:
            recent = self._run(self.exchange.recent_orders(symbol, self.lost_since_ms(engine)))
        for order in recent:  # newest first
            cid = parse_client_order_id(order.cl_ord_id)
            if cid and cid.action is IntentAction.OPEN and order.filled > 0 and order.u_time_ms >= since_ms:
                entries.setdefault(cid.position_id, []).append(order)
        # Lost: neither its hash nor its transition log is there. A log without its hash is a record damaged
        # by hand (a flagged position's hash deleted, as its log line allows): restoring it under its own id
        # would collide with that log (the engine failed to start, seen by an outside read of the code), so
        # what it held is adopted under a new id like any unknown exchange position.
        known = engine.client.exists
        return {pid: e for pid, e in entries.items()
                if not known(engine.keys.pos(symbol, pid), engine.keys.log(symbol, pid))}  # fmt: skip

    @staticmethod
    def lost_since_ms(engine: Engine) -> int:
        """How far back a lost record is looked for: the last hour; the whole UTC day when Redis had no trace
        of this shard (it may have come back empty: the day's positions rebuild its risk state)."""
        since = engine.wall() - LOST_RECORD_MAX_AGE_S
        if engine.redis_fresh:
            since = min(since, engine.wall() - engine.wall() % 86_400)
        return int(since * 1000)

    def _restore_closed_records(self, engine: Engine, held: set[tuple[str, str]], now: float,
                                report: Report) -> None:  # fmt: skip
        """Positions opened and closed inside the second a restarted Redis lost have no record, and nothing
        open at the exchange to adopt; their orders there still name them. Each is restored, closed, with
        the exchange's PnL and fees, so that no fill of ours belongs to no record (and the daily loss and
        loss streak count it). One read of recent orders per symbol, when the engine takes the shard."""
        for symbol in list(engine.book):
            # Every order of the window, however many: the latest page alone (100 at OKX) misses the
            # early ones of a busy day (the long chaos run, OKX seed 103: two positions never restored).
            recent = self._run(self.exchange.recent_orders(symbol, self.lost_since_ms(engine)))
            last_ms: dict[str, int] = {}
            for order in recent:
                if cid := parse_client_order_id(order.cl_ord_id):
                    last_ms[cid.position_id] = max(last_ms.get(cid.position_id, 0), order.u_time_ms)
            # Oldest first, each closed at the time of its last order: the loss streak and the UTC day of
            # every close come out as they were (the daily loss limit counts them on their own day).
            for pid, filled in sorted(self._lost_records(engine, symbol, recent).items()):
                side = Side.LONG if filled[0].side is OrderSide.BUY else Side.SHORT
                own = [o for o in recent if o.cl_ord_id.startswith(pid)]  # its ids begin with its own
                if (symbol, side.value) in held and not attribution.closed_by_itself(own, side.value):
                    continue  # may be (part of) the position held there: adopted above
                size = sum((o.filled for o in filled), Decimal(0))
                pos = Position(id=pid, symbol=symbol, side=side, state_since=now, wall_since=engine.wall(),
                               entry_size=size, leverage=engine.cfg[symbol].risk.leverage,
                               entry_attempt=entry_attempt(filled))  # fmt: skip
                engine.store.create(pos, reason="record lost, restored from its orders", ts=now)
                engine.adopt(pos)
                fill = {"price": filled[0].avg_px or Decimal(0), "size": size, "fee": fees(filled)}
                engine.settle(pos, settlement.Settlement("entry_filled", "restored", fill), now)
                gone = settlement.Settlement("external_close", "record lost; flat at the exchange")
                closed_at = last_ms.get(pid, 0) / 1000 or now
                engine.settle(pos, self._with_exchange_totals(pos, gone), min(closed_at, now))
                report.corrections.append((pid, "restored", "record lost; flat at the exchange"))

    def _mark(self, engine: Engine, report: Report) -> None:
        if self.dry_run:
            return
        state = "ok" if report.exchange_known else "unknown"
        # The verdict, and with it the counters of /metrics (statemachines/counters.py): the corrections
        # by kind, and what this process's exchange client counted (rate-limit replies).
        pipe = engine.client.pipeline(transaction=False)
        pipe.hset(engine.keys.exchange(), mapping={"state": state, "since": repr(time.time()),
                                                   "why": report.why})  # fmt: skip
        for _pid, kind, _why in report.corrections:
            pipe.hincrby(engine.keys.metric("corrections"), kind, 1)
        okx_counts.write_pending(pipe, engine.keys)
        pipe.execute()
        engine.exchange_known = report.exchange_known
        if not report.exchange_known:
            log.error("exchange unreadable, entries halted: %s", report.why)

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

The pass is here; its parts with a job of their own are mixins: the stop sweep (workers/stop_sweep.py), the
exchange's sums for a position that is over (workers/exchange_totals.py), and records Redis lost, found again
by the exchange's orders (workers/lost_records.py).
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
from statemachines.intents import parse_client_order_id
from statemachines.position import Position, new_position_id
from workers import settlement
from workers.exchange_totals import ExchangeTotals, fees
from workers.lost_records import LostRecords, entry_attempt
from workers.relay import job_in_flight
from workers.stop_sweep import StopSweep

if TYPE_CHECKING:
    from workers.engine import Engine

log = logging.getLogger("scalper.reconcile")

GONE_TRIGGERS = frozenset({"entry_failed", "harvest_failed", "retry_close"})  # "the order is not there"
_READ_ERRORS = (ExchangeUnavailable, OutcomeUnknown, ExchangeError, OSError, asyncio.TimeoutError)
__all__ = ["GONE_TRIGGERS", "Reconciler", "Report"]


@dataclass
class Report:
    exchange_known: bool = True
    why: str = ""
    corrections: list[tuple[str, str, str]] = field(default_factory=list)  # (position id, trigger, reason)
    adopted: list[str] = field(default_factory=list)
    cancelled_stops: list[str] = field(default_factory=list)
    stops_gone: list[str] = field(default_factory=list)  # confirmed gone: forgotten from the stop record
    reprotected: list[str] = field(default_factory=list)  # stop missing: its job handed over again


class Reconciler(StopSweep, ExchangeTotals, LostRecords):
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

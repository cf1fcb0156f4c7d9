"""The reconciler's pass over the protective stops (a mixin of workers/reconciler.Reconciler): cancel the
live stops of positions that are over (an orphaned stop could close the symbol's next position), forget the
recorded ones confirmed gone (entries on the symbol wait for them, workers/protection.py), and hand a live
position whose stop is missing its protect job again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from exchanges.base import Exchange, ExchangeError, ExchangeUnavailable, OutcomeUnknown
from statemachines.intents import IntentAction, client_order_id, parse_client_order_id
from statemachines.lifecycle import State
from workers.protection import PLACED, StopRecord, may_land, stop_position
from workers.relay import job_in_flight

if TYPE_CHECKING:
    from workers.engine import Engine
    from workers.reconciler import Report

log = logging.getLogger("scalper.reconcile")

# A position without its stop this long after its last transition lost its protect job: placed again.
REPROTECT_AFTER_S = 10.0
_PROTECTED = frozenset({State.OPEN, State.TRAILING, State.HARVESTING})
_READ_ERRORS = (ExchangeUnavailable, OutcomeUnknown, ExchangeError, OSError, asyncio.TimeoutError)


class StopSweep:
    dry_run: bool

    if TYPE_CHECKING:  # the reconciler's (a stub here would shadow them)

        @property
        def exchange(self) -> Exchange: ...
        def _run(self, coro: Coroutine[Any, Any, Any]) -> Any: ...

    def _orphan_stops(self, engine: Engine, report: Report) -> None:
        """Protective stops whose position is over: cancel the live ones (an orphaned stop could close the
        symbol's next position), and forget those confirmed gone (entries on the symbol wait for them)."""
        record = StopRecord(engine.client, engine.keys)
        recorded = record.all(engine.book)  # read before the exchange: its answer is no older than this
        try:
            stops = self._run(self.exchange.stops())
        except _READ_ERRORS:
            return
        live = {p.id for p in engine.live_positions() if p.state != State.CLOSED}
        live_stops = set()
        for stop in stops:
            cid = parse_client_order_id(stop.algo_cl_ord_id)
            if cid is None or cid.action is not IntentAction.PROTECT:
                continue  # not placed by the bot (a stop the user set by hand): never ours to cancel
            if stop.state != "live":
                continue
            live_stops.add(stop.algo_cl_ord_id)
            if engine.symbol_quarantined(stop.inst_id):
                continue  # a position there cannot be read: this may be its stop, the one thing it has left
            if stop.inst_id in engine.book and cid.position_id not in live:
                report.cancelled_stops.append(stop.algo_cl_ord_id)
                if not self.dry_run:
                    try:
                        self._run(self.exchange.cancel_stop(stop.inst_id, stop.algo_cl_ord_id))
                    except _READ_ERRORS as err:
                        log.warning("cancel orphan stop %s failed: %s", stop.algo_cl_ord_id, err)
                    else:
                        record.forget(stop.inst_id, stop.algo_cl_ord_id)
                        report.stops_gone.append(stop.algo_cl_ord_id)
        self._forget_gone_stops(engine, record, recorded, live, live_stops, report)
        self._missing_stops(engine, recorded, live_stops, report)

    def _missing_stops(self, engine: Engine, recorded: dict[str, dict[str, str]], live_stops: set[str],
                       report: Report) -> None:  # fmt: skip
        """A live position without its live protective stop, past the time its job takes: the job was lost
        (a worker died while Redis refused writes, so RQ could neither finish nor retry it). It is handed
        over again; the job looks for the stop first, so a second one never sends two. Not while a request
        for it may still land, or its job is running or waiting for a retry, nor once it was placed: a
        placed stop that is not live triggered or was cancelled, and its id is not sent again."""
        now = engine.wall()
        for pos in engine.live_positions():
            if pos.state not in _PROTECTED or pos.size <= 0 or engine.symbol_quarantined(pos.symbol):
                continue
            stop_id = client_order_id(pos.id, IntentAction.PROTECT, 1)
            if stop_id in live_stops or now - (pos.wall_since or now) < REPROTECT_AFTER_S:
                continue
            value = recorded.get(pos.symbol, {}).get(stop_id)
            if value == PLACED or (value is not None and may_land(value, now)):
                continue  # placed once and gone since (triggered or cancelled): an id is never sent twice
            if job_in_flight(engine.client, IntentAction.PROTECT, stop_id, time.time()):
                continue
            report.reprotected.append(pos.id)
            if not self.dry_run:
                engine.reprotect(pos)

    def _forget_gone_stops(self, engine: Engine, record: StopRecord, recorded: dict[str, dict[str, str]],
                           live: set[str], live_stops: set[str], report: Report) -> None:  # fmt: skip
        """Recorded stops of positions that are over, not live at the exchange (read after the record), and
        no longer able to land: gone, whether they were cancelled, triggered or never placed."""
        now = engine.wall()
        for symbol, stops in recorded.items():
            if engine.symbol_quarantined(symbol):
                continue  # as above: nothing there is known to be over
            for stop_id, value in stops.items():
                if stop_position(stop_id) in live or stop_id in live_stops or may_land(value, now):
                    continue
                if not self.dry_run and record.forget(symbol, stop_id, if_still=value):
                    report.stops_gone.append(stop_id)

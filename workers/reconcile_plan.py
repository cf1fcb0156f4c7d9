"""A reconciler pass off the tick path: planned on the exchange I/O thread, applied on the engine's.

The reconciler (workers/reconciler.py) reads the exchange and decides each correction through the settlement
table. Run on the engine's tick loop, one slow exchange call (up to 10 s) held up every symbol's exits. Now a
pass runs on the I/O thread (workers/exchange_io.py) against a `PlanningView` of the engine: copies of its
live positions taken between ticks, the settings and Redis; whatever the pass would change in the engine
(a settlement, a new or restored position, a close request, the exchange's state) is recorded as data. The
engine thread then applies that plan in order (`Plan.apply`), each settlement only if its position is still
at the version the pass saw: a position that moved meanwhile is left to the next pass, and the compare-and-set
of every transition guards the store anyway. Exchange calls the pass makes itself (cancelling a timed-out
order or an orphaned stop) stay on the I/O thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transitions import MachineError

from statemachines.lifecycle import State
from statemachines.machine import PositionMachine
from statemachines.position import Position
from workers import settlement

if TYPE_CHECKING:
    from workers.engine import Engine
    from workers.settlement import Settlement

log = logging.getLogger("scalper.reconcile")


class _HeldLease:
    """The lease as the planning pass sees it: held. The engine checks the real one before applying."""

    def keep(self) -> bool:
        return True


@dataclass
class Plan:
    """What a pass decided, in order: ("create", id, kwargs), ("adopt", id), ("settle", id, version,
    settlement, now), ("request_close", id, reason), ("hold", why), ("reprotect", id); and the engine flags
    it set."""

    actions: list[tuple[Any, ...]] = field(default_factory=list)
    created: dict[str, Position] = field(default_factory=dict)  # positions the pass made, as first stored
    exchange_known: bool | None = None
    redis_fresh: bool | None = None

    def apply(self, engine: Engine) -> int:
        """On the engine thread: apply the actions; returns how many settlements were applied. What the
        pass read of the exchange (known or not) holds whoever owns the shard; its changes only for the
        owner."""
        if self.exchange_known is not None:
            engine.exchange_known = self.exchange_known
        if self.redis_fresh is not None:
            engine.redis_fresh = self.redis_fresh
        if self.actions and not engine.lease.keep():
            log.info("lease lost: the pass's plan is left to the shard's new owner")
            return 0
        applied = 0
        stored: set[str] = set()
        for action in self.actions:
            kind = action[0]
            if kind == "create":
                _, pid, kwargs = action
                if engine.find(pid) is None:
                    engine.store.create(self.created[pid], **kwargs)
                    stored.add(pid)
            elif kind == "adopt":
                if action[1] in stored:
                    engine.adopt(self.created[action[1]])
            elif kind == "settle":
                _, pid, version, st, now = action
                pos = engine.find(pid)
                if pos is None or pos.version != version:
                    continue  # moved since the pass read it (or gone): the next pass looks again
                engine.settle(pos, st, now)
                applied += 1
            elif kind == "request_close":
                _, pid, reason = action
                if engine.store.request_close(pid, reason) and (pos := engine.find(pid)) is not None:
                    pos.close_request = reason
            elif kind == "hold":
                engine.hold_entries(action[1])
            elif kind == "reprotect" and (pos := engine.find(action[1])) is not None:
                engine.reprotect(pos)
        return applied


def _fresh(pos: Position) -> Position:
    """A copy with no machine bound to it (a plain copy would carry the engine machine's trigger methods)."""
    return Position.from_hash(pos.to_hash())


class _PlanningStore:
    """The writes the reconciler asks of the store, recorded; reads go to the real store."""

    def __init__(self, store: Any, plan: Plan) -> None:
        self._store, self._plan = store, plan

    def create(self, pos: Position, **kwargs: Any) -> None:
        # As the real create does to the object: the pass's later steps see it stored at version 1.
        now = kwargs.get("ts") or time.time()
        pos.created_at = pos.created_at or now
        pos.state_since = pos.state_since or pos.created_at
        pos.version = 1
        self._plan.created[pos.id] = _fresh(pos)
        self._plan.actions.append(("create", pos.id, kwargs))

    def request_close(self, position_id: str, reason: str = "manual") -> bool:
        self._plan.actions.append(("request_close", position_id, reason))
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class PlanningView:
    """What the reconciler sees of the engine while it plans on the I/O thread (see the module doc)."""

    def __init__(self, engine: Engine) -> None:
        # Taken on the engine thread, between ticks: the pass reads these copies, never the live objects.
        self.plan = Plan()
        self.client, self.keys, self.cfg = engine.client, engine.keys, engine.cfg
        self.wall: Callable[[], float] = engine.wall
        self.lease = _HeldLease()
        self.store = _PlanningStore(engine.store, self.plan)
        self.exchange_known = engine.exchange_known
        self.redis_fresh = engine.redis_fresh
        self._quarantined = frozenset(engine.bad_positions.values())
        self._atr = {s: ind.atr for s, ind in engine.ind.items()}
        # Settlements move these copies in memory only (a machine with no store), so that what the pass
        # reads after one (a restored record's fees once its entry filled) is what the engine will hold.
        self._pm = PositionMachine(store=None, clock=engine.now, wall=engine.wall)
        self.book: dict[str, dict[str, Position]] = {
            s: {pid: _fresh(p) for pid, p in b.items()} for s, b in engine.book.items()
        }

    def live_positions(self) -> list[Position]:
        return [p for b in self.book.values() for p in b.values()]

    def symbol_quarantined(self, symbol: str) -> bool:
        return symbol in self._quarantined

    def adopt(self, pos: Position) -> None:
        self.book.setdefault(pos.symbol, {})[pos.id] = pos
        self.plan.actions.append(("adopt", pos.id))

    def settle(self, pos: Position, st: Settlement, now: float) -> None:
        """Recorded with the version the pass saw, then applied to the copy in memory."""
        if not st.trigger:
            return
        version = pos.version
        try:
            settlement.apply(self._pm, pos, st, self.cfg[pos.symbol], now=now, atr=self._atr.get(pos.symbol))
        except MachineError:
            return  # not a legal move from the state the pass saw: nor would it be for the engine
        self.plan.actions.append(("settle", pos.id, version, st, now))
        if pos.state == State.CLOSED:
            self.book[pos.symbol].pop(pos.id, None)

    def hold_entries(self, why: str) -> None:
        self.plan.actions.append(("hold", why))

    def reprotect(self, pos: Position) -> None:
        self.plan.actions.append(("reprotect", pos.id))

    def finish(self) -> Plan:
        self.plan.exchange_known = self.exchange_known
        self.plan.redis_fresh = self.redis_fresh
        return self.plan


class ReconcilePasses:
    """When the engine's passes run, and what each carries. A pass every `every_s`, after a reconnect, when
    an event asked for one (`ask`), and when an entry hold ends: then it sweeps for lost records first, and
    entries reopen only once it has read the exchange."""

    def __init__(self, engine: Engine, every_s: float) -> None:
        self.engine = engine
        self.every_s = every_s
        self.last = 0.0  # wall time the last pass was asked for
        self.at_start = False
        self.hold_pass = ""  # "asked" / "running": the pass that ends an entry hold
        if engine.reconciler is not None:  # asked for by `schedule`, never on its own
            inf = float("inf")
            engine.io.add("reconcile", inf, self._plan, self._apply, self._prepare, first_in_s=inf)

    def ask(self) -> None:
        """A pass on the next loop turn (an order event said the position is over at the exchange)."""
        self.last = 0.0

    def first(self) -> None:
        """On taking the shard: a pass that also looks for records Redis lost. Threaded, entries wait for
        it (the exchange is unknown until then) while exits go on; inline (tests, tools), it runs now."""
        engine = self.engine
        if engine.reconciler is None:
            return
        self.at_start = True
        if engine.io.threaded:
            engine.io.request("reconcile")
        else:
            engine.io.run_now("reconcile")
        self.last = engine.wall()

    def schedule(self, wall: float) -> None:
        engine, rec = self.engine, self.engine.reconciler
        hold_over = bool(engine.entries_held_until) and wall >= engine.entries_held_until
        if rec is None:
            if hold_over:
                engine.entries_held_until = 0.0
            return
        if hold_over and not self.hold_pass:
            rec.sweep_lost_records()  # for records lost with orders that landed during the hold
            self.hold_pass = "asked"
        elif self.hold_pass == "running" and not engine.io.busy("reconcile"):
            self.hold_pass = "asked"  # that pass failed before it could deliver: again
        due = wall - self.last >= self.every_s or rec.due_to_reconnect(engine)
        if (due or self.hold_pass == "asked") and not engine.io.busy("reconcile"):
            engine.check_same_redis()
            engine.io.request("reconcile")
            self.last = wall
        engine.io.poll()  # inline: the pass runs now; threaded: it is handed out, or delivered

    def _prepare(self) -> tuple[PlanningView, float, bool, bool]:
        """Engine thread: what the pass works on, copied between ticks."""
        at_start, self.at_start = self.at_start, False
        ends_hold = self.hold_pass == "asked"
        if ends_hold:
            self.hold_pass = "running"
        return PlanningView(self.engine), self.engine.now(), at_start, ends_hold

    def _plan(self, arg: tuple[PlanningView, float, bool, bool]) -> tuple[Plan, bool]:
        """I/O thread: the reconciler reads the exchange and decides; nothing of the engine changes."""
        view, now, at_start, ends_hold = arg
        assert self.engine.reconciler is not None
        self.engine.reconciler.reconcile(view, now, at_start=at_start)  # type: ignore[arg-type]
        return view.finish(), ends_hold

    def _apply(self, result: tuple[Plan, bool]) -> None:
        """Engine thread: apply what the pass decided. A pass that ended an entry hold reopens entries
        once it read the exchange (and did not itself find a reason to hold them again)."""
        plan, ends_hold = result
        engine = self.engine
        before = engine.entries_held_until
        plan.apply(engine)
        if engine.exchange_known and not getattr(engine.reconciler, "sweep_pending", False):
            # The engine is in step with the exchange, records Redis lost included (tools and the chaos
            # harness wait for this after a start; `since` is written before the pass is applied). Not if
            # Redis restarted under the pass: its sweep was for the server before (the engine starts again).
            engine.check_same_redis()
            engine.client.hset(engine.keys.exchange(), "settled_at", repr(time.time()))
        if ends_hold:
            self.hold_pass = ""
            if engine.exchange_known and engine.entries_held_until == before:
                engine.entries_held_until = 0.0

"""Records Redis lost, found again by the exchange's orders (a mixin of workers/reconciler.Reconciler).

A restarted Redis keeps all but its last second (appendfsync everysec); one that came back empty keeps
nothing. The exchange still has our orders, and their client ids name their positions: a filled entry of
ours with no record is a lost record. One still open at the exchange is restored by the pass under its own
id (`_lost_records`, through `Reconciler._unknown`); one opened and closed inside the lost window is restored
here, closed, with the exchange's PnL and fees, when the engine takes the shard. Read errors propagate: the
pass decides what they mean (the sweep is due again on its next run).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchanges.base import Exchange, Order, OrderSide
from statemachines.intents import IntentAction, parse_client_order_id
from statemachines.position import Position, Side
from workers import attribution, settlement
from workers.exchange_totals import fees

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from workers.engine import Engine
    from workers.reconciler import Report
    from workers.settlement import Settlement

LOST_RECORD_MAX_AGE_S = 3600.0  # an entry older than this is not a record Redis just lost


def entry_attempt(entries: list[Order]) -> int:
    """The highest entry attempt among a position's entry orders."""
    return max(cid.attempt for o in entries if (cid := parse_client_order_id(o.cl_ord_id)))


class LostRecords:
    _restored_by_id: set[str]  # open positions whose lost records the pass restored (the reconciler's)

    if TYPE_CHECKING:  # the reconciler's and ExchangeTotals' (a stub here would shadow them)

        @property
        def exchange(self) -> Exchange: ...
        def _run(self, coro: Coroutine[Any, Any, Any]) -> Any: ...
        def _with_exchange_totals(self, pos: Position, st: Settlement) -> Settlement: ...

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

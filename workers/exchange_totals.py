"""What a position that is over made, by the exchange's own sums (a mixin of workers/reconciler.Reconciler).

When the reconciler settles a position the exchange shows flat (closed by us, by its protective stop, or by
hand), its realized PnL and fees become the sums over every order of it the exchange has: the record's running
total misses fills it never heard of (a late close, a stop's fill, attempts a restarted Redis lost). A stop's
fill counts for the position it closed (workers/attribution.py). Read errors propagate: the pass decides what
they mean (the position is settled on a later pass).
"""

from __future__ import annotations

from collections.abc import Coroutine
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from exchanges.base import Exchange, Order
from statemachines.intents import IntentAction, client_order_id, parse_client_order_id, unprotect_intent
from statemachines.position import Position
from workers import attribution, settlement

LOST_ATTEMPTS_MAX = 5  # close attempts past the record's that are looked for (each one is one query)


def fees(orders: list[Order]) -> Decimal:
    return sum((o.fee for o in orders), Decimal(0))


class ExchangeTotals:
    if TYPE_CHECKING:  # the reconciler's (a stub here would shadow them)

        @property
        def exchange(self) -> Exchange: ...
        def _run(self, coro: Coroutine[Any, Any, Any]) -> Any: ...

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

"""The paper venue's protective stops (a mixin of exchanges/paper/exchange.PaperExchange), as OKX's
conditional algo orders: reduce-only, a market order on trigger. Placed, moved, resized, cancelled and read
(`stops`, `find_stop`, `stop_fill`) here; matching.py triggers them on the quotes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from exchanges.base import (
    DuplicateClientId,
    ExchangeError,
    Instrument,
    Order,
    OrderNotFound,
    OrderSide,
    StopOrder,
)
from exchanges.paper import ledger
from exchanges.paper.faults import Fault, FaultPlan, faulty
from exchanges.paper.ledger import check_id, check_px, check_size, closing_only
from exchanges.paper.matching import Matcher
from exchanges.paper.state import PaperState


class PaperStops:
    # PaperExchange's (exchange.py): its account, instruments, settings and matching engine; the fault plan
    # `faulty` plays on every method.
    state: PaperState
    insts: dict[str, Instrument]
    pos_mode: str
    matcher: Matcher
    faults: FaultPlan
    _partial: Fault | None
    clock: Callable[[], float]

    if TYPE_CHECKING:  # the exchange's (a stub here would shadow it)

        def _inst(self, inst_id: str) -> Instrument: ...

    @faulty("stop_fill")
    async def stop_fill(self, inst_id: str, algo_cl_ord_id: str) -> Order | None:
        """The order the stop placed when it triggered (as OKX: found through the stop, whose `order_ids`
        name it), or None when it placed none. The order carries the stop's id as its client id unless a
        pending order had that id, and as its `algo_cl_ord_id` always."""
        stop = self.state.stop(algo_cl_ord_id)
        if stop is None or stop.inst_id != inst_id or not stop.order_ids:
            return None
        for cl in (algo_cl_ord_id, f"algo{stop.algo_id}"):
            rec = self.state.order(cl)
            if rec is not None and rec.order.ord_id in stop.order_ids:
                return rec.order
        return None

    @faulty("stops")
    async def stops(self) -> list[StopOrder]:
        return self.state.snapshot().stops

    @faulty("find_stop")
    async def find_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder | None:
        stop = self.state.stop(algo_cl_ord_id)
        return stop if stop is not None and stop.inst_id == inst_id else None

    @faulty("place_stop")
    async def place_stop(
        self,
        inst_id: str,
        algo_cl_ord_id: str,
        side: OrderSide,
        trigger_px: Decimal,
        size: Decimal,
        pos_side: str | None = None,
    ) -> StopOrder:
        inst = self._inst(inst_id)
        check_id(algo_cl_ord_id, "algoClOrdId")
        ps = ledger.resolve_pos_side(self.pos_mode, pos_side)
        if ps != "net" and not closing_only(side == OrderSide.BUY, True, ps):
            raise ExchangeError("51000", f"Parameter side error: a {side} stop cannot close a {ps} position")
        check_size(size, inst.lot_sz, inst.min_sz)
        check_px(trigger_px, inst.tick_sz, "triggerPx")
        ledger.check_stop_trigger(side == OrderSide.SELL, trigger_px, self.matcher.mark(inst_id))
        if (old := self.state.stop(algo_cl_ord_id)) is not None and old.state == "live":
            raise DuplicateClientId("51016", "algoClOrdId already exists.")
        stop = StopOrder(
            inst_id=inst_id,
            algo_cl_ord_id=algo_cl_ord_id,
            algo_id=self.state.next_id(),
            side=side,
            trigger_px=trigger_px,
            size=size,
            pos_side=ps,
        )
        self.state.txn().stop(stop).commit()
        return stop

    @faulty("move_stop")
    async def move_stop(self, inst_id: str, algo_cl_ord_id: str, trigger_px: Decimal) -> StopOrder:
        stop = self._live_stop(inst_id, algo_cl_ord_id)
        check_px(trigger_px, self.insts[inst_id].tick_sz, "triggerPx")
        ledger.check_stop_trigger(stop.side == OrderSide.SELL, trigger_px, self.matcher.mark(inst_id))
        stop = replace(stop, trigger_px=trigger_px)
        self.state.txn().stop(stop).commit()
        return stop

    @faulty("resize_stop")
    async def resize_stop(self, inst_id: str, algo_cl_ord_id: str, size: Decimal) -> StopOrder:
        """OKX amend-algos newSz: the same stop, for a new size."""
        stop = self._live_stop(inst_id, algo_cl_ord_id)
        inst = self.insts[inst_id]
        check_size(size, inst.lot_sz, inst.min_sz)
        stop = replace(stop, size=size)
        self.state.txn().stop(stop).commit()
        return stop

    @faulty("cancel_stop")
    async def cancel_stop(self, inst_id: str, algo_cl_ord_id: str) -> None:
        stop = self._live_stop(inst_id, algo_cl_ord_id)
        self.state.txn().stop(replace(stop, state="canceled")).commit()

    def _live_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder:
        stop = self.state.stop(algo_cl_ord_id)
        if stop is None or stop.inst_id != inst_id or stop.state != "live":
            raise OrderNotFound("51603", "Order does not exist.")
        return stop

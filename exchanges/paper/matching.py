"""The matching half of PaperExchange: fills, cancels, stop triggers and liquidations on its account, and
the account marked to the latest quote (positions' mark, upl, margin ratio and liquidation price; balances).

Every method is synchronous, so nothing interleaves between a read and its write. The Matcher works on
its exchange's account, quotes and settings (read live, so a setting changed on the exchange applies at
once); the exchange validates requests and calls in here, and on every quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

from exchanges.base import (
    Balance,
    EventKind,
    ExchangePosition,
    Instrument,
    Order,
    OrderSide,
    OrderState,
    OrderType,
    StopOrder,
)
from exchanges.paper import ledger
from exchanges.paper.events import EventHub
from exchanges.paper.ledger import closing_only, fmt
from exchanges.paper.state import OrderRec, PosRec, pos_key

if TYPE_CHECKING:
    from exchanges.paper.exchange import PaperExchange


class Matcher:
    """PaperExchange's matching engine (`ex.matcher`, one per exchange); it pushes through `hub`."""

    def __init__(self, ex: PaperExchange, hub: EventHub) -> None:
        self.ex, self.hub = ex, hub

    def on_quote(self, inst: Instrument, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        """Fill crossed orders, trigger crossed stops, then liquidate, in that order; the quote is stored."""
        ex, inst_id = self.ex, inst.inst_id
        snap = ex.state.snapshot()
        moved = False  # did a fill or a trigger change the positions since the snapshot?
        for rec in snap.orders:
            if rec.order.inst_id == inst_id and (fill := self.price(rec.order, bid, ask, placing=False)):
                self.fill(rec, *fill, ts_ms)
                moved = True
        mark = (bid + ask) / 2
        for stop in snap.stops:
            sell = stop.side == OrderSide.SELL
            if stop.inst_id == inst_id and (mark <= stop.trigger_px if sell else mark >= stop.trigger_px):
                self.trigger(stop, ts_ms)
                moved = True
        for prec in (ex.state.snapshot() if moved else snap).positions.values():
            if prec.inst_id != inst_id:
                continue
            mmr = self.mmr(inst_id, prec.pos.size)
            if ledger.liquidated(prec.pos, mark, inst.ct_val, mmr, ex.taker_fee):
                self.liquidate(prec, mark, ts_ms)

    def price(
        self, order: Order, bid: Decimal, ask: Decimal, *, placing: bool
    ) -> tuple[Decimal, bool] | None:
        """(fill price, taker?) on this quote, or None when the order does not fill on it."""
        buy = order.side == OrderSide.BUY
        touch = ask if buy else bid
        taker_px = ledger.slipped(touch, buy, self.ex.slippage_bps)
        if order.ord_type == OrderType.MARKET:
            return taker_px, True
        limit = order.price or Decimal(0)
        if (touch > limit) if buy else (touch < limit):
            return None
        if placing:  # crossing on arrival: it takes liquidity, never beyond its limit
            return (min(taker_px, limit) if buy else max(taker_px, limit)), True
        return limit, False

    def fill(self, rec: OrderRec, px: Decimal, taker: bool, ts_ms: int) -> OrderRec:
        ex = self.ex
        o, inst = rec.order, ex.insts[rec.order.inst_id]
        buy = o.side == OrderSide.BUY
        snap = ex.state.snapshot()
        prec = snap.positions.get(pos_key(o.inst_id, o.pos_side))
        pos = prec.pos if prec else None
        remaining = o.size - o.filled
        sz = remaining
        if rec.partial is not None:  # injected: this first fill takes only part of the size
            part = inst.round_size(o.size * rec.partial)
            sz = part if 0 < part < remaining else remaining
        closing = closing_only(buy, o.reduce_only, o.pos_side)
        if closing:  # the position may have shrunk since the order was placed
            sz = min(sz, ledger.closable(pos, buy))
            if not sz:
                return self.cancel(rec, ts_ms)
        eff = ledger.apply_fill(
            pos,
            buy=buy,
            sz=sz,
            px=px,
            ct_val=inst.ct_val,
            lever=self.lever(o.inst_id, o.pos_side),
            fee_rate=ex.taker_fee if taker else ex.maker_fee,
            may_open=not closing,
        )
        acct = snap.account
        if eff.margin_added and acct.cash - acct.frozen + rec.frozen + eff.cash_delta < 0:
            return self.cancel(rec, ts_ms)  # the fill price left the held estimate too far behind
        filled = o.filled + sz
        state = OrderState.FILLED if filled == o.size else OrderState.PARTIALLY_FILLED
        release = rec.frozen if state == OrderState.FILLED else rec.frozen * sz / remaining
        order = replace(
            o,
            state=state,
            filled=filled,
            avg_px=((o.avg_px or 0) * o.filled + px * sz) / filled,
            fee=o.fee + eff.fee,
            pnl=o.pnl + eff.pnl,
            u_time_ms=ts_ms,
        )
        after = replace(rec, order=order, frozen=rec.frozen - release, partial=None)
        new_pos = None
        if eff.pos is not None:
            c_time = prec.c_time_ms if prec is not None and prec.pos.side == eff.pos.side else ts_ms
            new_pos = PosRec(o.inst_id, o.pos_side, eff.pos, c_time, ts_ms)
        trade = {
            "inst_id": o.inst_id,
            "cl_ord_id": o.cl_ord_id,
            "ord_id": o.ord_id,
            "trade_id": ex.state.next_id(),
            "side": o.side.value,
            "pos_side": o.pos_side,
            "px": fmt(px),
            "sz": fmt(sz),
            "fee": fmt(eff.fee),
            "pnl": fmt(eff.pnl),
            "exec_type": "T" if taker else "M",
            "liq": "0",
            "ts_ms": str(ts_ms),
        }
        acct = replace(acct, cash=acct.cash + eff.cash_delta, frozen=acct.frozen - release)
        txn = ex.state.txn().order(after).position(o.inst_id, o.pos_side, new_pos)
        txn.account(acct).fill(trade).commit()
        extra = {
            "fill_px": trade["px"],
            "fill_sz": trade["sz"],
            "trade_id": trade["trade_id"],
            "exec_type": trade["exec_type"],
        }
        self.hub.emit(EventKind.ORDER, ts_ms, orders=(order,), extra=extra)
        self.emit_position(new_pos, prec, ts_ms)
        self.emit_account(ts_ms)
        cancel_rest = rec.partial is not None and rec.rest == "cancel"
        if state == OrderState.PARTIALLY_FILLED and (cancel_rest or (closing and new_pos is None)):
            return self.cancel(after, ts_ms)  # injected "cancel the rest", or nothing left to reduce
        return after

    def cancel(self, rec: OrderRec, ts_ms: int) -> OrderRec:
        ex = self.ex
        order = replace(rec.order, state=OrderState.CANCELED, u_time_ms=ts_ms)
        after = replace(rec, order=order, frozen=Decimal(0), partial=None)
        acct = ex.state.account()
        ex.state.txn().order(after).account(replace(acct, frozen=acct.frozen - rec.frozen)).commit()
        self.hub.emit(EventKind.ORDER, ts_ms, orders=(order,))
        return after

    def trigger(self, stop: StopOrder, ts_ms: int) -> None:
        """The stop fires: a reduce-only market order, carrying the stop's algoClOrdId as its clOrdId
        (OKX reports it as algoClOrdId) unless a pending order already uses that id."""
        ex = self.ex
        pending = {r.order.cl_ord_id for r in ex.state.snapshot().orders}
        cl = stop.algo_cl_ord_id if stop.algo_cl_ord_id not in pending else f"algo{stop.algo_id}"
        order = Order(
            inst_id=stop.inst_id,
            cl_ord_id=cl,
            ord_id=ex.state.next_id(),
            side=stop.side,
            state=OrderState.LIVE,
            size=stop.size,
            reduce_only=True,
            pos_side=stop.pos_side,
            u_time_ms=ts_ms,
            algo_cl_ord_id=stop.algo_cl_ord_id,
        )
        rec = OrderRec(order=order, c_time_ms=ts_ms)
        effective = replace(stop, state="effective", order_ids=(order.ord_id,))  # OKX's ordIdList
        ex.state.txn().stop(effective).order(rec).commit()
        self.hub.emit(EventKind.ORDER, ts_ms, orders=(order,), extra={"algo_cl_ord_id": stop.algo_cl_ord_id})
        bid, ask, _ = ex.quotes[stop.inst_id]
        self.fill(rec, *(self.price(order, bid, ask, placing=True) or (bid, True)), ts_ms)

    def liquidate(self, prec: PosRec, mark: Decimal, ts_ms: int) -> None:
        """Forced close at the mark: the isolated margin is lost (pnl + penalty = −margin; it left cash at
        opening, so cash does not move) and the position's closing orders and stops are cancelled."""
        ex = self.ex
        pos, inst_id, ps = prec.pos, prec.inst_id, prec.pos_side
        loss, penalty = ledger.liquidation(pos, mark, ex.insts[inst_id].ct_val)
        side = OrderSide.SELL if pos.side == "long" else OrderSide.BUY
        order = Order(
            inst_id=inst_id,
            cl_ord_id="",
            ord_id=ex.state.next_id(),
            side=side,
            state=OrderState.FILLED,
            size=pos.size,
            filled=pos.size,
            avg_px=mark,
            reduce_only=True,
            pos_side=ps,
            fee=penalty,
            pnl=loss,
            u_time_ms=ts_ms,
        )
        trade_id = "-" + ex.state.next_id()  # OKX: liquidation fills have negative trade ids
        snap = ex.state.snapshot()
        txn = (
            ex.state.txn()
            .position(inst_id, ps, None)
            .fill(
                {
                    "inst_id": inst_id,
                    "cl_ord_id": "",
                    "ord_id": order.ord_id,
                    "trade_id": trade_id,
                    "side": side.value,
                    "pos_side": ps,
                    "px": fmt(mark),
                    "sz": fmt(pos.size),
                    "fee": fmt(penalty),
                    "pnl": fmt(loss),
                    "exec_type": "T",
                    "liq": "1",
                    "ts_ms": str(ts_ms),
                }
            )
        )
        for stop in snap.stops:
            if stop.inst_id == inst_id and stop.pos_side == ps:
                txn.stop(replace(stop, state="canceled"))
        txn.commit()
        extra = {"category": "full_liquidation", "liq_penalty": fmt(penalty), "trade_id": trade_id}
        self.hub.emit(EventKind.ORDER, ts_ms, orders=(order,), extra=extra)
        self.emit_position(None, prec, ts_ms)
        for rec in snap.orders:
            o = rec.order
            mine = o.inst_id == inst_id and o.pos_side == ps
            if mine and closing_only(o.side == OrderSide.BUY, o.reduce_only, ps):
                self.cancel(rec, ts_ms)
        self.emit_account(ts_ms)

    # --- the account marked to the latest quote ---

    def lever(self, inst_id: str, pos_side: str) -> Decimal:
        return self.ex.state.lever(inst_id, pos_side) or Decimal(self.ex.default_lever)

    def mmr(self, inst_id: str, size: Decimal) -> Decimal:
        """The maintenance margin rate of a position of `size` contracts: its tier's, unless overridden."""
        rate = self.ex.mmr
        if isinstance(rate, Mapping):
            rate = rate.get(inst_id)
        return self.ex.tiers.maintenance_rate(inst_id, size) if rate is None else rate

    def mark(self, inst_id: str) -> Decimal | None:
        quote = self.ex.quotes.get(inst_id)
        return (quote[0] + quote[1]) / 2 if quote else None

    def upl(self, prec: PosRec) -> Decimal:
        mark = self.mark(prec.inst_id)
        return Decimal(0) if mark is None else ledger.upl(prec.pos, mark, self.ex.insts[prec.inst_id].ct_val)

    def position(self, prec: PosRec) -> ExchangePosition:
        pos, ct_val, taker_fee = prec.pos, self.ex.insts[prec.inst_id].ct_val, self.ex.taker_fee
        mmr, mark = self.mmr(prec.inst_id, pos.size), self.mark(prec.inst_id)
        ratio = None if mark is None else ledger.margin_ratio(pos, mark, ct_val, mmr, taker_fee)
        return ExchangePosition(
            inst_id=prec.inst_id,
            pos_side=prec.pos_side,
            side=pos.side,
            size=pos.size,
            avg_px=pos.avg_px,
            lever=pos.lever,
            mark_px=mark,
            liq_px=ledger.liq_px(pos, ct_val, mmr, taker_fee),
            margin_ratio=ratio,
            upl=self.upl(prec),
            realized_pnl=pos.realized_pnl,
            fee=pos.fee,
            u_time_ms=prec.u_time_ms,
        )

    def balances(self) -> tuple[Balance, ...]:
        """equity = free cash + Σ(isolated margin + upl); available = free cash − what pending orders hold."""
        snap = self.ex.state.snapshot()
        acct = snap.account
        held = sum((p.pos.margin + self.upl(p) for p in snap.positions.values()), Decimal(0))
        return (Balance(ccy=acct.ccy, equity=acct.cash + held, available=acct.cash - acct.frozen),)

    # --- what a fill or a liquidation pushes ---

    def emit_account(self, ts_ms: int) -> None:
        if self.hub.subs:  # reading the account costs Redis round trips: only when someone listens
            self.hub.emit(EventKind.ACCOUNT, ts_ms, balances=self.balances())

    def emit_position(self, now: PosRec | None, before: PosRec | None, ts_ms: int) -> None:
        if not self.hub.subs:
            return
        if now is not None:
            self.hub.emit(EventKind.POSITION, ts_ms, positions=(self.position(now),))
        elif before is not None:  # closed: OKX pushes the position once more with pos "0"
            zero = Decimal(0)
            flat = replace(self.position(before), size=zero, upl=zero, liq_px=None, u_time_ms=ts_ms)
            self.hub.emit(EventKind.POSITION, ts_ms, positions=(flat,))

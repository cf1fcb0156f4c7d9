"""PaperExchange: base.Exchange against the feed's best bid/ask, with its account in Redis (see state.py).

Market orders take the ask (buy) / bid (sell) worsened by `slippage_bps`, at the taker fee; a limit order
that crosses on arrival takes too, otherwise it rests and fills at its own price (maker fee) once a quote
crosses it. The mark, and the "last" price stops trigger on, is the mid of the latest quote (kept in memory:
after a restart, positions show no mark until the feed's next quote). Isolated margin only; the money
follows ledger.py (OKX linear-swap formulas); refusals carry OKX's codes.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis

from exchanges.base import (
    Balance,
    DuplicateClientId,
    EventKind,
    ExchangeError,
    ExchangeEvent,
    ExchangePosition,
    ExchangeUnavailable,
    Instrument,
    InsufficientMargin,
    NothingToClose,
    Order,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
    StopOrder,
)
from exchanges.paper import READ_OPS, Fault, FaultPlan, ledger
from exchanges.paper.ledger import check_id, check_px, check_size, closing_only, fmt, venue_error
from exchanges.paper.state import OrderRec, PaperState, PosRec, pos_key

P = ParamSpec("P")
T = TypeVar("T")
Method = Callable[Concatenate["PaperExchange", P], Awaitable[T]]


def _faulty(op: str) -> Callable[[Method[P, T]], Method[P, T]]:
    """Run the faults injected for `op` around the method: delay/reject/read failure before, timeout after.
    The methods have no await of their own, so `_partial` cannot leak from one call into another."""

    def wrap(fn: Method[P, T]) -> Method[P, T]:
        @functools.wraps(fn)
        async def run(self: PaperExchange, /, *args: P.args, **kwargs: P.kwargs) -> T:
            faults = self.faults.take(op)
            for f in faults:
                if f.kind == "delay":
                    await asyncio.sleep(float(f.params.get("seconds", 0.05)))
            for f in faults:
                if f.kind == "read_fail" or (f.kind == "timeout" and op in READ_OPS):
                    raise ExchangeUnavailable(f"injected {f.kind} on {op}")
                if f.kind == "reject":
                    code, msg = str(f.params.get("code", "51000")), str(f.params.get("msg", "injected"))
                    raise venue_error(code, msg)
                if f.kind == "timeout" and not f.params.get("executed", True):
                    raise OutcomeUnknown(f"injected timeout on {op} (request lost)")
            self._partial = next((f for f in faults if f.kind == "partial"), None)
            try:
                result = await fn(self, *args, **kwargs)
            finally:
                self._partial = None
            if any(f.kind == "timeout" for f in faults):
                raise OutcomeUnknown(f"injected timeout on {op} (request executed)")
            return result

        return run

    return wrap


class _Subscription:
    """One events() consumer: a queue filled from the moment events() is called."""

    def __init__(self, hub: list[_Subscription], maxsize: int) -> None:
        self.queue: asyncio.Queue[ExchangeEvent | None] = asyncio.Queue()
        self.hub, self.maxsize = hub, maxsize
        hub.append(self)

    def push(self, event: ExchangeEvent | None) -> None:
        if event is not None and self.queue.qsize() >= self.maxsize:
            # A consumer this far behind has lost the thread: drop the backlog and tell it to reconcile.
            while not self.queue.empty():
                self.queue.get_nowait()
            event = ExchangeEvent(kind=EventKind.RECONNECTED, ts_ms=event.ts_ms)
        self.queue.put_nowait(event)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> ExchangeEvent:
        event = await self.queue.get()
        if event is None:
            if self in self.hub:
                self.hub.remove(self)
            raise StopAsyncIteration
        return event


class PaperExchange:
    """The paper venue. One instance owns one account (`prefix`, `account`) at a time: every write is
    computed from a fresh read with no await in between, so calls on one event loop never interleave."""

    def __init__(
        self,
        redis_client: redis.Redis,
        instruments: list[Instrument],
        *,
        taker_fee: Decimal,
        maker_fee: Decimal,
        prefix: str = "scalper",
        account: str = "main",
        slippage_bps: Decimal = Decimal(0),
        pos_mode: str = "net",
        starting_balance: Decimal = Decimal("10000"),
        mmr: Decimal | Mapping[str, Decimal] = Decimal("0.004"),
        default_lever: int = 1,
        clock: Callable[[], float] = time.time,
        event_backlog: int = 10_000,
    ) -> None:
        if not instruments:
            raise ValueError("at least one instrument is needed")
        if pos_mode not in ("net", "long_short"):
            raise ValueError(f"pos_mode must be 'net' or 'long_short', not {pos_mode!r}")
        self.state = PaperState(redis_client, prefix, account)
        self.insts = {i.inst_id: i for i in instruments}
        self.taker_fee, self.maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        self.slippage_bps = Decimal(slippage_bps)
        self.pos_mode = pos_mode
        self.mmr = mmr  # maintenance margin rate: one for all, or per instId (one tier: see ledger.py)
        self.default_lever = default_lever  # until set_leverage is called for an instId/posSide
        self.clock = clock
        self.faults = FaultPlan()
        self.quotes: dict[str, tuple[Decimal, Decimal, float]] = {}  # instId -> (bid, ask, ts)
        self._subs: list[_Subscription] = []
        self._backlog = event_backlog
        self._partial: Fault | None = None
        # Created once: a restart finds the account as it was.
        self.state.init_account(instruments[0].settle_ccy, Decimal(starting_balance))

    def inject(
        self, kind: str, count: int = 1, *, op: str | tuple[str, ...] | None = None, **params: Any
    ) -> Fault:
        """Make the next `count` calls of `op` misbehave (see exchanges.paper.Fault)."""
        return self.faults.add(kind, count, op, **params)

    # --- feed ---

    async def on_quote(self, inst_id: str, bid: Decimal, ask: Decimal, ts: float) -> None:
        """A new best bid/ask: fill crossed orders, trigger crossed stops, then liquidate, in that order."""
        inst = self._inst(inst_id)
        if not 0 < bid <= ask:
            raise ValueError(f"bad quote {bid}/{ask} for {inst_id}")
        self.quotes[inst_id] = (bid, ask, ts)
        ts_ms = int(ts * 1000)
        snap = self.state.snapshot()
        for rec in snap.orders:
            if rec.order.inst_id == inst_id and (fill := self._price(rec.order, bid, ask, placing=False)):
                self._fill(rec, *fill, ts_ms)
        mark = (bid + ask) / 2
        for stop in snap.stops:
            sell = stop.side == OrderSide.SELL
            if stop.inst_id == inst_id and (mark <= stop.trigger_px if sell else mark >= stop.trigger_px):
                self._trigger(stop, ts_ms)
        mmr = self._mmr(inst_id)
        for prec in self.state.snapshot().positions.values():
            if prec.inst_id != inst_id:
                continue
            if ledger.liquidated(prec.pos, mark, inst.ct_val, mmr, self.taker_fee):
                self._liquidate(prec, mark, ts_ms)

    # --- reads ---

    async def instruments(self) -> list[Instrument]:
        return list(self.insts.values())

    @_faulty("balance")
    async def balance(self) -> list[Balance]:
        return list(self._balances())

    @_faulty("positions")
    async def positions(self) -> list[ExchangePosition]:
        return [self._position(p) for p in self.state.snapshot().positions.values()]

    @_faulty("pending_orders")
    async def pending_orders(self) -> list[Order]:
        return [r.order for r in self.state.snapshot().orders]

    @_faulty("get_order")
    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        rec = self.state.order(cl_ord_id)
        return rec.order if rec is not None and rec.order.inst_id == inst_id else None

    @_faulty("stops")
    async def stops(self) -> list[StopOrder]:
        return self.state.snapshot().stops

    def fills(self, count: int = 1000) -> list[dict[str, str]]:
        """The account's fills, oldest first (the `fills` stream), liquidations marked liq=1."""
        return self.state.fills(count)

    # --- orders ---

    @_faulty("place_order")
    async def place_order(self, req: OrderRequest) -> Order:
        inst = self._inst(req.inst_id)
        check_id(req.cl_ord_id, "clOrdId")
        if req.td_mode != "isolated":
            raise ExchangeError("51010", "paper trading supports isolated margin only")
        pos_side = ledger.resolve_pos_side(self.pos_mode, req.pos_side)
        check_size(req.size, inst.lot_sz, inst.min_sz)
        buy = req.side == OrderSide.BUY
        if req.ord_type == OrderType.LIMIT:
            if req.price is None:
                raise ExchangeError("51204", "The price for the limit order cannot be empty.")
            check_px(req.price, inst.tick_sz, "px")
        snap = self.state.snapshot()
        if any(r.order.cl_ord_id == req.cl_ord_id for r in snap.orders):
            raise DuplicateClientId("51016", "Client order ID already exists.")
        prec = snap.positions.get(pos_key(req.inst_id, pos_side))
        can_close = ledger.closable(prec.pos if prec else None, buy)
        closing = closing_only(buy, req.reduce_only, pos_side)
        size = req.size
        if closing:
            if not can_close:
                if prec is not None:  # net mode: reduce-only in the position's own direction
                    raise ExchangeError("51170", "A reduce-only order can't be the same trading direction.")
                raise NothingToClose("51169", "You don't have any positions in this direction to close.")
            if size > can_close:
                if pos_side != "net":
                    raise ExchangeError("51112", "Close order size exceeds available size for this position.")
                size = can_close  # reduce-only is capped at the position, so it can never flip it
        quote = self.quotes.get(req.inst_id)
        if req.ord_type == OrderType.MARKET:
            if quote is None:
                raise ExchangeError("52000", f"No market data found for {req.inst_id}.")
            ref = ledger.slipped(quote[1] if buy else quote[0], buy, self.slippage_bps)
        else:
            ref = req.price or Decimal(0)
        # Hold margin and the taker fee for the part that opens; the closing part needs none.
        open_sz = Decimal(0) if closing else size - min(size, can_close)
        lever = self._lever(req.inst_id, pos_side)
        hold = ledger.initial_margin(open_sz, inst.ct_val, ref, lever)
        hold -= ledger.fee(open_sz, inst.ct_val, ref, self.taker_fee)
        if hold > snap.account.cash - snap.account.frozen:
            raise InsufficientMargin("51008", f"Order failed. Insufficient USDT margin (needs {hold})")
        now = self._now_ms()
        order = Order(
            inst_id=req.inst_id, cl_ord_id=req.cl_ord_id, ord_id=self.state.next_id(), side=req.side,
            state=OrderState.LIVE, size=size, ord_type=req.ord_type, price=req.price,
            reduce_only=req.reduce_only, pos_side=pos_side, u_time_ms=now,
        )
        part = self._partial.params if self._partial else None
        rec = OrderRec(
            order=order, frozen=hold, c_time_ms=now, rest=str((part or {}).get("rest", "live")),
            partial=None if part is None else Decimal(str(part.get("fraction", "0.5"))),
        )
        acct = replace(snap.account, frozen=snap.account.frozen + hold)
        self.state.txn().order(rec).account(acct).commit()
        self._emit(EventKind.ORDER, now, orders=(order,))
        if quote is not None and (fill := self._price(order, quote[0], quote[1], placing=True)):
            rec = self._fill(rec, *fill, now)
        return rec.order

    @_faulty("cancel_order")
    async def cancel_order(self, inst_id: str, cl_ord_id: str) -> None:
        rec = self.state.order(cl_ord_id)
        if rec is None or rec.order.inst_id != inst_id:
            raise OrderNotFound("51603", "Order does not exist.")
        if rec.order.state.terminal:
            raise ExchangeError("51400", "Order cancellation failed, the order has been filled or canceled.")
        self._cancel(rec, self._now_ms())

    @_faulty("set_leverage")
    async def set_leverage(
        self, inst_id: str, lever: int, mgn_mode: str, pos_side: str | None = None
    ) -> None:
        inst = self._inst(inst_id)
        if mgn_mode != "isolated":
            raise ExchangeError("51010", "paper trading supports isolated margin only")
        if not 1 <= lever <= inst.max_lever:
            raise ExchangeError("51000", f"Parameter lever error: 1..{inst.max_lever}")
        ps = ledger.resolve_pos_side(self.pos_mode, pos_side)
        snap = self.state.snapshot()
        txn = self.state.txn().lever(inst_id, ps, lever)
        if (prec := snap.positions.get(pos_key(inst_id, ps))) is not None:
            # An open isolated position's margin follows its leverage: released, or taken from cash.
            pos = ledger.relever(prec.pos, inst.ct_val, Decimal(lever))
            extra = pos.margin - prec.pos.margin
            if extra > snap.account.cash - snap.account.frozen:
                raise InsufficientMargin("51008", "Insufficient margin to lower the leverage.")
            txn.position(inst_id, ps, replace(prec, pos=pos, u_time_ms=self._now_ms()))
            txn.account(replace(snap.account, cash=snap.account.cash - extra))
        txn.commit()

    # --- protective stops (OKX conditional algo orders: reduce-only, market on trigger) ---

    @_faulty("place_stop")
    async def place_stop(
        self, inst_id: str, algo_cl_ord_id: str, side: OrderSide, trigger_px: Decimal, size: Decimal,
        pos_side: str | None = None,
    ) -> StopOrder:
        inst = self._inst(inst_id)
        check_id(algo_cl_ord_id, "algoClOrdId")
        ps = ledger.resolve_pos_side(self.pos_mode, pos_side)
        if ps != "net" and not closing_only(side == OrderSide.BUY, True, ps):
            raise ExchangeError("51000", f"Parameter side error: a {side} stop cannot close a {ps} position")
        check_size(size, inst.lot_sz, inst.min_sz)
        check_px(trigger_px, inst.tick_sz, "triggerPx")
        ledger.check_stop_trigger(side == OrderSide.SELL, trigger_px, self._mark(inst_id))
        if (old := self.state.stop(algo_cl_ord_id)) is not None and old.state == "live":
            raise DuplicateClientId("51016", "algoClOrdId already exists.")
        stop = StopOrder(
            inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id, algo_id=self.state.next_id(), side=side,
            trigger_px=trigger_px, size=size, pos_side=ps,
        )
        self.state.txn().stop(stop).commit()
        return stop

    @_faulty("move_stop")
    async def move_stop(self, inst_id: str, algo_cl_ord_id: str, trigger_px: Decimal) -> StopOrder:
        stop = self._live_stop(inst_id, algo_cl_ord_id)
        check_px(trigger_px, self.insts[inst_id].tick_sz, "triggerPx")
        ledger.check_stop_trigger(stop.side == OrderSide.SELL, trigger_px, self._mark(inst_id))
        stop = replace(stop, trigger_px=trigger_px)
        self.state.txn().stop(stop).commit()
        return stop

    @_faulty("cancel_stop")
    async def cancel_stop(self, inst_id: str, algo_cl_ord_id: str) -> None:
        stop = self._live_stop(inst_id, algo_cl_ord_id)
        self.state.txn().stop(replace(stop, state="canceled")).commit()

    # --- events ---

    def events(self) -> AsyncIterator[ExchangeEvent]:
        """Every push from this call on, starting (like OKX's positions/account channels) with snapshots."""
        sub = _Subscription(self._subs, self._backlog)
        snap, now = self.state.snapshot(), self._now_ms()
        positions = tuple(self._position(p) for p in snap.positions.values())
        sub.push(ExchangeEvent(kind=EventKind.POSITION, snapshot=True, ts_ms=now, positions=positions))
        sub.push(ExchangeEvent(kind=EventKind.ACCOUNT, snapshot=True, ts_ms=now, balances=self._balances()))
        return sub

    async def close(self) -> None:
        """End every events() iterator; the Redis client belongs to the caller."""
        for sub in self._subs:
            sub.push(None)
        self._subs.clear()

    # --- matching and fills: synchronous, so nothing interleaves between a read and its write ---

    def _price(
        self, order: Order, bid: Decimal, ask: Decimal, *, placing: bool
    ) -> tuple[Decimal, bool] | None:
        """(fill price, taker?) on this quote, or None when the order does not fill on it."""
        buy = order.side == OrderSide.BUY
        touch = ask if buy else bid
        taker_px = ledger.slipped(touch, buy, self.slippage_bps)
        if order.ord_type == OrderType.MARKET:
            return taker_px, True
        limit = order.price or Decimal(0)
        if (touch > limit) if buy else (touch < limit):
            return None
        if placing:  # crossing on arrival: it takes liquidity, never beyond its limit
            return (min(taker_px, limit) if buy else max(taker_px, limit)), True
        return limit, False

    def _fill(self, rec: OrderRec, px: Decimal, taker: bool, ts_ms: int) -> OrderRec:
        o, inst = rec.order, self.insts[rec.order.inst_id]
        buy = o.side == OrderSide.BUY
        snap = self.state.snapshot()
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
                return self._cancel(rec, ts_ms)
        eff = ledger.apply_fill(
            pos, buy=buy, sz=sz, px=px, ct_val=inst.ct_val, lever=self._lever(o.inst_id, o.pos_side),
            fee_rate=self.taker_fee if taker else self.maker_fee, may_open=not closing,
        )
        acct = snap.account
        if eff.margin_added and acct.cash - acct.frozen + rec.frozen + eff.cash_delta < 0:
            return self._cancel(rec, ts_ms)  # the fill price left the held estimate too far behind
        filled = o.filled + sz
        state = OrderState.FILLED if filled == o.size else OrderState.PARTIALLY_FILLED
        release = rec.frozen if state == OrderState.FILLED else rec.frozen * sz / remaining
        order = replace(
            o, state=state, filled=filled, avg_px=((o.avg_px or 0) * o.filled + px * sz) / filled,
            fee=o.fee + eff.fee, pnl=o.pnl + eff.pnl, u_time_ms=ts_ms,
        )
        after = replace(rec, order=order, frozen=rec.frozen - release, partial=None)
        new_pos = None
        if eff.pos is not None:
            c_time = prec.c_time_ms if prec is not None and prec.pos.side == eff.pos.side else ts_ms
            new_pos = PosRec(o.inst_id, o.pos_side, eff.pos, c_time, ts_ms)
        trade = {
            "inst_id": o.inst_id, "cl_ord_id": o.cl_ord_id, "ord_id": o.ord_id,
            "trade_id": self.state.next_id(),
            "side": o.side.value, "pos_side": o.pos_side, "px": fmt(px), "sz": fmt(sz), "fee": fmt(eff.fee),
            "pnl": fmt(eff.pnl), "exec_type": "T" if taker else "M", "liq": "0", "ts_ms": str(ts_ms),
        }
        acct = replace(acct, cash=acct.cash + eff.cash_delta, frozen=acct.frozen - release)
        txn = self.state.txn().order(after).position(o.inst_id, o.pos_side, new_pos)
        txn.account(acct).fill(trade).commit()
        extra = {"fill_px": trade["px"], "fill_sz": trade["sz"], "trade_id": trade["trade_id"],
                 "exec_type": trade["exec_type"]}
        self._emit(EventKind.ORDER, ts_ms, orders=(order,), extra=extra)
        self._emit_position(new_pos, prec, ts_ms)
        self._emit_account(ts_ms)
        cancel_rest = rec.partial is not None and rec.rest == "cancel"
        if state == OrderState.PARTIALLY_FILLED and (cancel_rest or (closing and new_pos is None)):
            return self._cancel(after, ts_ms)  # injected "cancel the rest", or nothing left to reduce
        return after

    def _cancel(self, rec: OrderRec, ts_ms: int) -> OrderRec:
        order = replace(rec.order, state=OrderState.CANCELED, u_time_ms=ts_ms)
        after = replace(rec, order=order, frozen=Decimal(0), partial=None)
        acct = self.state.account()
        self.state.txn().order(after).account(replace(acct, frozen=acct.frozen - rec.frozen)).commit()
        self._emit(EventKind.ORDER, ts_ms, orders=(order,))
        return after

    def _trigger(self, stop: StopOrder, ts_ms: int) -> None:
        """The stop fires: a reduce-only market order, carrying the stop's algoClOrdId as its clOrdId
        (OKX reports it as algoClOrdId) unless a pending order already uses that id."""
        pending = {r.order.cl_ord_id for r in self.state.snapshot().orders}
        cl = stop.algo_cl_ord_id if stop.algo_cl_ord_id not in pending else f"algo{stop.algo_id}"
        order = Order(
            inst_id=stop.inst_id, cl_ord_id=cl, ord_id=self.state.next_id(), side=stop.side,
            state=OrderState.LIVE, size=stop.size, reduce_only=True, pos_side=stop.pos_side, u_time_ms=ts_ms,
        )
        rec = OrderRec(order=order, c_time_ms=ts_ms)
        self.state.txn().stop(replace(stop, state="effective")).order(rec).commit()
        self._emit(EventKind.ORDER, ts_ms, orders=(order,), extra={"algo_cl_ord_id": stop.algo_cl_ord_id})
        bid, ask, _ = self.quotes[stop.inst_id]
        self._fill(rec, *(self._price(order, bid, ask, placing=True) or (bid, True)), ts_ms)

    def _liquidate(self, prec: PosRec, mark: Decimal, ts_ms: int) -> None:
        """Forced close at the mark: the isolated margin is lost (pnl + penalty = −margin; it left cash at
        opening, so cash does not move) and the position's closing orders and stops are cancelled."""
        pos, inst_id, ps = prec.pos, prec.inst_id, prec.pos_side
        loss, penalty = ledger.liquidation(pos, mark, self.insts[inst_id].ct_val)
        side = OrderSide.SELL if pos.side == "long" else OrderSide.BUY
        order = Order(
            inst_id=inst_id, cl_ord_id="", ord_id=self.state.next_id(), side=side, state=OrderState.FILLED,
            size=pos.size, filled=pos.size, avg_px=mark, reduce_only=True, pos_side=ps, fee=penalty, pnl=loss,
            u_time_ms=ts_ms,
        )
        trade_id = "-" + self.state.next_id()  # OKX: liquidation fills have negative trade ids
        snap = self.state.snapshot()
        txn = self.state.txn().position(inst_id, ps, None).fill({
            "inst_id": inst_id, "cl_ord_id": "", "ord_id": order.ord_id, "trade_id": trade_id,
            "side": side.value, "pos_side": ps, "px": fmt(mark), "sz": fmt(pos.size), "fee": fmt(penalty),
            "pnl": fmt(loss), "exec_type": "T", "liq": "1", "ts_ms": str(ts_ms),
        })
        for stop in snap.stops:
            if stop.inst_id == inst_id and stop.pos_side == ps:
                txn.stop(replace(stop, state="canceled"))
        txn.commit()
        extra = {"category": "full_liquidation", "liq_penalty": fmt(penalty), "trade_id": trade_id}
        self._emit(EventKind.ORDER, ts_ms, orders=(order,), extra=extra)
        self._emit_position(None, prec, ts_ms)
        for rec in snap.orders:
            o = rec.order
            mine = o.inst_id == inst_id and o.pos_side == ps
            if mine and closing_only(o.side == OrderSide.BUY, o.reduce_only, ps):
                self._cancel(rec, ts_ms)
        self._emit_account(ts_ms)

    # --- helpers ---

    def _inst(self, inst_id: str) -> Instrument:
        if (inst := self.insts.get(inst_id)) is None:
            raise ExchangeError("51001", f"Instrument ID {inst_id} doesn't exist.")
        return inst

    def _live_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder:
        stop = self.state.stop(algo_cl_ord_id)
        if stop is None or stop.inst_id != inst_id or stop.state != "live":
            raise OrderNotFound("51603", "Order does not exist.")
        return stop

    def _lever(self, inst_id: str, pos_side: str) -> Decimal:
        return self.state.lever(inst_id, pos_side) or Decimal(self.default_lever)

    def _mmr(self, inst_id: str) -> Decimal:
        return self.mmr.get(inst_id, Decimal("0.004")) if isinstance(self.mmr, Mapping) else self.mmr

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _mark(self, inst_id: str) -> Decimal | None:
        quote = self.quotes.get(inst_id)
        return (quote[0] + quote[1]) / 2 if quote else None

    def _upl(self, prec: PosRec) -> Decimal:
        mark = self._mark(prec.inst_id)
        return Decimal(0) if mark is None else ledger.upl(prec.pos, mark, self.insts[prec.inst_id].ct_val)

    def _position(self, prec: PosRec) -> ExchangePosition:
        pos, ct_val = prec.pos, self.insts[prec.inst_id].ct_val
        mmr, mark = self._mmr(prec.inst_id), self._mark(prec.inst_id)
        ratio = None if mark is None else ledger.margin_ratio(pos, mark, ct_val, mmr, self.taker_fee)
        return ExchangePosition(
            inst_id=prec.inst_id, pos_side=prec.pos_side, side=pos.side, size=pos.size, avg_px=pos.avg_px,
            lever=pos.lever, mark_px=mark, liq_px=ledger.liq_px(pos, ct_val, mmr, self.taker_fee),
            margin_ratio=ratio, upl=self._upl(prec), realized_pnl=pos.realized_pnl, fee=pos.fee,
            u_time_ms=prec.u_time_ms,
        )

    def _balances(self) -> tuple[Balance, ...]:
        """equity = free cash + Σ(isolated margin + upl); available = free cash − what pending orders hold."""
        snap = self.state.snapshot()
        acct = snap.account
        held = sum((p.pos.margin + self._upl(p) for p in snap.positions.values()), Decimal(0))
        return (Balance(ccy=acct.ccy, equity=acct.cash + held, available=acct.cash - acct.frozen),)

    def _emit(self, kind: EventKind, ts_ms: int, **kw: Any) -> None:
        event = ExchangeEvent(kind=kind, ts_ms=ts_ms, **kw)
        for sub in self._subs:
            sub.push(event)

    def _emit_account(self, ts_ms: int) -> None:
        if self._subs:  # reading the account costs Redis round trips: only when someone listens
            self._emit(EventKind.ACCOUNT, ts_ms, balances=self._balances())

    def _emit_position(self, now: PosRec | None, before: PosRec | None, ts_ms: int) -> None:
        if not self._subs:
            return
        if now is not None:
            self._emit(EventKind.POSITION, ts_ms, positions=(self._position(now),))
        elif before is not None:  # closed: OKX pushes the position once more with pos "0"
            zero = Decimal(0)
            flat = replace(self._position(before), size=zero, upl=zero, liq_px=None, u_time_ms=ts_ms)
            self._emit(EventKind.POSITION, ts_ms, positions=(flat,))

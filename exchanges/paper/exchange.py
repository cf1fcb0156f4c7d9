"""PaperExchange: base.Exchange against the feed's best bid/ask, with its account in Redis (see state.py).

Market orders take the ask (buy) / bid (sell) worsened by `slippage_bps`, at the taker fee; a limit order
that crosses on arrival takes too, otherwise it rests and fills at its own price (maker fee) once a quote
crosses it. The mark, and the "last" price stops trigger on, is the mid of the latest quote (kept in memory:
after a restart, positions show no mark until the feed's next quote). Isolated margin only; the money
follows ledger.py (OKX linear-swap formulas); refusals carry OKX's codes. This module checks requests;
matching.py fills, triggers, liquidates and marks; stops.py places and reads protective stops; faults.py
plays injected faults; events.py pushes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import redis

from exchanges.base import (
    Balance,
    DuplicateClientId,
    EventKind,
    ExchangeError,
    ExchangeEvent,
    ExchangePosition,
    Instrument,
    InsufficientMargin,
    NothingToClose,
    Order,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
)
from exchanges.paper import ledger
from exchanges.paper.events import EventHub
from exchanges.paper.faults import Fault, FaultPlan, faulty
from exchanges.paper.ledger import check_id, check_px, check_size, closing_only
from exchanges.paper.matching import Matcher
from exchanges.paper.state import OrderRec, PaperState, pos_key
from exchanges.paper.stops import PaperStops
from exchanges.tiers import OKX_ISOLATED_SWAP_TIERS, PositionTiers

log = logging.getLogger("scalper.paper")


class PaperExchange(PaperStops):
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
        mmr: Decimal | Mapping[str, Decimal] | None = None,
        tiers: PositionTiers = OKX_ISOLATED_SWAP_TIERS,
        default_lever: int = 1,
        clock: Callable[[], float] = time.time,
        event_backlog: int = 10_000,
    ) -> None:
        if not instruments:
            raise ValueError("at least one instrument is needed")
        if pos_mode not in ("net", "long_short"):
            raise ValueError(f"pos_mode must be 'net' or 'long_short', not {pos_mode!r}")
        self.state = PaperState(redis_client, prefix, account, wall=clock)
        self.insts = {i.inst_id: i for i in instruments}
        self.taker_fee, self.maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        self.slippage_bps = Decimal(slippage_bps)
        self.pos_mode = pos_mode
        # The maintenance margin rate comes from the position's tier (exchanges/tiers.py); `mmr` overrides it,
        # one rate for every instrument or per instId (tests that want a flat rate).
        self.mmr = mmr
        self.tiers = tiers
        untiered = [i for i in self.insts if i not in tiers and not _overridden(mmr, i)]
        if untiered:
            raise ValueError(f"no position tiers for {', '.join(untiered)}: give tiers or an mmr for them")
        self.default_lever = default_lever  # until set_leverage is called for an instId/posSide
        self.clock = clock
        self.faults = FaultPlan()
        self.quotes: dict[str, tuple[Decimal, Decimal, float]] = {}  # instId -> (bid, ask, ts)
        self._hub = EventHub(event_backlog)
        self._partial: Fault | None = None
        self.matcher = Matcher(self, self._hub)
        # Created once: a restart finds the account as it was.
        self.state.init_account(instruments[0].settle_ccy, Decimal(starting_balance))

    def inject(
        self, kind: str, count: int = 1, *, op: str | tuple[str, ...] | None = None, **params: Any
    ) -> Fault:
        """Make the next `count` calls of `op` misbehave (see exchanges.paper.Fault)."""
        return self.faults.add(kind, count, op, **params)

    # --- feed ---

    async def on_quote(self, inst_id: str, bid: Decimal, ask: Decimal, ts: float) -> None:
        """A new best bid/ask: requests held up on their way land first (an injected "late" fault); then
        crossed orders fill, crossed stops trigger, and positions are liquidated, in that order. What it
        executes is stamped with the venue's clock, as orders placed on request are: `ts` is the market
        data's time, which a fast replay runs hours ahead of it."""
        inst = self._inst(inst_id)
        if not 0 < bid <= ask:
            raise ValueError(f"bad quote {bid}/{ask} for {inst_id}")
        await self.land_held()
        self.quotes[inst_id] = (bid, ask, ts)
        self.matcher.on_quote(inst, bid, ask, self._now_ms())

    async def land_held(self) -> int:
        """Carry out the requests an injected "late" fault held up whose time has come; their callers are
        long gone, so an error is only logged, as a venue would reject a request nobody waits for."""
        landed = 0
        for call in self.faults.landing(self.clock()):
            try:
                await call()
                landed += 1
            except (ExchangeError, ValueError) as err:
                log.info("paper: a late request was refused: %s", err)
        return landed

    # --- reads ---

    async def instruments(self) -> list[Instrument]:
        return list(self.insts.values())

    @faulty("balance")
    async def balance(self) -> list[Balance]:
        return list(self.matcher.balances())

    @faulty("positions")
    async def positions(self) -> list[ExchangePosition]:
        return [self.matcher.position(p) for p in self.state.positions()]

    @faulty("pending_orders")
    async def pending_orders(self) -> list[Order]:
        return [r.order for r in self.state.snapshot().orders]

    @faulty("recent_orders")
    async def recent_orders(self, inst_id: str, since_ms: int | None = None) -> list[Order]:
        return [rec.order for rec in self.state.recent_orders(inst_id, since_ms=since_ms)]

    @faulty("get_order")
    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        rec = self.state.order(cl_ord_id)
        return rec.order if rec is not None and rec.order.inst_id == inst_id else None

    def fills(self, count: int = 1000) -> list[dict[str, str]]:
        """The account's fills, oldest first (the `fills` stream), liquidations marked liq=1."""
        return self.state.fills(count)

    # --- orders ---

    @faulty("place_order")
    async def place_order(self, req: OrderRequest) -> Order:
        return self._place(req)

    @faulty("close_position")
    async def close_position(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None = None
    ) -> Order:
        """OKX close-position: the whole position at market, reduce-only, sized from the position as it is
        when this runs. In net mode the net position is closed whichever its direction, as OKX does."""
        self._inst(inst_id)
        ps = ledger.resolve_pos_side(self.pos_mode, pos_side)
        held = next(
            (p.pos for p in self.state.positions() if p.inst_id == inst_id and p.pos_side == ps), None
        )
        if held is None or held.size <= 0:
            raise NothingToClose("51023", "Position doesn't exist.")
        closing_side = OrderSide.SELL if held.side == "long" else OrderSide.BUY
        req = OrderRequest(inst_id=inst_id, cl_ord_id=cl_ord_id, side=closing_side, size=held.size,
                           ord_type=OrderType.MARKET, reduce_only=True, pos_side=pos_side,
                           td_mode=td_mode)  # fmt: skip
        return self._place(req)

    def _place(self, req: OrderRequest) -> Order:
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
        lever = self.matcher.lever(req.inst_id, pos_side)
        hold = ledger.initial_margin(open_sz, inst.ct_val, ref, lever)
        hold -= ledger.fee(open_sz, inst.ct_val, ref, self.taker_fee)
        if hold > snap.account.cash - snap.account.frozen:
            raise InsufficientMargin("51008", f"Order failed. Insufficient USDT margin (needs {hold})")
        now = self._now_ms()
        order = Order(
            inst_id=req.inst_id,
            cl_ord_id=req.cl_ord_id,
            ord_id=self.state.next_id(),
            side=req.side,
            state=OrderState.LIVE,
            size=size,
            ord_type=req.ord_type,
            price=req.price,
            reduce_only=req.reduce_only,
            pos_side=pos_side,
            u_time_ms=now,
        )
        part = self._partial.params if self._partial else None
        rec = OrderRec(
            order=order,
            frozen=hold,
            c_time_ms=now,
            rest=str((part or {}).get("rest", "live")),
            partial=None if part is None else Decimal(str(part.get("fraction", "0.5"))),
        )
        acct = replace(snap.account, frozen=snap.account.frozen + hold)
        self.state.txn().order(rec).account(acct).commit()
        self._hub.emit(EventKind.ORDER, now, orders=(order,))
        if quote is not None and (fill := self.matcher.price(order, quote[0], quote[1], placing=True)):
            rec = self.matcher.fill(rec, *fill, now)
        return rec.order

    @faulty("cancel_order")
    async def cancel_order(self, inst_id: str, cl_ord_id: str) -> None:
        rec = self.state.order(cl_ord_id)
        if rec is None or rec.order.inst_id != inst_id:
            raise OrderNotFound("51603", "Order does not exist.")
        if rec.order.state.terminal:
            raise ExchangeError("51400", "Order cancellation failed, the order has been filled or canceled.")
        self.matcher.cancel(rec, self._now_ms())

    @faulty("set_leverage")
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

    # --- events ---

    def events(self) -> AsyncIterator[ExchangeEvent]:
        """Every push from this call on, starting (like OKX's positions/account channels) with snapshots."""
        sub = self._hub.subscribe()
        snap, now = self.state.snapshot(), self._now_ms()
        positions = tuple(self.matcher.position(p) for p in snap.positions.values())
        sub.push(ExchangeEvent(kind=EventKind.POSITION, snapshot=True, ts_ms=now, positions=positions))
        balances = self.matcher.balances()
        sub.push(ExchangeEvent(kind=EventKind.ACCOUNT, snapshot=True, ts_ms=now, balances=balances))
        return sub

    async def close(self) -> None:
        """End every events() iterator; the Redis client belongs to the caller."""
        self._hub.close()

    # --- helpers ---

    def _inst(self, inst_id: str) -> Instrument:
        if (inst := self.insts.get(inst_id)) is None:
            raise ExchangeError("51001", f"Instrument ID {inst_id} doesn't exist.")
        return inst

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _overridden(mmr: Decimal | Mapping[str, Decimal] | None, inst_id: str) -> bool:
    return mmr is not None and (inst_id in mmr if isinstance(mmr, Mapping) else True)

"""Order placement for the OKX adapter: rounding, position modes, the unknown-outcome rule, catch-up.

The unknown-outcome rule: when placing times out, the connection drops after sending, or OKX answers
50004/51054/51149, the order may exist. It is then queried by clOrdId (a few times, spaced); found -> that
order is returned; not found -> OutcomeUnknown. Any place() with a clOrdId this desk already sent (and OKX
did not refuse) queries it first and returns the existing order instead of sending: no second order is
ever sent for a clOrdId whose first one exists (OKX itself only rejects duplicates among PENDING orders).
close() (POST close-position: the whole position at market, sized by OKX) sends one order under a clOrdId
too, and follows the same rule through the same code (_submit).

Position modes: net (reduceOnly closes; no posSide) and long_short (posSide on every order, derived from
side and reduce_only when the request has none; reduceOnly is not sent: it does not apply there).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from exchanges.base import (
    DuplicateClientId,
    ExchangeError,
    ExchangeUnavailable,
    Instrument,
    LotSizeError,
    Order,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderType,
    OutcomeUnknown,
)
from exchanges.okx.convert import close_position_args, order_args, to_order
from exchanges.okx.events import convert_all, now_ms
from exchanges.okx.ratelimit import Kind
from exchanges.okx.records import ClosePositionAck, OrderAck, OrderRec
from exchanges.okx.rest import OkxRest

log = logging.getLogger(__name__)
CL_ORD_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")


def _check_cl_ord_id(cl: str) -> None:
    if not CL_ORD_ID.match(cl):
        raise ValueError("clOrdId must be 1-32 letters/digits")


HISTORY_PAGE = 100  # OKX's largest page of orders-history
HISTORY_PAGES_MAX = 50  # 5,000 orders: more than a scalping day; each page one request (limit 40 / 2 s)

class OrderDesk:
    def __init__(
        self,
        rest: OkxRest,
        instrument: Callable[[str], Awaitable[Instrument]],
        *,
        pos_mode: str,
        queries: int,
        query_delay: float,
        sent_max: int = 100_000,
    ) -> None:
        self._rest = rest
        self._instrument = instrument
        self.pos_mode = pos_mode
        self.queries = queries
        self.query_delay = query_delay
        self.inflight: dict[str, str] = {}  # clOrdId -> instId of our orders not yet seen terminal
        # clOrdIds sent and not refused (oldest first, bounded): a repeat must query before sending
        self.sent: OrderedDict[str, None] = OrderedDict()
        self.sent_max = sent_max
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def pending(self, inst_type: str) -> list[Order]:
        recs = await self._rest.get(
            "/api/v5/trade/orders-pending", OrderRec, {"instType": inst_type}, kind=Kind.ORDERS_PENDING
        )
        return self.track(convert_all(recs, to_order, "order"))

    async def history(self, inst_id: str, inst_type: str, since_ms: int | None = None) -> list[Order]:
        """Completed orders on the instrument, newest first (OKX keeps 7 days). The latest page of 100; with
        `since_ms`, page after page (`after` = the oldest ordId so far) until one reaches past it, at most
        HISTORY_PAGES_MAX pages: a busy day holds more than 100 orders."""
        path = "/api/v5/trade/orders-history"
        out: list[Order] = []
        after = ""
        for _ in range(HISTORY_PAGES_MAX if since_ms is not None else 1):
            params = {"instType": inst_type, "instId": inst_id, "limit": str(HISTORY_PAGE)}
            if after:
                params["after"] = after
            recs = await self._rest.get(path, OrderRec, params, kind=Kind.ORDERS_HISTORY)
            page = convert_all(recs, to_order, "order")
            out += page
            reached = since_ms is not None and any(o.u_time_ms < since_ms for o in page)
            if len(recs) < HISTORY_PAGE or reached:
                break
            after = recs[-1].ord_id
        return out

    async def get(self, inst_id: str, cl_ord_id: str = "", ord_id: str = "") -> Order | None:
        params = {"instId": inst_id, "ordId": ord_id} if ord_id else {"instId": inst_id, "clOrdId": cl_ord_id}
        try:
            recs = await self._rest.get(
                "/api/v5/trade/order", OrderRec, params, kind=Kind.GET_ORDER, inst_id=inst_id
            )
        except OrderNotFound:
            return None
        orders = self.track(convert_all(recs, to_order, "order"))
        if not orders:
            raise ExchangeUnavailable(f"OKX GET order {cl_ord_id or ord_id}: no readable record")
        return orders[0]

    async def place(self, req: OrderRequest) -> Order:
        _check_cl_ord_id(req.cl_ord_id)
        async with self._exclusive(req.cl_ord_id):
            wire_req = self.rounded(req, await self._instrument(req.inst_id))

            async def send() -> Order:
                acks = await self._rest.post("/api/v5/trade/order", OrderAck, order_args(wire_req),
                                             kind=Kind.PLACE, inst_id=req.inst_id)  # fmt: skip
                return Order(
                    inst_id=req.inst_id, cl_ord_id=req.cl_ord_id, ord_id=acks[0].ord_id, side=req.side,
                    state=OrderState.LIVE, size=wire_req.size, ord_type=req.ord_type, price=wire_req.price,
                    reduce_only=wire_req.reduce_only, pos_side=wire_req.pos_side or "net",
                    u_time_ms=acks[0].ts or now_ms(),
                )  # fmt: skip

            return await self._submit(req.inst_id, req.cl_ord_id, send)

    async def close(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None
    ) -> Order:
        """POST close-position under our clOrdId: the whole position at market, sized by OKX as it executes.
        The answer is a bare acknowledgement (LIVE, no ordId, size 0): get() by clOrdId tells the rest."""
        _check_cl_ord_id(cl_ord_id)
        long_short = self.pos_mode == "long_short"
        if long_short:
            if pos_side not in ("long", "short"):
                raise ValueError("close-position in long/short mode needs posSide long or short")
            if (side is OrderSide.SELL) != (pos_side == "long"):
                raise ValueError(f"a {side.value} order does not close the {pos_side} position")
        wire_pos_side = pos_side if long_short else None
        # autoCxl: OKX refuses close-position while close orders are pending on the position unless they
        # are canceled with it; a pending reduce-only order (ours or the user's) must not block an exit.
        body = close_position_args(inst_id, td_mode, wire_pos_side, cl_ord_id, auto_cxl=True)

        async def send() -> Order:
            await self._rest.post("/api/v5/trade/close-position", ClosePositionAck, body,
                                  kind=Kind.CLOSE_POSITION, inst_id=inst_id)  # fmt: skip
            return Order(
                inst_id=inst_id, cl_ord_id=cl_ord_id, ord_id="", side=side, state=OrderState.LIVE,
                size=Decimal(0), ord_type=OrderType.MARKET, reduce_only=True,
                pos_side=wire_pos_side or "net", u_time_ms=now_ms(),
            )  # fmt: skip

        async with self._exclusive(cl_ord_id):
            return await self._submit(inst_id, cl_ord_id, send)

    @asynccontextmanager
    async def _exclusive(self, cl: str) -> AsyncIterator[None]:
        """One submission per clOrdId at a time: a concurrent retry waits, then finds the first one."""
        lock, users = self._locks.get(cl, (asyncio.Lock(), 0))
        self._locks[cl] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[cl]
            if users == 1:
                del self._locks[cl]
            else:
                self._locks[cl] = (lock, users - 1)

    async def _submit(self, inst_id: str, cl: str, send: Callable[[], Awaitable[Order]]) -> Order:
        """The unknown-outcome rule around one send (under the clOrdId's lock)."""
        if cl in self.sent:  # an earlier attempt may have placed it: look before sending again
            existing = await self._lookup(inst_id, cl)
            if existing is not None:
                return existing
        self._remember(cl)
        self.inflight[cl] = inst_id  # before sending: a reconnect catch-up must cover it
        try:
            return await send()
        except OutcomeUnknown as e:
            return await self._resolve(inst_id, cl, e)
        except DuplicateClientId:
            existing = await self._lookup(inst_id, cl)
            if existing is not None:
                return existing
            raise
        except asyncio.CancelledError:
            raise  # the caller gave up mid-request: the order may exist (it stays in `sent`)
        except Exception:
            self.inflight.pop(cl, None)  # refused, or certainly never sent: nothing to follow
            self.sent.pop(cl, None)
            raise

    async def cancel(self, inst_id: str, cl_ord_id: str) -> None:
        body = {"instId": inst_id, "clOrdId": cl_ord_id}
        await self._rest.post("/api/v5/trade/cancel-order", OrderAck, body, kind=Kind.CANCEL, inst_id=inst_id)

    def rounded(self, req: OrderRequest, inst: Instrument) -> OrderRequest:
        """Size down to the lot; a limit price to the tick, never worse for us; posSide/reduceOnly by mode."""
        size = inst.round_size(req.size)
        if size <= 0:
            raise LotSizeError("51020", f"size {req.size} below minSz {inst.min_sz} after lot rounding")
        price = req.price
        if req.ord_type is OrderType.LIMIT:
            if price is None or price <= 0:
                raise ValueError("a limit order needs a positive price")
            price = inst.round_price(price, ROUND_DOWN if req.side is OrderSide.BUY else ROUND_UP)
        if self.pos_mode == "long_short":
            # open long = buy/long, close long = sell/long, open short = sell/short, close short = buy/short
            pos_side = req.pos_side or ("long" if (req.side is OrderSide.BUY) != req.reduce_only else "short")
            return replace(req, size=size, price=price, pos_side=pos_side, reduce_only=False)
        return replace(req, size=size, price=price, pos_side=None)

    def track(self, orders: list[Order]) -> list[Order]:
        for o in orders:
            if o.state.terminal:
                self.inflight.pop(o.cl_ord_id, None)
        return orders

    async def catch_up(self, inst_type: str) -> list[Order]:
        """After a reconnect (the orders channel has no snapshot): the pending orders, plus each of our
        in-flight ones by clOrdId (it may have filled or been canceled while we were away)."""
        orders: list[Order] = []
        try:
            orders = await self.pending(inst_type)
        except (ExchangeError, ExchangeUnavailable) as e:
            log.warning("okx catch-up: orders-pending failed: %s", e)
        seen = {o.cl_ord_id for o in orders}
        for cl, inst_id in list(self.inflight.items()):
            if cl in seen:
                continue
            try:
                order = await self.get(inst_id, cl)
            except (ExchangeError, ExchangeUnavailable) as e:
                log.warning("okx catch-up: order %s: %s", cl, e)
                continue
            if order is None:
                self.inflight.pop(cl, None)  # OKX says there is none (it stays in `sent`)
            else:
                orders.append(order)
        return orders

    async def _lookup(self, inst_id: str, cl: str) -> Order | None:
        """get() for the unknown-outcome rule: a failed read keeps the outcome unknown."""
        try:
            return await self.get(inst_id, cl)
        except ExchangeUnavailable as e:
            raise OutcomeUnknown(f"order {cl}: outcome unknown and the query failed ({e})") from e

    def _remember(self, cl: str) -> None:
        self.sent[cl] = None
        self.sent.move_to_end(cl)
        while len(self.sent) > self.sent_max:
            self.sent.popitem(last=False)

    async def _resolve(self, inst_id: str, cl: str, err: OutcomeUnknown) -> Order:
        log.warning("okx order %s: outcome unknown (%s): querying it by clOrdId", cl, err)
        for i in range(max(1, self.queries)):
            if i:
                await asyncio.sleep(self.query_delay)
            try:
                order = await self._lookup(inst_id, cl)
            except OutcomeUnknown:
                continue
            if order is not None:
                log.info("okx order %s: found after the unknown outcome (%s)", cl, order.state.value)
                return order
        raise OutcomeUnknown(f"order {cl}: outcome unknown ({err}); not found by clOrdId yet") from err

"""OkxExchange: `exchanges.base.Exchange` on OKX v5 (SWAP): REST for requests, the private WS for events.

Orders go over REST (POST /api/v5/trade/order; full closes POST /api/v5/trade/close-position), not WS
`op: order`. Both share one place budget, but a REST call has its own request/response and timeout, so each
placement's outcome is decided on its own, and it keeps working while the private stream is reconnecting -
exactly when an exit may be most urgent. (A WS order whose connection drops before the reply has an unknown
outcome too, and would wait for the reconnect before it could even be queried.) Placement, closes, rounding,
position modes and the unknown-outcome rule are in orders.py; protective stops in stops.py; push -> event
conversion in events.py.

Margin modes: at OKX a position is identified by instrument, posSide AND margin mode; a close, reduce-only
order or stop in another margin mode finds no position there. A stop is placed in the margin mode of the
position it protects, as GET positions reports it now (never the settings' td_mode from memory: after a
restart or a settings change they may differ). A close or reduce-only order goes in the mode it is given
(no read on the exit path); when OKX finds nothing to close in it, positions are read, and if the position
is held in the other margin mode the request is sent again there. Only then is "nothing to close" final.

events(): ORDER / POSITION / ACCOUNT from the orders, positions and account channels; after every
re-established private connection (re-logged-in and resubscribed) a RECONNECTED event, then an ORDER event
with the catch-up: GET orders-pending plus GET order by clOrdId for our orders that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from exchanges.base import (
    Balance,
    EventKind,
    ExchangeError,
    ExchangeEvent,
    ExchangePosition,
    ExchangeUnavailable,
    Instrument,
    NothingToClose,
    Order,
    OrderNotFound,
    OrderRequest,
    OrderSide,
    StopOrder,
)
from exchanges.okx import stops as _stops
from exchanges.okx.auth import Credentials
from exchanges.okx.convert import leverage_args, to_balances, to_instrument, to_position
from exchanges.okx.events import EventHub, PrivatePushes, convert_all, now_ms
from exchanges.okx.orders import CL_ORD_ID, OrderDesk
from exchanges.okx.ratelimit import Kind, RateLimiter
from exchanges.okx.records import (
    AccountConfig,
    AccountRec,
    InstrumentRec,
    LeverageAck,
    PositionRec,
)
from exchanges.okx.rest import DEMO_REST_URL, LIVE_REST_URL, OkxRest
from exchanges.okx.ws import DEMO_WS, LIVE_WS, WsConnection, WsOptions

if TYPE_CHECKING:
    from config.settings import ExchangeSettings

PosMode = Literal["net", "long_short"]
log = logging.getLogger(__name__)


class OkxExchange:
    def __init__(
        self,
        creds: Credentials,
        *,
        rest_url: str = LIVE_REST_URL,
        ws_private_url: str = f"{LIVE_WS}/private",
        demo: bool = False,
        pos_mode: PosMode = "net",
        td_mode: str = "isolated",
        inst_type: str = "SWAP",
        rest_timeout: float = 5.0,
        rest_retries: int = 3,
        ws_options: WsOptions | None = None,
        limiter: RateLimiter | None = None,
        unknown_queries: int = 3,
        unknown_query_delay: float = 0.5,
        start_timeout: float = 15.0,
        event_backlog: int = 10_000,
    ) -> None:
        self.pos_mode = pos_mode
        self.td_mode = td_mode
        self.inst_type = inst_type
        self.rest = OkxRest(creds, rest_url, demo=demo, timeout=rest_timeout, limiter=limiter,
                            retries=rest_retries)  # fmt: skip
        self.desk = OrderDesk(self.rest, self._instrument, pos_mode=pos_mode, queries=unknown_queries,
                              query_delay=unknown_query_delay)  # fmt: skip
        self._hub = EventHub(event_backlog)
        subs = [
            {"channel": "orders", "instType": inst_type},
            {"channel": "positions", "instType": inst_type},
            {"channel": "account"},
        ]
        pushes = PrivatePushes(self._hub, self.desk.track)
        self.ws = WsConnection(ws_private_url, subs, pushes, creds=creds, options=ws_options,
                               name="okx-private", on_ready=self._on_ready, clock=self.rest.now)  # fmt: skip
        self._start_timeout = start_timeout
        self._instruments: dict[str, Instrument] = {}
        self._stops: dict[str, StopOrder] = {}  # algoClOrdId -> last known stop
        self._tasks: set[asyncio.Task[None]] = set()
        self.catch_ups = 0

    @classmethod
    def from_settings(cls, settings: ExchangeSettings, **kwargs: Any) -> OkxExchange:
        """Live or demo endpoints by `settings.demo` (URLs given in kwargs win: tests)."""
        kwargs.setdefault("rest_url", DEMO_REST_URL if settings.demo else LIVE_REST_URL)
        kwargs.setdefault("ws_private_url", f"{DEMO_WS if settings.demo else LIVE_WS}/private")
        creds = Credentials.from_settings(settings)
        return cls(creds, demo=settings.demo, pos_mode=settings.pos_mode, td_mode=settings.td_mode, **kwargs)

    def __repr__(self) -> str:
        return f"OkxExchange(rest={self.rest!r}, ws={self.ws!r}, pos_mode={self.pos_mode!r})"

    async def __aenter__(self) -> OkxExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Sync the clock, check the account's position mode, load instruments, connect the private stream."""
        await self.rest.sync_clock()
        config = (await self.rest.get("/api/v5/account/config", AccountConfig, kind=Kind.BALANCE))[0]
        if config.pos_mode != f"{self.pos_mode}_mode":
            raise ExchangeError("posMode", f"account is in {config.pos_mode}, configured {self.pos_mode}")
        await self.instruments()
        self.ws.start()
        if not await self.ws.wait_ready(self._start_timeout):
            await self.ws.close()
            raise ExchangeUnavailable("OKX private WebSocket not ready (login/subscribe)")

    async def close(self) -> None:
        await self.ws.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.rest.aclose()
        self._hub.close()

    def events(self) -> AsyncIterator[ExchangeEvent]:
        return self._hub.subscribe()

    # --- reads ---

    async def instruments(self) -> list[Instrument]:
        recs = await self.rest.get("/api/v5/public/instruments", InstrumentRec, {"instType": self.inst_type},
                                   kind=Kind.INSTRUMENTS, inst_id=self.inst_type, auth=False)  # fmt: skip
        out = convert_all(recs, to_instrument, "instrument")
        self._instruments = {i.inst_id: i for i in out}
        return out

    async def balance(self) -> list[Balance]:
        recs = await self.rest.get("/api/v5/account/balance", AccountRec, kind=Kind.BALANCE)
        return [b for rec in recs for b in to_balances(rec)]

    async def positions(self) -> list[ExchangePosition]:
        """Open positions only (OKX may list a closed one with pos "0": left out here, it is flat)."""
        return await self._positions()

    async def _positions(self, inst_id: str = "") -> list[ExchangePosition]:
        params = {"instType": self.inst_type, **({"instId": inst_id} if inst_id else {})}
        recs = await self.rest.get("/api/v5/account/positions", PositionRec, params, kind=Kind.POSITIONS)
        return [p for p in convert_all(recs, to_position, "position") if p.size != 0]

    async def _margin_mode(self, inst_id: str, closing_side: OrderSide, prefer: str) -> str | None:
        """The margin mode of the position an order on `closing_side` closes (a sell closes a long), as OKX
        reports it now: `prefer` when a position is held in it, else the mode one is held in; None when
        nothing is held. Unreadable: ExchangeUnavailable (never "nothing held")."""
        direction = "long" if closing_side is OrderSide.SELL else "short"
        modes = {p.mgn_mode for p in await self._positions(inst_id) if p.side == direction}
        return prefer if prefer in modes else min(modes, default=None)

    async def pending_orders(self) -> list[Order]:
        return await self.desk.pending(self.inst_type)

    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        return await self.desk.get(inst_id, cl_ord_id)

    async def recent_orders(self, inst_id: str, since_ms: int | None = None) -> list[Order]:
        return await self.desk.history(inst_id, self.inst_type, since_ms)

    async def stop_fill(self, inst_id: str, algo_cl_ord_id: str) -> Order | None:
        """The orders a triggered stop placed (its ordIdList; they carry no clOrdId of ours), summed."""
        stop = await _stops.lookup(self.rest, inst_id, algo_cl_ord_id)
        if stop is None or not stop.order_ids:
            return None
        orders = []
        for ord_id in stop.order_ids:
            order = await self.desk.get(inst_id, ord_id=ord_id)
            if order is None:  # the stop names an order OKX cannot show: not readable, not "none"
                raise ExchangeUnavailable(f"OKX order {ord_id} of stop {algo_cl_ord_id} not found")
            orders.append(order)
        last = orders[-1]
        return replace(last, cl_ord_id=algo_cl_ord_id, size=sum((o.size for o in orders), Decimal(0)),
                       filled=sum((o.filled for o in orders), Decimal(0)),
                       pnl=sum((o.pnl for o in orders), Decimal(0)),
                       fee=sum((o.fee for o in orders), Decimal(0)))  # fmt: skip

    # --- orders ---

    async def place_order(self, req: OrderRequest) -> Order:
        try:
            return await self.desk.place(req)
        except NothingToClose:
            if not req.reduce_only:
                raise
            mode = await self._margin_mode(req.inst_id, req.side, req.td_mode)
            if mode is None or mode == req.td_mode:
                raise
            log.warning("okx order %s: nothing to reduce in %s margin; the position is %s: sent there",
                        req.cl_ord_id, req.td_mode, mode)  # fmt: skip
            return await self.desk.place(replace(req, td_mode=mode))

    async def cancel_order(self, inst_id: str, cl_ord_id: str) -> None:
        await self.desk.cancel(inst_id, cl_ord_id)

    async def close_position(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None = None
    ) -> Order:
        """POST close-position under our clOrdId (orders.py): a bare LIVE acknowledgement, or the order
        found by clOrdId after an unknown outcome. In `td_mode`, else in the margin mode the position is
        held in (see the module's docstring); NothingToClose when nothing is held in either."""
        try:
            return await self.desk.close(inst_id, cl_ord_id, side, td_mode, pos_side)
        except NothingToClose:
            mode = await self._margin_mode(inst_id, side, td_mode)
            if mode is None or mode == td_mode:
                raise
            log.warning("okx close %s: no position in %s margin; it is held in %s: closing it there",
                        cl_ord_id, td_mode, mode)  # fmt: skip
            return await self.desk.close(inst_id, cl_ord_id, side, mode, pos_side)

    async def set_leverage(
        self, inst_id: str, lever: int, mgn_mode: str, pos_side: str | None = None
    ) -> None:
        # posSide only for isolated margin in long/short mode (PROTOCOL_RULES §9)
        side = pos_side if mgn_mode == "isolated" and self.pos_mode == "long_short" else None
        body = leverage_args(inst_id, lever, mgn_mode, side)
        await self.rest.post("/api/v5/account/set-leverage", LeverageAck, body, kind=Kind.SET_LEVERAGE)

    # --- protective stops (conditional algo orders) ---

    async def place_stop(
        self,
        inst_id: str,
        algo_cl_ord_id: str,
        side: OrderSide,
        trigger_px: Decimal,
        size: Decimal,
        pos_side: str | None = None,
    ) -> StopOrder:
        if not CL_ORD_ID.match(algo_cl_ord_id):
            raise ValueError("algoClOrdId must be 1-32 letters/digits")
        inst = await self._instrument(inst_id)
        if self.pos_mode == "long_short":
            pos_side = pos_side or ("long" if side is OrderSide.SELL else "short")
        else:
            pos_side = None
        # In the margin mode of the position it protects (a stop in another one would close nothing).
        td_mode = await self._margin_mode(inst_id, side, self.td_mode) or self.td_mode
        stop = await _stops.place(self.rest, inst, algo_cl_ord_id, side, trigger_px, size, td_mode, pos_side,
                                  self.desk.queries, self.desk.query_delay)  # fmt: skip
        self._stops[algo_cl_ord_id] = stop
        return stop

    async def move_stop(self, inst_id: str, algo_cl_ord_id: str, trigger_px: Decimal) -> StopOrder:
        inst = await self._instrument(inst_id)
        known = self._stops.get(algo_cl_ord_id) or await _stops.lookup(self.rest, inst_id, algo_cl_ord_id)
        if known is None:
            raise OrderNotFound("51603", f"no stop {algo_cl_ord_id}")
        stop = await _stops.move(self.rest, inst, known, trigger_px)
        self._stops[algo_cl_ord_id] = stop
        return stop

    async def resize_stop(self, inst_id: str, algo_cl_ord_id: str, size: Decimal) -> StopOrder:
        inst = await self._instrument(inst_id)
        known = self._stops.get(algo_cl_ord_id) or await _stops.lookup(self.rest, inst_id, algo_cl_ord_id)
        if known is None:
            raise OrderNotFound("51603", f"no stop {algo_cl_ord_id}")
        stop = await _stops.resize(self.rest, inst, known, size)
        self._stops[algo_cl_ord_id] = stop
        return stop

    async def cancel_stop(self, inst_id: str, algo_cl_ord_id: str) -> None:
        await _stops.cancel(self.rest, inst_id, algo_cl_ord_id)
        self._stops.pop(algo_cl_ord_id, None)

    async def find_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder | None:
        return await _stops.lookup(self.rest, inst_id, algo_cl_ord_id)

    async def stops(self) -> list[StopOrder]:
        out = await _stops.pending(self.rest, self.inst_type)
        self._stops = {s.algo_cl_ord_id: s for s in out if s.algo_cl_ord_id}
        return out

    # --- internals ---

    async def _instrument(self, inst_id: str) -> Instrument:
        if inst_id not in self._instruments:
            await self.instruments()
        inst = self._instruments.get(inst_id)
        if inst is None:
            raise ExchangeError("51001", f"unknown instrument {inst_id[:40]}")
        return inst

    def _on_ready(self, session: int) -> None:
        if session == 1:
            return
        event = ExchangeEvent(kind=EventKind.RECONNECTED, ts_ms=now_ms(), extra={"session": str(session)})
        self._hub.publish(event)
        task = asyncio.create_task(self._catch_up(), name="okx-catch-up")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self) -> None:
        self.catch_ups += 1
        orders = await self.desk.catch_up(self.inst_type)
        if orders:
            ts = max(o.u_time_ms for o in orders)
            extra = {"source": "catch_up"}
            self._hub.publish(
                ExchangeEvent(kind=EventKind.ORDER, orders=tuple(orders), ts_ms=ts, extra=extra)
            )

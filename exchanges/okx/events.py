"""The private stream of the OKX adapter: pushes -> ExchangeEvents, fanned out to every events() consumer.

orders -> ORDER, positions -> POSITION, account -> ACCOUNT (snapshot=True for eventType "snapshot"; a
snapshot spread over pages is emitted once, when its last page arrives). Records we cannot represent are
counted in `dropped` and left out; the rest of the push is still delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from exchanges.base import EventKind, ExchangeEvent, ExchangePosition, Order
from exchanges.okx.convert import to_balances, to_order, to_position
from exchanges.okx.messages import Push, WsMessage
from exchanges.okx.wire import DecodeError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Subscription:
    """One events() consumer: a queue filled from the moment events() was called."""

    def __init__(self, hub: EventHub) -> None:
        self.queue: asyncio.Queue[ExchangeEvent | None] = asyncio.Queue()
        self._hub = hub

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ExchangeEvent:
        event = await self.queue.get()
        if event is None:
            self._hub.remove(self)
            raise StopAsyncIteration
        return event


class EventHub:
    """Fan-out with a backlog cap: a consumer that far behind gets its queue replaced by RECONNECTED
    (reconcile from REST) instead of growing without bound."""

    def __init__(self, backlog: int = 10_000) -> None:
        self._subs: list[Subscription] = []
        self._backlog = backlog
        self.published = 0

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: ExchangeEvent) -> None:
        self.published += 1
        for sub in self._subs:
            if sub.queue.qsize() >= self._backlog:
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(
                    ExchangeEvent(
                        kind=EventKind.RECONNECTED, ts_ms=event.ts_ms, extra={"reason": "consumer_overflow"}
                    )
                )
            sub.queue.put_nowait(event)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.queue.put_nowait(None)


def now_ms() -> int:
    return int(time.time() * 1000)


def convert_all(recs: list[Any], conv: Callable[[Any], T], what: str) -> list[T]:
    """conv over records; one we cannot represent (DecodeError) is logged and left out, not fatal."""
    out = []
    for rec in recs:
        try:
            out.append(conv(rec))
        except DecodeError as e:
            log.warning("okx %s record skipped: %s", what, e)
    return out


class PrivatePushes:
    """Private-channel pushes -> events; `on_orders` sees every converted order (in-flight tracking)."""

    def __init__(self, hub: EventHub, on_orders: Callable[[list[Order]], None]) -> None:
        self._hub = hub
        self._on_orders = on_orders
        self._pages: list[ExchangePosition] = []
        self.dropped = 0

    def __call__(self, msg: WsMessage) -> None:
        if not isinstance(msg, Push):
            return
        if msg.channel == "orders":
            orders = self._convert(msg, to_order)
            if orders:
                self._on_orders(orders)
                ts = max(o.u_time_ms for o in orders)
                self._hub.publish(ExchangeEvent(kind=EventKind.ORDER, orders=tuple(orders), ts_ms=ts))
        elif msg.channel == "positions":
            self._positions(msg)
        elif msg.channel == "account":
            balances = [b for bals in self._convert(msg, to_balances) for b in bals]
            ts = max((rec.u_time for rec in msg.data), default=now_ms())
            snap = msg.event_type == "snapshot"
            self._hub.publish(
                ExchangeEvent(kind=EventKind.ACCOUNT, balances=tuple(balances), snapshot=snap, ts_ms=ts)
            )

    def _positions(self, push: Push[Any]) -> None:
        positions = self._convert(push, to_position)
        ts = max((p.u_time_ms for p in positions), default=now_ms())
        if push.event_type != "snapshot":
            self._hub.publish(ExchangeEvent(kind=EventKind.POSITION, positions=tuple(positions), ts_ms=ts))
            return
        if push.cur_page in (None, 1):
            self._pages = []
        self._pages.extend(positions)
        if push.last_page is False:
            return  # more pages of this snapshot follow
        pages, self._pages = self._pages, []
        self._hub.publish(
            ExchangeEvent(kind=EventKind.POSITION, positions=tuple(pages), snapshot=True, ts_ms=ts)
        )

    def _convert(self, push: Push[Any], conv: Callable[[Any], Any]) -> list[Any]:
        out = []
        for rec in push.data:
            try:
                out.append(conv(rec))
            except DecodeError as e:
                self.dropped += 1
                log.warning("okx %s push: record dropped (%s)", push.channel, e)
        return out

"""The paper venue's events() stream: one queue per consumer, fed by every push the exchange makes."""

from __future__ import annotations

import asyncio
from typing import Any

from exchanges.base import EventKind, ExchangeEvent


class Subscription:
    """One events() consumer: a queue filled from the moment events() is called."""

    def __init__(self, hub: list[Subscription], maxsize: int) -> None:
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

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ExchangeEvent:
        event = await self.queue.get()
        if event is None:
            if self in self.hub:
                self.hub.remove(self)
            raise StopAsyncIteration
        return event


class EventHub:
    """Every events() consumer of one exchange: each push goes to all of them."""

    def __init__(self, backlog: int) -> None:
        self.subs: list[Subscription] = []
        self.backlog = backlog

    def subscribe(self) -> Subscription:
        return Subscription(self.subs, self.backlog)

    def emit(self, kind: EventKind, ts_ms: int, **kw: Any) -> None:
        event = ExchangeEvent(kind=kind, ts_ms=ts_ms, **kw)
        for sub in self.subs:
            sub.push(event)

    def close(self) -> None:
        """End every subscription's iteration."""
        for sub in self.subs:
            sub.push(None)
        self.subs.clear()

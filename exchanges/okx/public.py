"""OKX public market data as `Tick`s: tickers and trades on /ws/v5/public, candles on /ws/v5/business.

Each endpoint is one `WsConnection` (same keep-alive, back-off and resubscribe as the private stream).
A candle push becomes a Tick of its close price stamped with the local receive time (a candle carries its
bar's open time, not the time of its last trade); `on_candle` receives the Candle itself. Ticks are
lossy by nature: a consumer queue that is full drops its oldest tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from exchanges.okx.convert import Tick, ticks
from exchanges.okx.messages import Push, WsMessage
from exchanges.okx.records import Candle
from exchanges.okx.ws import LIVE_WS, WsConnection, WsOptions


class _TickQueue:
    def __init__(self, owner: OkxPublicStream, maxsize: int) -> None:
        self.queue: asyncio.Queue[Tick | None] = asyncio.Queue(maxsize)
        self._owner = owner

    def put(self, item: Tick | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self._owner.dropped_ticks += 1
        self.queue.put_nowait(item)

    def __aiter__(self) -> _TickQueue:
        return self

    async def __anext__(self) -> Tick:
        item = await self.queue.get()
        if item is None:
            self._owner._queues.discard(self)
            raise StopAsyncIteration
        return item


class OkxPublicStream:
    def __init__(
        self,
        inst_ids: Sequence[str],
        *,
        public_url: str = f"{LIVE_WS}/public",
        business_url: str = f"{LIVE_WS}/business",
        channels: Sequence[str] = ("tickers",),
        candle_bar: str | None = "1m",
        options: WsOptions | None = None,
        on_candle: Callable[[str, Candle], None] | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.inst_ids = list(inst_ids)
        self._on_candle = on_candle
        self._queue_size = queue_size
        self._queues: set[_TickQueue] = set()
        self.dropped_ticks = 0
        self.connections: list[WsConnection] = []
        if channels:
            subs = [{"channel": ch, "instId": i} for ch in channels for i in self.inst_ids]
            self.connections.append(
                WsConnection(public_url, subs, self._on_message, options=options, name="okx-public")
            )
        if candle_bar:
            subs = [{"channel": f"candle{candle_bar}", "instId": i} for i in self.inst_ids]
            self.connections.append(
                WsConnection(business_url, subs, self._on_message, options=options, name="okx-business")
            )

    def __repr__(self) -> str:
        return f"OkxPublicStream({self.inst_ids!r}, connections={self.connections!r})"

    async def start(self, wait: float | None = None) -> bool:
        """Connect; with `wait`, return whether every connection became ready within that many seconds."""
        for conn in self.connections:
            conn.start()
        if wait is None:
            return True
        results = await asyncio.gather(*(c.wait_ready(wait) for c in self.connections))
        return all(results)

    async def close(self) -> None:
        for conn in self.connections:
            await conn.close()
        for q in list(self._queues):
            q.put(None)

    def ticks(self) -> AsyncIterator[Tick]:
        """Every tick from this call on."""
        q = _TickQueue(self, self._queue_size)
        self._queues.add(q)
        return q

    def _on_message(self, msg: WsMessage) -> None:
        if not isinstance(msg, Push):
            return
        if msg.channel.startswith("candle"):
            self._candles(msg)
            return
        for tick in ticks(msg):
            self._publish(tick)

    def _candles(self, push: Push[Any]) -> None:
        inst_id = push.arg.inst_id
        now = time.time()
        for candle in push.data:
            if self._on_candle is not None:
                self._on_candle(inst_id, candle)
            self._publish(Tick(inst_id, float(candle.close), None, None, now))

    def _publish(self, tick: Tick) -> None:
        for q in self._queues:
            q.put(tick)

"""Test harness for the OKX adapter: a fake server plus an adapter started against it, and an event log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from exchanges.base import ExchangeEvent, ExchangePosition, Order, OrderState
from exchanges.okx.adapter import OkxExchange
from exchanges.okx.auth import Credentials
from exchanges.okx.ratelimit import RateLimiter
from exchanges.okx.ws import WsOptions
from tests.fakeokx import FakeOkx, eventually

KEY, SECRET, PASSPHRASE = "adapterKey7f3a", "adapterSecret9c1e", "adapterPass5b2d"
BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
FAST = WsOptions(ping_interval=0.2, pong_timeout=0.2, backoff_base=0.02, backoff_cap=0.05, stable_after=5.0,
                 open_timeout=2.0, close_timeout=0.2, login_timeout=1.0, subscribe_timeout=1.0)  # fmt: skip


class Events:
    """Collects everything events() yields, from before start()."""

    def __init__(self, ex: OkxExchange) -> None:
        self.items: list[ExchangeEvent] = []
        stream = ex.events()
        self._task = asyncio.create_task(self._pump(stream))

    async def _pump(self, stream: AsyncIterator[ExchangeEvent]) -> None:
        async for event in stream:
            self.items.append(event)

    async def wait(self, pred: Callable[[ExchangeEvent], bool], timeout: float = 5.0) -> ExchangeEvent:
        await eventually(lambda: any(pred(e) for e in self.items), timeout)
        return next(e for e in self.items if pred(e))

    async def order(self, cl: str, state: OrderState) -> Order:
        def match(o: Order) -> bool:
            return o.cl_ord_id == cl and o.state is state

        event = await self.wait(lambda e: any(match(o) for o in e.orders))
        return next(o for o in event.orders if match(o))

    async def position(self, pred: Callable[[ExchangePosition], bool]) -> ExchangePosition:
        event = await self.wait(lambda e: any(pred(p) for p in e.positions))
        return next(p for p in event.positions if pred(p))

    def index(self, pred: Callable[[ExchangeEvent], bool]) -> int:
        return next(i for i, e in enumerate(self.items) if pred(e))


class Venue:
    """A fake server and an adapter started against it (both closed by the fixture)."""

    def __init__(self) -> None:
        self.fakes: list[FakeOkx] = []
        self.exchanges: list[OkxExchange] = []

    async def fake(self, **kw: Any) -> FakeOkx:
        fake = await FakeOkx(KEY, SECRET, PASSPHRASE, **kw).start()
        self.fakes.append(fake)
        await fake.set_price(BTC, "50000")
        await fake.set_price(ETH, "3000")
        return fake

    def adapter(self, fake: FakeOkx, creds: Credentials | None = None, **kw: Any) -> OkxExchange:
        opts: dict[str, Any] = dict(demo=True, ws_options=FAST, rest_timeout=1.0, unknown_query_delay=0.05,
                                    limiter=RateLimiter(backoff_base=0.05), start_timeout=3.0)  # fmt: skip
        opts.update(kw)
        ex = OkxExchange(creds or Credentials(KEY, SECRET, PASSPHRASE), rest_url=fake.rest_url,
                         ws_private_url=fake.ws_url("private"), **opts)  # fmt: skip
        self.exchanges.append(ex)
        return ex

    async def start(
        self, fake_kw: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[FakeOkx, OkxExchange, Events]:
        fake = await self.fake(**(fake_kw or {}))
        ex = self.adapter(fake, **kw)
        events = Events(ex)
        await ex.start()
        return fake, ex, events

    async def aclose(self) -> None:
        for ex in self.exchanges:
            await ex.close()
        for fake in self.fakes:
            await fake.stop()

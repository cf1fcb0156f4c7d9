"""The fake OKX server on its own event loop in a background thread, for tests whose scalper runs as real
OS processes (the test process drives the market and the knobs from its own thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

from tests.fakeokx.server import FakeOkx

T = TypeVar("T")


class FakeThread:
    def __init__(self, key: str, secret: str, passphrase: str, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeOkx = self.call(FakeOkx(key, secret, passphrase, **kw).start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def sync(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a plain function (a knob, a read of the fake's state) on the fake's loop, not beside it."""

        async def run() -> T:
            return fn(*args, **kw)

        return self.call(run())

    def price(self, px: str | Decimal, inst_id: str = "BTC-USDT-SWAP") -> None:
        self.call(self.fake.set_price(inst_id, Decimal(px)))

    def close(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

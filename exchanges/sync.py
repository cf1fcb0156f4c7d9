"""One asyncio loop per thread for the synchronous callers of the async Exchange interface (the engine's
exchange I/O thread, the order workers). An async HTTP client is bound to the loop it was first used on, so
a client is made and used on one thread: the engine's exchange reads run on a thread of their own
(workers/exchange_io.py), with their own client and loop, never on its tick loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


def loop() -> asyncio.AbstractEventLoop:
    """This thread's loop (made on first use)."""
    current: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if current is None or current.is_closed():
        current = _local.loop = asyncio.new_event_loop()
    return current


async def until_stopped(coro: Coroutine[Any, Any, T], stop: threading.Event, poll_s: float = 0.2) -> T | None:
    """Run `coro`, cancelled once `stop` is set (by a SIGTERM handler): a process whose loop is blocked on
    a dead connection or a reconnect back-off still stops promptly. None when it was stopped."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        if stop.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return None
        await asyncio.wait({task}, timeout=poll_s)
    return task.result()


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` to completion on this thread's exchange loop (at most `timeout` seconds)."""
    return loop().run_until_complete(asyncio.wait_for(coro, timeout) if timeout else coro)

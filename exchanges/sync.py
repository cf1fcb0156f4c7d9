"""One asyncio loop per process for the synchronous callers of the async Exchange interface (the engine's
reconciler and entries, the order workers). An async HTTP client is bound to the loop it was first used
on, so every caller in a process must share this one."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


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
    """Run `coro` to completion on the process's exchange loop (at most `timeout` seconds)."""
    return loop().run_until_complete(asyncio.wait_for(coro, timeout) if timeout else coro)

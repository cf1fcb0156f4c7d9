"""A fake OKX v5 exchange on loopback for end-to-end tests of the OKX adapter (see server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.fakeokx.server import FakeOkx, Fault, Req

__all__ = ["FakeOkx", "Fault", "Req", "eventually"]


async def eventually(cond: Callable[[], object], timeout: float = 5.0, step: float = 0.005) -> None:
    """Wait until cond() is truthy (AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)

"""Client-side OKX rate limits (PROTOCOL_RULES §7): sliding windows keyed by (kind, instId), plus back-off.

A request of a kind takes a slot in the window of its key; when the window is full, `acquire` waits until
the oldest slot leaves it. Place-order is one budget per instrument SHARED by REST and WS `op: order`
(both call `acquire(Kind.PLACE, inst_id)`); cancel and amend have their own. Per-user limits ignore instId.
After a 50011, `penalize` blocks the key for an exponentially growing pause (capped); `success` resets it.
Clock and sleep are injectable so tests run without real waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from exchanges.okx import counts


class Kind(StrEnum):
    PLACE = "place"  # POST trade/order and WS op order (also one-order batches)
    CANCEL = "cancel"
    AMEND = "amend"
    GET_ORDER = "get_order"
    ORDERS_PENDING = "orders_pending"
    ORDERS_HISTORY = "orders_history"
    CLOSE_POSITION = "close_position"
    SET_LEVERAGE = "set_leverage"
    POSITIONS = "positions"
    BALANCE = "balance"
    INSTRUMENTS = "instruments"  # keyed by instType (pass it as inst_id)
    CANDLES = "candles"
    TICKERS = "tickers"
    ALGO = "algo"  # place / amend / cancel algo orders (assumed 20/2 s: not in PROTOCOL_RULES)


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    period: float  # seconds
    per_instrument: bool = True


DEFAULT_LIMITS: Mapping[Kind, Limit] = {
    Kind.PLACE: Limit(60, 2.0),
    Kind.CANCEL: Limit(60, 2.0),
    Kind.AMEND: Limit(60, 2.0),
    Kind.GET_ORDER: Limit(60, 2.0),
    Kind.ORDERS_PENDING: Limit(60, 2.0, per_instrument=False),
    Kind.ORDERS_HISTORY: Limit(40, 2.0, per_instrument=False),
    # Per user (not per instrument) where the scope was unsure: stricter can only delay, never 50011.
    Kind.CLOSE_POSITION: Limit(20, 2.0, per_instrument=False),
    Kind.SET_LEVERAGE: Limit(20, 2.0, per_instrument=False),
    Kind.POSITIONS: Limit(10, 2.0, per_instrument=False),
    Kind.BALANCE: Limit(10, 2.0, per_instrument=False),
    Kind.INSTRUMENTS: Limit(20, 2.0),
    Kind.CANDLES: Limit(40, 2.0, per_instrument=False),
    Kind.TICKERS: Limit(20, 2.0, per_instrument=False),
    Kind.ALGO: Limit(20, 2.0),
}


class _Key:
    __slots__ = ("blocked_until", "limit", "lock", "sent", "strikes")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.sent: deque[float] = deque(maxlen=limit.count)  # send times of the last `count` requests
        self.lock = asyncio.Lock()  # FIFO among waiters of one key; other keys never wait on it
        self.blocked_until = 0.0
        self.strikes = 0


class RateLimiter:
    """`await acquire(kind, inst_id)` before each request; `penalize` on 50011, `success` on a 0 reply.

    slack: extra seconds added to every window, because OKX counts arrival times and ours are send times.
    """

    def __init__(
        self,
        limits: Mapping[Kind, Limit] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        slack: float = 0.05,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._clock = clock
        self._sleep = sleep
        self._slack = slack
        self._base = backoff_base
        self._cap = backoff_cap
        self._keys: dict[tuple[Kind, str], _Key] = {}

    def _key(self, kind: Kind, inst_id: str) -> _Key:
        limit = self._limits[kind]
        k = (kind, inst_id if limit.per_instrument else "")
        state = self._keys.get(k)
        if state is None:
            state = self._keys[k] = _Key(limit)
        return state

    def _wait(self, st: _Key, now: float) -> float:
        wait = st.blocked_until - now
        if len(st.sent) == st.limit.count:
            wait = max(wait, st.sent[0] + st.limit.period + self._slack - now)
        return wait

    def delay(self, kind: Kind, inst_id: str = "") -> float:
        """Seconds an acquire would wait now (0 when a slot is free)."""
        return max(0.0, self._wait(self._key(kind, inst_id), self._clock()))

    def try_acquire(self, kind: Kind, inst_id: str = "") -> bool:
        """Take a slot if one is free right now (and nobody is queued for it), without waiting."""
        st = self._key(kind, inst_id)
        now = self._clock()
        if st.lock.locked() or self._wait(st, now) > 0:
            return False
        st.sent.append(now)
        return True

    async def acquire(self, kind: Kind, inst_id: str = "") -> None:
        """Wait for a slot of (kind, inst_id) and take it. Cancellation while waiting takes no slot."""
        st = self._key(kind, inst_id)
        async with st.lock:
            while True:
                now = self._clock()
                wait = self._wait(st, now)
                if wait <= 0:
                    st.sent.append(now)
                    return
                await self._sleep(wait)

    def penalize(self, kind: Kind, inst_id: str = "", seconds: float | None = None) -> float:
        """After a rate-limit reply: block the key for base * 2**strikes (capped). `seconds` overrides the
        base (e.g. a server hint). Returns the pause applied."""
        st = self._key(kind, inst_id)
        counts.RATE_LIMITED[kind.value] += 1
        base = self._base if seconds is None else seconds
        pause = min(self._cap, base * (2 ** min(st.strikes, 32)))
        st.strikes += 1
        st.blocked_until = max(st.blocked_until, self._clock() + pause)
        return pause

    def success(self, kind: Kind, inst_id: str = "") -> None:
        """A request of this key went through: the next penalty starts from the base again."""
        self._key(kind, inst_id).strikes = 0

    def strikes(self, kind: Kind, inst_id: str = "") -> int:
        return self._key(kind, inst_id).strikes

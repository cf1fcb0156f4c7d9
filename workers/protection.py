"""Protective stops that may be live at the exchange, per symbol, until each is confirmed gone.

A stop can outlive its position: its placement may land after the position closed (the reply lost, the
request held up on its way), after the job that was to cancel it looked and found nothing. While it may be
live it can close the symbol's next position. So a stop is recorded before its request is sent, atomically
with a check that its position is still live, and forgotten only once it is known gone: cancelled,
triggered, or never placed. The symbol's next entry waits until the stops of its earlier positions are all
forgotten (the `earlier_stop_live` gate of statemachines/risk.py).

    {prefix}:{SYMBOL}:stops   HASH   stop id (algoClOrdId) -> "placed": the exchange acknowledged it, so
                                     its absence from the live stops means it is gone; or the time (epoch
                                     seconds) its placement was last sent with no answer yet: until
                                     LAND_S after it, its absence proves nothing

Written by the protect and unprotect jobs (workers/orders.py) and by the reconciler's sweep; read by the
entries with the risk snapshot (workers/riskstate.py). A stop the record lost (a Redis restart) is still
cancelled when seen live: the reconciler cancels live stops of positions that are over on every pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from redis.client import Pipeline

from exchanges.base import Exchange, OrderNotFound
from statemachines.intents import parse_client_order_id
from statemachines.keys import Keys
from statemachines.lifecycle import State
from statemachines.redis_text import as_str

PLACED = "placed"
# A placement whose outcome was unknown lands within this long of being sent, or never: the REST timeout
# (5 s) and the adapter's queries after it, with margin. Its absence from the exchange until then proves
# nothing.
LAND_S = 15.0


class StopOutcomePending(Exception):
    """The stop is not at the exchange, but its placement may still land: ask again later (RQ retries)."""


def stop_position(stop_id: str) -> str:
    """The position a stop of ours protects ("" for a stop the bot did not place)."""
    cid = parse_client_order_id(stop_id)
    return cid.position_id if cid else ""


def may_land(recorded: str, now: float) -> bool:
    """Whether a recorded stop missing from the exchange may still appear there."""
    return recorded != PLACED and now - float(recorded) < LAND_S


def earlier_stops(recorded: Iterable[str], live_positions: Iterable[str]) -> tuple[str, ...]:
    """The recorded stops whose positions are over: any of them may still close a new position."""
    live = set(live_positions)
    return tuple(sorted(s for s in recorded if stop_position(s) not in live))


class StopRecord:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def announce(self, symbol: str, stop_id: str, position_id: str, now: float) -> bool:
        """Record that the stop's placement is about to be sent, if its position is still live; False
        (nothing recorded) when it is over. One transaction with the read of the position's state, so a
        close after it is sure to find the record, and the stop's job after the close sure to wait."""
        key, pos_key = self.keys.stops(symbol), self.keys.pos(symbol, position_id)

        def apply(pipe: Pipeline) -> bool:
            state = pipe.hget(pos_key, "state")
            if state is None or as_str(state) == State.CLOSED:
                return False
            pipe.multi()
            pipe.hset(key, stop_id, repr(now))
            return True

        return bool(self.client.transaction(apply, pos_key, value_from_callable=True))

    def placed(self, symbol: str, stop_id: str) -> None:
        self.client.hset(self.keys.stops(symbol), stop_id, PLACED)

    def unanswered(self, symbol: str, stop_id: str, now: float) -> None:
        """Its placement went unanswered: sent by now at the latest (a send can wait out rate-limit pauses
        after it was announced), so it may land until LAND_S from now."""
        self.client.hset(self.keys.stops(symbol), stop_id, repr(now))

    def get(self, symbol: str, stop_id: str) -> str | None:
        raw = self.client.hget(self.keys.stops(symbol), stop_id)
        return None if raw is None else as_str(raw)

    def all(self, symbols: Iterable[str]) -> dict[str, dict[str, str]]:
        """symbol -> stop id -> recorded value, in one round trip."""
        symbols = list(symbols)
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hgetall(self.keys.stops(symbol))
        replies = pipe.execute()
        return {s: {as_str(k): as_str(v) for k, v in raw.items()}
                for s, raw in zip(symbols, replies, strict=True)}

    def queue_ids(self, pipe: Pipeline, symbol: str) -> None:
        """The symbol's recorded stop ids, on the caller's pipeline (the risk snapshot's round trip)."""
        pipe.hkeys(self.keys.stops(symbol))

    @staticmethod
    def decode_ids(reply: list[Any]) -> frozenset[str]:
        return frozenset(as_str(x) for x in reply)

    def forget(self, symbol: str, stop_id: str, *, if_still: str | None = None) -> bool:
        """Confirmed gone: remove it. `if_still`: only if it is still recorded with that value (a newer
        placement recorded meanwhile is not forgotten with the old one)."""
        key = self.keys.stops(symbol)
        if if_still is None:
            return bool(self.client.hdel(key, stop_id))

        def apply(pipe: Pipeline) -> bool:
            if as_str(pipe.hget(key, stop_id) or b"") != if_still:
                return False
            pipe.multi()
            pipe.hdel(key, stop_id)
            return True

        return bool(self.client.transaction(apply, key, value_from_callable=True))


async def retire(ex: Exchange, record: StopRecord, symbol: str, stop_id: str, now: float) -> str:
    """The stop of a position that is over: cancelled if live, forgotten once known gone. Raises
    StopOutcomePending while its placement may still land (the caller asks again later), and whatever the
    exchange raises when it cannot be read or asked (unknown is never gone)."""
    recorded = record.get(symbol, stop_id)  # first: a value older than the exchange's answer below
    if any(s.algo_cl_ord_id == stop_id and s.state == "live" for s in await ex.stops()):
        done = "protective stop cancelled"
        try:
            await ex.cancel_stop(symbol, stop_id)
        except OrderNotFound:
            # Gone since the read: the reconciler's sweep cancelled it, or it triggered. What this is for
            # holds; failing would only queue a retry ahead of other orders.
            done = "protective stop already gone"
        record.forget(symbol, stop_id)
        return done
    if recorded is None:
        return "no protective stop"  # never sent: its position is over, so no job sends it any more
    if may_land(recorded, now):
        ago = now - float(recorded)
        raise StopOutcomePending(f"stop {stop_id} not at the exchange yet; sent {ago:.1f}s ago")
    record.forget(symbol, stop_id, if_still=recorded)
    return "protective stop gone"

"""`PaperClient`: the `Exchange` the engine and the workers use to reach the paper venue (venue.py).

It sends each request over the venue's Redis stream and waits for its reply (the protocol: wire.py); a reply
that does not come in time is an unknown outcome for an order and an unreadable exchange for a read, exactly
as with a real venue.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
import redis

from exchanges import base
from exchanges.base import (
    Balance,
    ExchangeError,
    ExchangeEvent,
    ExchangePosition,
    ExchangeUnavailable,
    Instrument,
    Order,
    OrderRequest,
    OrderSide,
    OutcomeUnknown,
    StopOrder,
)
from exchanges.paper.wire import READS, RESULTS, reply_key, requests_key
from statemachines.keys import Keys

_ERRORS = {
    cls.__name__: cls for cls in vars(base).values() if isinstance(cls, type) and issubclass(cls, Exception)
}


class _Pending:
    """A request written to the venue, with its BLPOP, on a connection of its own; the reply not read yet."""

    def __init__(
        self, client: redis.Redis, reply_key: str, timeout_s: float, commands: list[tuple[Any, ...]]
    ) -> None:
        self.client, self.reply_key, self.timeout_s = client, reply_key, timeout_s
        self.pool = client.connection_pool
        conn = self.conn = self.pool.get_connection()
        packed = conn.pack_commands(commands)
        try:
            # After a dropped connection it is sent again, as redis-py retries a command: the copy has the
            # same request id, and the venue executes an order request id at most once (reads are harmless).
            conn.retry.call_with_retry(
                lambda: conn.send_packed_command(packed), lambda _err: conn.disconnect()
            )
        except BaseException:
            self.abandon()
            raise

    def receive(self) -> Any:
        """The BLPOP's reply: [key, body], or None when the venue did not answer in time."""
        conn, self.conn = self.conn, None
        assert conn is not None, "receive() once"
        try:
            conn.read_response()  # the request's stream id; an error reply raises
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()
            # The request may or may not have arrived: wait for its reply as a retried BLPOP would.
            return self.client.blpop([self.reply_key], timeout=self.timeout_s)
        except BaseException:
            conn.disconnect()  # a reply may still be on its way: this connection cannot be reused
            raise
        finally:
            self.pool.release(conn)

    def abandon(self) -> None:
        """The caller will not wait: close the connection its reply would arrive on."""
        if self.conn is not None:
            self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None


class PaperClient:
    """`Exchange` over the venue's request stream; used by the engine and the order workers."""

    def __init__(self, client: redis.Redis, keys: Keys, timeout_s: float = 2.0) -> None:
        self.client = client
        self.keys = keys
        self.timeout_s = timeout_s

    async def _call(self, op: str, **args: Any) -> Any:
        """One request: sent at once, answered after the caller's other work of this loop turn (a worker
        loads its position while the venue reads the exchange position for it)."""
        pending = self._send(op, args)
        try:
            await asyncio.sleep(0)
        except BaseException:
            pending.abandon()
            raise
        return self._answer(op, pending.receive())

    def _send(self, op: str, args: dict[str, Any]) -> _Pending:
        rid = secrets.token_hex(8)
        req = args.get("req")
        if isinstance(req, OrderRequest):
            cid = req.cl_ord_id
        else:
            cid = str(args.get("cl_ord_id" if op == "close_position" else "algo_cl_ord_id", ""))
        encoded = msgspec.json.encode(args)
        fields = {"id": rid, "op": op, "args": encoded, "cid": cid, "sent": repr(time.time())}
        flat = [x for kv in fields.items() for x in kv]
        # The request and the wait for its reply in one round trip.
        commands = [("XADD", requests_key(self.keys), "MAXLEN", "~", 10_000, "*", *flat),
                    ("BLPOP", reply_key(self.keys, rid), self.timeout_s)]  # fmt: skip
        return _Pending(self.client, reply_key(self.keys, rid), self.timeout_s, commands)

    def _answer(self, op: str, got: Any) -> Any:
        if got is None:
            if op in READS:
                raise ExchangeUnavailable(f"paper venue did not answer {op} within {self.timeout_s}s")
            raise OutcomeUnknown(f"paper venue did not answer {op} within {self.timeout_s}s")
        body = msgspec.json.decode(got[1])
        if not body.get("ok"):
            cls = _ERRORS.get(body.get("type", ""), ExchangeError)
            if not issubclass(cls, ExchangeError):
                cls = ExchangeError
            raise cls(body.get("code", ""), body.get("msg", ""))
        tp = RESULTS[op]
        return None if tp is None else msgspec.convert(body.get("result"), tp)

    async def instruments(self) -> list[Instrument]:
        return await self._call("instruments")

    async def balance(self) -> list[Balance]:
        return await self._call("balance")

    async def positions(self) -> list[ExchangePosition]:
        return await self._call("positions")

    async def pending_orders(self) -> list[Order]:
        return await self._call("pending_orders")

    async def place_order(self, req: OrderRequest) -> Order:
        return await self._call("place_order", req=req)

    async def close_position(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None = None
    ) -> Order:
        return await self._call("close_position", inst_id=inst_id, cl_ord_id=cl_ord_id, side=side,
                                td_mode=td_mode, pos_side=pos_side)  # fmt: skip

    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        return await self._call("get_order", inst_id=inst_id, cl_ord_id=cl_ord_id)

    async def recent_orders(self, inst_id: str, since_ms: int | None = None) -> list[Order]:
        return await self._call("recent_orders", inst_id=inst_id, since_ms=since_ms)

    async def stop_fill(self, inst_id: str, algo_cl_ord_id: str) -> Order | None:
        return await self._call("stop_fill", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id)

    async def cancel_order(self, inst_id: str, cl_ord_id: str) -> None:
        await self._call("cancel_order", inst_id=inst_id, cl_ord_id=cl_ord_id)

    async def set_leverage(
        self, inst_id: str, lever: int, mgn_mode: str, pos_side: str | None = None
    ) -> None:
        await self._call("set_leverage", inst_id=inst_id, lever=lever, mgn_mode=mgn_mode, pos_side=pos_side)

    async def place_stop(
        self, inst_id: str, algo_cl_ord_id: str, side: OrderSide, trigger_px: Decimal, size: Decimal,
        pos_side: str | None = None,
    ) -> StopOrder:  # fmt: skip
        return await self._call("place_stop", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id, side=side.value,
                                trigger_px=str(trigger_px), size=str(size), pos_side=pos_side)  # fmt: skip

    async def move_stop(self, inst_id: str, algo_cl_ord_id: str, trigger_px: Decimal) -> StopOrder:
        return await self._call(
            "move_stop", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id, trigger_px=str(trigger_px)
        )

    async def resize_stop(self, inst_id: str, algo_cl_ord_id: str, size: Decimal) -> StopOrder:
        return await self._call("resize_stop", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id, size=str(size))

    async def cancel_stop(self, inst_id: str, algo_cl_ord_id: str) -> None:
        await self._call("cancel_stop", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id)

    async def stops(self) -> list[StopOrder]:
        return await self._call("stops")

    async def find_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder | None:
        return await self._call("find_stop", inst_id=inst_id, algo_cl_ord_id=algo_cl_ord_id)

    async def events(self) -> AsyncIterator[ExchangeEvent]:  # the venue publishes events itself
        await asyncio.sleep(0)
        return
        yield

    async def close(self) -> None:
        return None

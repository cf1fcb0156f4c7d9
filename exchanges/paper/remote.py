"""The paper exchange as a venue the processes talk to, like a real one.

`PaperVenue` is the single owner of the paper account (one writer): it runs in the `account` process, takes
quotes from the feed's tick streams, serves requests from a Redis stream and publishes the venue's order and
position events to the engine's event streams. `PaperClient` implements `Exchange` for the other processes
(engine, workers) by sending requests and waiting for replies; a reply that does not come in time is an
unknown outcome for an order and an unreadable exchange for a read, exactly as with a real venue.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import msgspec
import redis

from exchanges import base
from exchanges.base import (
    Balance,
    EventKind,
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
from exchanges.paper import ledger
from exchanges.paper.exchange import PaperExchange
from exchanges.paper.retention import PaperRetention
from statemachines.keys import Keys
from workers.events import EventBus, order_fields, position_fields

log = logging.getLogger("scalper.paper")

# op -> the type its result decodes to
RESULTS: dict[str, Any] = {
    "instruments": list[Instrument], "balance": list[Balance], "positions": list[ExchangePosition],
    "pending_orders": list[Order], "place_order": Order, "close_position": Order, "get_order": Order | None,
    "cancel_order": None,
    "set_leverage": None, "place_stop": StopOrder, "move_stop": StopOrder, "resize_stop": StopOrder,
    "cancel_stop": None,
    "stops": list[StopOrder], "recent_orders": list[Order], "stop_fill": Order | None,
    "find_stop": StopOrder | None,
}  # fmt: skip
READS = frozenset({"instruments", "balance", "positions", "pending_orders", "get_order", "stops",
                   "recent_orders", "stop_fill", "find_stop"})  # fmt: skip
_ERRORS = {
    cls.__name__: cls for cls in vars(base).values() if isinstance(cls, type) and issubclass(cls, Exception)
}


def _requests(keys: Keys) -> str:
    return f"{keys.prefix}:paper:requests"


def faults_key(keys: Keys) -> str:
    """A list of JSON fault specs, e.g. {"kind": "delay", "op": "place_order", "seconds": 2}: the venue
    injects each into the paper exchange (see exchanges.paper.Fault). For tests and the chaos suite."""
    return f"{keys.prefix}:paper:faults"


def served_key(keys: Keys) -> str:
    """The venue's log of served requests (op, client order id, when the caller sent it, when served):
    for latency measurements and for people; trimmed."""
    return f"{keys.prefix}:paper:served"


def _reply(keys: Keys, rid: str) -> str:
    return f"{keys.prefix}:paper:reply:{rid}"


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class PaperVenue:
    """Runs the PaperExchange: quotes in, requests in, events out. One instance per paper account."""

    def __init__(
        self,
        client: redis.Redis,
        exchange: PaperExchange,
        keys: Keys,
        symbols: list[str],
        *,
        history_s: float = 0,
        spread_bps: float = 0.0,
        accept: Callable[[str, float, float], bool] | None = None,
    ) -> None:
        """`history_s`: finished orders, stops, fills and served requests are kept this long (0 = forever;
        the account process passes `exchange.paper_history_s`); `spread_bps`: the quote made around a tick
        that has no bid and ask (`exchange.paper_spread_bps`); `accept(symbol, ts, px)`: whether a tick may
        move the venue's market (the account process passes the engine's tick guard: one bad print in the
        feed would otherwise trigger stops and liquidate at a price no exchange ever traded)."""
        self.client = client
        self.exchange = exchange
        self.keys = keys
        self.symbols = symbols
        self.bus = EventBus(client, keys)
        self.cursors = {keys.ticks(s): "$" for s in symbols}
        self.request_cursor = "$"
        self._events = exchange.events()
        self.served = 0
        self.quotes = 0
        self.retention = PaperRetention(exchange.state, served_key(keys), history_s)
        self.spread_bps = Decimal(repr(spread_bps))
        self.accept = accept
        self.dropped = 0  # ticks the guard kept from moving the market

    async def start(self) -> None:
        # Resume quotes from the newest tick (a stale quote would fill at a price long gone).
        for key in list(self.cursors):
            last = self.client.xrevrange(key, count=1)
            self.cursors[key] = _s(last[0][0]) if last else "0-0"
            if last:
                await self._quote(key, last[0][1])
        # Serve what is still in the request stream (a caller may be waiting); `_serve` claims each request
        # id before executing it, so one executed just before a crash is never executed again.
        self.request_cursor = "0-0"

    async def run_once(self, block_ms: int = 20) -> None:
        streams = {**self.cursors, _requests(self.keys): self.request_cursor}
        # Injected faults first, then the wait for quotes and requests: one round trip per turn.
        pipe = self.client.pipeline(transaction=False)
        pipe.lpop(faults_key(self.keys), 100)
        pipe.xread(streams, count=500, block=block_ms or None)
        faults, reply = pipe.execute()
        self._take_faults(faults or [])
        if await self.exchange.land_held():  # requests an injected "late" fault held up
            self._publish_events()
        for key, entries in reply or []:
            key = _s(key)
            if key == _requests(self.keys):
                for entry_id, raw in entries:
                    self.request_cursor = _s(entry_id)
                    await self._serve({_s(k): _s(v) for k, v in raw.items()})
                    self.client.xdel(key, entry_id)
            else:
                for _id, raw in entries:
                    await self._quote(key, raw)
                self.cursors[key] = _s(entries[-1][0])
        self._publish_events()
        self.retention.run_once(self.exchange.clock())

    def _take_faults(self, specs: list[bytes]) -> None:
        for raw in specs:
            try:
                spec = dict(msgspec.json.decode(raw))
                kind, op, count = spec.pop("kind"), spec.pop("op", None), int(spec.pop("count", 1))
                self.exchange.inject(kind, count, op=op, **spec)
                log.warning("paper: injected %s on %s (x%d) %s", kind, op, count, spec)
            except (msgspec.DecodeError, KeyError, TypeError, ValueError) as err:
                log.warning("paper: bad fault spec %r: %s", raw, err)

    async def _quote(self, key: str, raw: dict[Any, Any]) -> None:
        f = {_s(k): _s(v) for k, v in raw.items()}
        try:
            px = Decimal(f["px"])
            if f.get("bid") and f.get("ask"):
                bid, ask = Decimal(f["bid"]), Decimal(f["ask"])
            else:
                bid, ask = ledger.quote_around(px, self.spread_bps)
            if not (px > 0 and bid > 0 and ask >= bid):
                return
            ts = float(f.get("ts") or 0)
        except (KeyError, ArithmeticError, ValueError):
            return
        symbol = Keys.symbol_of(key)
        if self.accept is not None and not self.accept(symbol, ts, float(px)):
            self.dropped += 1
            return
        await self.exchange.on_quote(symbol, bid, ask, ts)
        self.quotes += 1

    async def _serve(self, req: dict[str, str]) -> None:
        rid, op = req.get("id", ""), req.get("op", "")
        if not rid or op not in RESULTS:
            return
        # At most once, as at a real venue: claimed before it runs, so a crash between running it and
        # removing it from the stream cannot run it twice (a filled order's id is no longer "pending", so a
        # replayed entry would be a second order). A lost reply is the caller's unknown outcome. A read
        # changes nothing, so it needs no claim: served twice, it only answers twice.
        claim = f"{self.keys.prefix}:paper:served:{rid}"
        if op not in READS and not self.client.set(claim, "1", nx=True, ex=300):
            return
        try:
            args = msgspec.json.decode(req.get("args", "{}").encode())
            if op == "place_order":
                args = {"req": msgspec.convert(args["req"], OrderRequest)}
            elif op == "close_position":
                args = {**args, "side": OrderSide(args["side"])}
            elif op == "place_stop":
                args = {**args, "side": OrderSide(args["side"]), "trigger_px": Decimal(args["trigger_px"]),
                        "size": Decimal(args["size"])}  # fmt: skip
            elif op == "move_stop":
                args = {**args, "trigger_px": Decimal(args["trigger_px"])}
            elif op == "resize_stop":
                args = {**args, "size": Decimal(args["size"])}
            result = await getattr(self.exchange, op)(**args)
            body = {"ok": True, "result": result}
        except OutcomeUnknown as err:  # injected: the caller must see a lost reply, so send none
            log.info("paper: %s outcome withheld (%s)", op, err)
            return
        except ExchangeUnavailable:
            return
        except ExchangeError as err:
            body = {"ok": False, "type": type(err).__name__, "code": err.code, "msg": err.msg}
        except (msgspec.ValidationError, KeyError, TypeError, ValueError) as err:
            body = {"ok": False, "type": "ExchangeError", "code": "51000", "msg": f"bad request: {err}"}
        key = _reply(self.keys, rid)
        pipe = self.client.pipeline()
        pipe.lpush(key, msgspec.json.encode(body))
        pipe.expire(key, 60)
        if op in ("place_order", "close_position", "cancel_order", "place_stop", "cancel_stop"):
            cid = req.get("cid", "")
            pipe.xadd(served_key(self.keys), {"op": op, "cid": cid, "sent": req.get("sent", ""),
                                              "served": repr(time.time()), "ok": "1" if body["ok"] else "0"},
                      maxlen=10_000, approximate=True)  # fmt: skip
        pipe.execute()
        self.served += 1
        self._publish_events()

    def _publish_events(self) -> None:
        queue = self._events.queue  # type: ignore[attr-defined]  # the venue drains its own subscription
        while not queue.empty():
            event = queue.get_nowait()
            if event is not None:
                self.publish(event)

    def publish(self, event: ExchangeEvent) -> None:
        if event.kind is EventKind.RECONNECTED:  # events were dropped: the engines must reconcile
            self.client.hset(self.keys.exchange(), "reconnected_at", str(event.ts_ms / 1000))
            return
        pipe = self.client.pipeline(transaction=False)
        for order in event.orders:
            self.bus.publish(order.inst_id, order_fields(order, "paper"), pipe)
        for pos in event.positions:
            self.bus.publish(pos.inst_id, position_fields(pos, snapshot=event.snapshot, source="paper"), pipe)
        pipe.execute()


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
        commands = [("XADD", _requests(self.keys), "MAXLEN", "~", 10_000, "*", *flat),
                    ("BLPOP", _reply(self.keys, rid), self.timeout_s)]  # fmt: skip
        return _Pending(self.client, _reply(self.keys, rid), self.timeout_s, commands)

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

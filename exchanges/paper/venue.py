"""The paper exchange as a venue the processes talk to, like a real one.

`PaperVenue` is the single owner of the paper account (one writer): it runs in the `account` process, takes
quotes from the feed's tick streams, serves requests from a Redis stream (the protocol: wire.py) and publishes
the venue's order and position events to the engine's event streams. The other processes reach it through
`PaperClient` (client.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import redis

from exchanges.base import (
    EventKind,
    ExchangeError,
    ExchangeEvent,
    ExchangeUnavailable,
    OrderRequest,
    OrderSide,
    OutcomeUnknown,
)
from exchanges.paper import ledger
from exchanges.paper.exchange import PaperExchange
from exchanges.paper.retention import PaperRetention
from exchanges.paper.wire import READS, RESULTS, faults_key, reply_key, requests_key, served_key
from statemachines.keys import Keys
from statemachines.redis_text import as_str
from workers.events import EventBus, order_fields, position_fields

log = logging.getLogger("scalper.paper")


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
            self.cursors[key] = as_str(last[0][0]) if last else "0-0"
            if last:
                await self._quote(key, last[0][1])
        # Serve what is still in the request stream (a caller may be waiting); `_serve` claims each request
        # id before executing it, so one executed just before a crash is never executed again.
        self.request_cursor = "0-0"

    async def run_once(self, block_ms: int = 20) -> None:
        streams = {**self.cursors, requests_key(self.keys): self.request_cursor}
        # Injected faults first, then the wait for quotes and requests: one round trip per turn.
        pipe = self.client.pipeline(transaction=False)
        pipe.lpop(faults_key(self.keys), 100)
        pipe.xread(streams, count=500, block=block_ms or None)
        faults, reply = pipe.execute()
        self._take_faults(faults or [])
        if await self.exchange.land_held():  # requests an injected "late" fault held up
            self._publish_events()
        for key, entries in reply or []:
            key = as_str(key)
            if key == requests_key(self.keys):
                for entry_id, raw in entries:
                    self.request_cursor = as_str(entry_id)
                    await self._serve({as_str(k): as_str(v) for k, v in raw.items()})
                    self.client.xdel(key, entry_id)
            else:
                for _id, raw in entries:
                    await self._quote(key, raw)
                self.cursors[key] = as_str(entries[-1][0])
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
        f = {as_str(k): as_str(v) for k, v in raw.items()}
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
        key = reply_key(self.keys, rid)
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

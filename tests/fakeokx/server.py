"""A fake OKX v5 server on loopback (aiohttp.web): the REST endpoints the adapter uses, with real signature
verification, and the /ws/v5/public, /private (login checked), /business WebSockets.

Orders fill from the price path the test drives (`await set_price(inst, px)`); positions and the account
change and are pushed (orders: no snapshot on subscribe; positions/account: a snapshot on subscribe, then
event_update pushes, and a regular snapshot every `snapshot_interval` seconds, ~5 at OKX: pushes.py).
A connection with no traffic either way for `idle_timeout` seconds (30 at OKX) is closed with 4004.
Knobs: `fault()` (error codes for the next N calls, delays/timeouts that did or did not execute), `refuse`,
`drop()`, `mute()` (stop answering pings), `notice()` (64008), `send_raw()`, `clock_offset` (the server's
clock), `snapshot_page_size`, `take_snapshot()` / `send_snapshot()` (a snapshot taken now, delivered
later: stale), `engine.flat_records`, `engine.candles.seed()`; `oversize` (engine.py: how a closing order
larger than the position ends). Observations: `requests`, `count()`, `logins`, `pings`, `connects`,
`idle_closes`, `subscribe_requests`. Every message shape starts from a real one (templates.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakeokx import handlers as h
from tests.fakeokx import pushes, records, wire
from tests.fakeokx import templates as t
from tests.fakeokx.engine import Engine, FOrder, FPos, Refused
from tests.fakeokx.pushes import PRIVATE_CHANNELS, PUBLIC_CHANNELS, SNAPSHOT_CHANNELS, UID, Snapshot
from tests.fakeokx.records import now_ms


@dataclass
class Fault:
    code: str = ""  # reply with this code ("": the normal reply; 50004 after a delay without execution)
    count: int = 1  # for the next `count` calls of the path
    http_status: int | None = None  # default: the docs' status for the code
    delay: float = 0.0  # seconds before replying (longer than the client's timeout = a timeout)
    execute: bool = False  # perform the request anyway (before the delay / error reply)
    late: float | None = None  # perform it this many seconds after it arrived (in the background)
    method: str = ""  # only for this method ("" = any)


@dataclass
class Req:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    t: float  # time.monotonic() on arrival


@dataclass(eq=False)
class Conn:
    kind: str
    ws: web.WebSocketResponse
    request: web.Request
    conn_id: str
    logged_in: bool = False
    muted: bool = False
    subs: list[dict[str, str]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_io: float = field(default_factory=time.monotonic)  # the last frame either way
    snapshot_due: dict[int, float] = field(default_factory=dict)  # sub index -> when its next one is due


class FakeOkx:
    def __init__(self, api_key: str, secret: str, passphrase: str, *, pos_mode: str = "net_mode",
                 demo: bool = True, cash: Decimal = Decimal(10_000), oversize: str = "resize",
                 snapshot_interval: float = 5.0, snapshot_lag: float = 0.0,
                 idle_timeout: float = 30.0) -> None:  # fmt: skip
        self._creds = (api_key, secret, passphrase)
        self.demo = demo
        self.snapshot_interval = snapshot_interval  # 0: only the one on subscribe
        self.snapshot_lag = snapshot_lag  # a regular snapshot is sent this long after it was taken
        self.idle_timeout = idle_timeout
        self.idle_closes = 0
        self.engine = Engine(t.instruments(), pos_mode=pos_mode, cash=cash, oversize=oversize)
        self.engine.changed = self._changed
        self.requests: list[Req] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.conns: dict[str, set[Conn]] = defaultdict(set)
        self.connects: dict[str, int] = defaultdict(int)
        self.refuse: set[str] = set()  # kinds whose WS handshakes are answered 503
        self.logins = 0
        self.login_failures = 0
        self.pings = 0
        self.subscribe_requests: list[tuple[str, list[dict[str, str]]]] = []
        self.clock_offset = 0.0  # the server's clock minus ours (seconds): every time it gives is on it
        self.slow_s, self.slow_until = 0.0, 0.0  # `slow()`: every REST answer this late, until then
        self.snapshot_page_size = 0  # >0: positions snapshots split into pages of this many records
        self._outbox: list[tuple[str, dict[str, Any]]] = []
        self._flush_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"FakeOkx(port={self.port})"

    async def start(self) -> FakeOkx:
        app = web.Application()
        app.router.add_route("*", "/api/v5/{tail:.*}", self._rest)
        app.router.add_get("/ws/v5/{kind}", self._ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._spawn(self._regular_pushes())
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for kind in list(self.conns):
            self.drop(kind)  # no close handshake: a client that stopped reading must not stall shutdown
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, kind: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v5/{kind}"

    # --- knobs ---

    def fault(self, path: str, **kw: Any) -> Fault:
        f = Fault(**kw)
        self.faults[path].append(f)
        return f

    def slow(self, seconds: float, for_s: float) -> None:
        """Every REST request answered `seconds` late (and still carried out) for the next `for_s`."""
        self.slow_s, self.slow_until = seconds, time.monotonic() + for_s

    def drop(self, kind: str) -> int:
        """Cut every connection of this kind abruptly (no close frame)."""
        conns = list(self.conns[kind])
        for c in conns:
            if c.request.transport is not None:
                c.request.transport.abort()
        return len(conns)

    def mute(self, kind: str) -> None:
        """The current connections of this kind stop answering pings and stop pushing (a dead link)."""
        for c in self.conns[kind]:
            c.muted = True

    async def notice(self, kind: str, code: str = "64008") -> None:
        msg = {**t.doc("ws_notice_service_upgrade.json"), "code": code}
        for c in list(self.conns[kind]):
            await self._send(c, {**msg, "connId": c.conn_id})

    async def send_raw(self, kind: str, text: str) -> None:
        for c in list(self.conns[kind]):
            await self._send(c, text)

    @property
    def clock_offset(self) -> float:
        return records.CLOCK_OFFSET[0]

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        records.CLOCK_OFFSET[0] = seconds

    async def set_price(self, inst_id: str, px: Decimal | str) -> None:
        """Move the market: fills resting orders, triggers stops, pushes tickers/trades/candles."""
        px = Decimal(px)
        self.engine.set_price(inst_id, px)
        tick = Decimal(self.engine.instruments[inst_id]["tickSz"])
        self._outbox.append(("tickers", {"data": [wire.ticker(inst_id, px, tick)], "_instId": inst_id}))
        trade = wire.trade(inst_id, px, str(next(self._ids)))
        self._outbox.append(("trades", {"data": [trade], "_instId": inst_id}))
        candle = self.engine.candles.on_price(inst_id, px, now_ms())
        self._outbox.append(("candle1m", {"data": [candle], "_instId": inst_id}))
        await self._flush()

    def take_snapshot(self) -> Snapshot:
        """Positions and account as they are now, to send later with `send_snapshot` (a stale snapshot,
        as one OKX took just before a fill and delivered just after its event push)."""
        return pushes.take(self.engine)

    async def send_snapshot(self, snap: Snapshot | None = None) -> None:
        """A regular snapshot push to every positions/account subscriber (the current state if none)."""
        snap = snap or self.take_snapshot()
        for c in list(self.conns["private"]):
            for sub in c.subs:
                if sub.get("channel") in SNAPSHOT_CHANNELS and not c.muted:
                    await self._send_snapshot(c, sub, snap, 0.0)

    def count(self, method: str, path: str) -> int:
        return len(self.calls(method, path))

    def calls(self, method: str, path: str) -> list[Req]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # --- REST ---

    async def _rest(self, request: web.Request) -> web.Response:
        text = await request.text()
        path = request.path
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        self.requests.append(Req(request.method, path, dict(request.query), body, time.monotonic()))
        if time.monotonic() < self.slow_until:  # OKX under load: every answer late, the work still done
            await asyncio.sleep(self.slow_s)
        if path == "/api/v5/public/time":
            ts = str(now_ms())
            return web.json_response({"code": "0", "msg": "", "data": [{"ts": ts}]})
        if not path.startswith(("/api/v5/public/", "/api/v5/market/")):
            denied = h.check_rest_auth(request.headers, request.method, request.raw_path, text, self._creds,
                                       demo=self.demo, clock_offset=self.clock_offset)  # fmt: skip
            if denied is not None:
                return h.error(request.method, path, denied, status=200 if denied == "50101" else 401)
        handler = h.ROUTES.get((request.method, path))
        if handler is None:
            return web.json_response({"code": "404", "msg": "Not Found (fake)", "data": []}, status=404)
        queue = self.faults.get(path)
        if queue and queue[0].method in ("", request.method):
            f = queue[0]
            f.count -= 1
            if f.count <= 0:
                queue.popleft()
            return await self._faulty(f, handler, request.method, path, request.query, body)
        return await self._run(handler, request.method, path, request.query, body)

    async def _run(self, handler: h.Handler, method: str, path: str, query: Any, body: Any) -> web.Response:
        try:
            data = handler(self.engine, query, body)
        except Refused as e:
            await self._flush()
            return h.error(method, path, e.code, e.msg, body=body)
        await self._flush()
        return web.json_response({"code": "0", "msg": "", "data": data})

    async def _faulty(
        self, f: Fault, handler: h.Handler, method: str, path: str, query: Any, body: Any
    ) -> web.Response:
        if f.late is not None:
            self._spawn(self._later(f.late, handler, method, path, query, body))
        resp = await self._run(handler, method, path, query, body) if f.execute else None
        if f.delay:
            await asyncio.sleep(f.delay)
        if f.code:
            return h.error(method, path, f.code, body=body, status=f.http_status)
        return resp if resp is not None else h.error(method, path, "50004", body=body)

    async def _later(
        self, delay: float, handler: h.Handler, method: str, path: str, query: Any, body: Any
    ) -> None:
        await asyncio.sleep(delay)
        await self._run(handler, method, path, query, body)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- pushes ---

    def _changed(self, orders: list[FOrder], positions: list[FPos], account: bool) -> None:
        """Called by the engine on every change: pushes are built now (state as of now), sent by _flush."""
        for o in orders:
            self._outbox.append(("orders", {"data": [wire.order(o)]}))
        if positions:
            data = [wire.position(self.engine, p) for p in positions]
            self._outbox.append(("positions", {"eventType": "event_update", "data": data}))
        if account:
            data = [wire.account(self.engine)]
            self._outbox.append(("account", {"eventType": "event_update", "data": data}))

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._outbox:
                channel, msg = self._outbox.pop(0)
                inst_id = msg.pop("_instId", None)
                kind = "private" if channel in PRIVATE_CHANNELS else "public" if channel in PUBLIC_CHANNELS \
                    else "business"  # fmt: skip
                for c in list(self.conns[kind]):
                    sub = next((s for s in c.subs if pushes.matches(s, channel, inst_id, msg)), None)
                    if sub is not None and not c.muted:
                        arg = {**sub, "uid": UID} if kind == "private" else sub
                        await self._send(c, {"arg": arg, **msg})

    async def _regular_pushes(self) -> None:
        """Each positions/account subscription gets a snapshot every interval (its own, or the fake's)."""
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for c in list(self.conns["private"]):
                for i, sub in enumerate(c.subs):
                    every = pushes.interval(sub, self.snapshot_interval)
                    if sub.get("channel") not in SNAPSHOT_CHANNELS or not every or c.muted:
                        continue
                    due = c.snapshot_due.setdefault(i, now + every)
                    if now >= due:
                        c.snapshot_due[i] = now + every
                        self._spawn(self._send_snapshot(c, sub, pushes.take(self.engine), self.snapshot_lag))

    async def _send_snapshot(self, c: Conn, sub: dict[str, str], snap: Snapshot, lag: float) -> None:
        await asyncio.sleep(lag)  # meanwhile fills may be pushed: then this one arrives stale
        async with self._flush_lock:
            for msg in pushes.messages(snap, sub, self.snapshot_page_size):
                await self._send(c, msg)

    async def _send(self, c: Conn, msg: dict[str, Any] | str) -> None:
        try:
            async with c.lock:
                await c.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))
            c.last_io = time.monotonic()
        except (ConnectionError, RuntimeError):
            pass  # the client is gone: like OKX, the push is simply lost

    # --- WebSocket ---

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind not in ("public", "private", "business"):
            return web.Response(status=404)
        if kind in self.refuse:
            return web.Response(status=503, text="refused (fake)")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, timeout=1.0)
        await ws.prepare(request)
        conn = Conn(kind, ws, request, f"{next(self._ids):08x}")
        self.conns[kind].add(conn)
        self.connects[kind] += 1
        watchdog = asyncio.create_task(self._close_when_idle(conn))
        try:
            async for msg in ws:
                conn.last_io = time.monotonic()
                if msg.type != WSMsgType.TEXT:
                    continue
                if msg.data == "ping":
                    self.pings += 1
                    if not conn.muted:
                        await self._send(conn, "pong")
                    continue
                await self._ws_request(conn, msg.data)
        finally:
            watchdog.cancel()
            self.conns[kind].discard(conn)
        return ws

    async def _close_when_idle(self, c: Conn) -> None:
        """OKX closes a connection that has had no traffic for 30 s (4004), e.g. one that never pings."""
        while True:
            idle = time.monotonic() - c.last_io
            if idle >= self.idle_timeout:
                self.idle_closes += 1
                await c.ws.close(code=4004, message=b"No data received in 30s.")
                return
            await asyncio.sleep(min(self.idle_timeout - idle, 1.0) + 0.01)

    async def _ws_error(self, c: Conn, code: str, msg: str) -> None:
        await self._send(c, {"event": "error", "code": code, "msg": msg, "connId": c.conn_id})

    async def _ws_request(self, c: Conn, text: str) -> None:
        try:
            req = json.loads(text)
            op, args = req["op"], list(req["args"])
        except (ValueError, KeyError, TypeError):
            await self._ws_error(c, "60012", f"Invalid request: {text[:80]}")
            return
        if op == "login":
            code = h.check_login(args[0] if args else {}, self._creds, self.clock_offset)
            if code is None:
                c.logged_in = True
                self.logins += 1
                await self._send(c, {**t.doc("ws_login_success.json"), "connId": c.conn_id})
            else:
                self.login_failures += 1
                await self._send(c, {**t.doc("ws_login_failure.json"), "code": code, "connId": c.conn_id})
        elif op == "subscribe":
            self.subscribe_requests.append((c.kind, args))
            for arg in args:
                await self._subscribe(c, arg, req.get("id", ""))
        else:
            await self._ws_error(c, "60012", f"Invalid request: {text[:80]}")

    async def _subscribe(self, c: Conn, arg: dict[str, str], req_id: str) -> None:
        ch = arg.get("channel", "")
        allowed = {"private": PRIVATE_CHANNELS, "public": PUBLIC_CHANNELS}.get(c.kind)
        if not (ch in allowed if allowed is not None else ch.startswith("candle")):
            await self._ws_error(c, "60018", f"Wrong URL or channel:{ch}, doesn't exist.")
            return
        if c.kind == "private" and not c.logged_in:
            await self._ws_error(c, "60011", "Please log in")
            return
        c.subs.append(dict(arg))
        ack = {"event": "subscribe", "arg": dict(arg), "connId": c.conn_id}
        await self._send(c, {"id": req_id, **ack} if req_id else ack)
        if ch in SNAPSHOT_CHANNELS:
            for msg in pushes.messages(pushes.take(self.engine), arg, self.snapshot_page_size):
                await self._send(c, msg)

"""One self-healing OKX v5 WebSocket connection (PROTOCOL_RULES §2, §3, §5, §6).

`WsConnection` connects, logs in (when given credentials), subscribes, and then reads until the connection
dies, forever: reconnecting with exponential back-off and jitter, logging in again and resubscribing
everything (subscriptions are per connection). Keep-alive: after every received frame a timer of
`ping_interval` (< 30 s, OKX drops idle connections) is armed; when it fires we send the text "ping" and a
connection that stays silent for `pong_timeout` more is dead. A 64008 notice (service upgrade soon) makes
it reconnect at once. Bad frames are counted and dropped by `WsDecoder`; a failing handler is logged. Nothing
escapes the reader loop. `on_ready(session)` runs when every subscription of a session is acknowledged.

The login frame carries the API key, passphrase and a signature: frames are never logged, and the
`websockets` library gets a logger that cannot emit DEBUG (it would log frame contents).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from exchanges.base import ExchangeError
from exchanges.okx import counts
from exchanges.okx.auth import Credentials
from exchanges.okx.convert import ws_request
from exchanges.okx.errors import AuthError
from exchanges.okx.messages import Event, Pong, WsDecoder, WsMessage

log = logging.getLogger(__name__)

# websockets logs every frame at DEBUG (our login frame included): give it a logger that never does.
_FRAMES = logging.getLogger("exchanges.okx.ws.frames")
_FRAMES.setLevel(logging.INFO)
_FRAMES.addFilter(lambda record: record.levelno >= logging.INFO)

LIVE_WS = "wss://ws.okx.com:8443/ws/v5"
DEMO_WS = "wss://wspap.okx.com:8443/ws/v5"

Handler = Callable[[WsMessage], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class WsOptions:
    """Timings (seconds). Production defaults; tests make them small."""

    ping_interval: float = 20.0  # idle time before we send "ping" (< 30: OKX closes idle connections)
    pong_timeout: float = 8.0  # silence after our "ping" that means the connection is dead
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    stable_after: float = 60.0  # a session that lived this long resets the back-off
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    login_timeout: float = 10.0
    subscribe_timeout: float = 10.0
    max_size: int = 8 * 2**20


def backoff_delay(failures: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential back-off with "equal jitter": half fixed, half random, so reconnecting clients spread
    out but none retries at once (OKX allows 3 new connections/s per IP)."""
    d = min(cap, base * 2 ** min(failures, 30))
    return d / 2 + rand() * d / 2


class _Reconnect(Exception):
    """Leave the current session and reconnect (dead peer, 64008, missing acks)."""


class WsConnection:
    def __init__(
        self,
        url: str,
        subscriptions: Sequence[dict[str, str]],
        on_message: Handler,
        *,
        creds: Credentials | None = None,
        options: WsOptions | None = None,
        name: str = "okx-ws",
        on_ready: Callable[[int], None] | None = None,
        proxy: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.name = name
        self.subscriptions = [dict(s) for s in subscriptions]
        self.options = options or WsOptions()
        self.decoder = WsDecoder()
        self.sessions = 0  # sessions that became ready (logged in and fully subscribed)
        self.attempts = 0  # connection attempts
        self.handler_errors = 0
        self._creds = creds
        self._on_message = on_message
        self._on_ready = on_ready
        self._proxy = proxy
        self._clock = clock  # epoch seconds for the login timestamp (the REST client's server-synced clock)
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._now_please = False  # reconnect without back-off once (64008)

    def __repr__(self) -> str:
        return (
            f"WsConnection({self.name!r}, url={self.url!r}, sessions={self.sessions}, creds={self._creds!r})"
        )

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def send(self, msg: dict[str, Any]) -> None:
        """Send one JSON request on the current connection (ConnectionError when there is none)."""
        ws = self._ws
        if ws is None or not self.ready:
            raise ConnectionError(f"{self.name} is not connected")
        await ws.send(json.dumps(msg, separators=(",", ":")))

    def reconnect(self) -> None:
        """Drop the current connection (it is reopened by the loop)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # bounded: a close must not hang on a peer that stopped reading
            await asyncio.wait({task}, timeout=self.options.close_timeout + 1)
            if not task.done():
                self.reconnect()  # abort the transport: whatever awaits it fails now
                await asyncio.wait({task}, timeout=1)
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s: loop ended with %r", self.name, task.exception())
        self._ready.clear()

    # --- the loop ---

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._closing:
            started: float | None = None
            self.attempts += 1
            try:
                async with connect(
                    self.url,
                    ping_interval=None,  # OKX wants its own text "ping", not protocol pings
                    open_timeout=self.options.open_timeout,
                    close_timeout=self.options.close_timeout,
                    max_size=self.options.max_size,
                    proxy=self._proxy,
                    logger=_FRAMES,
                ) as ws:
                    self._ws = ws
                    started = loop.time()
                    if self._creds is not None:
                        await self._login(ws)
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except AuthError as e:
                log.error("%s: login refused [%s] %s", self.name, e.code, e.msg[:100])
            except (_Reconnect, ExchangeError) as e:
                log.warning("%s: reconnecting: %s", self.name, e)
            except Exception as e:  # OSError, websockets errors, timeouts: the network; also our own bugs
                log.warning("%s: connection lost: %s: %s", self.name, type(e).__name__, str(e)[:200])
            finally:
                self._ws = None
                self._ready.clear()
            if self._closing:
                break
            counts.RECONNECTS[self.name] += 1
            if started is not None and loop.time() - started >= self.options.stable_after:
                failures = 0
            delay = 0.0
            if self._now_please and failures == 0:
                self._now_please = False
            else:
                delay = backoff_delay(failures, self.options.backoff_base, self.options.backoff_cap)
            failures += 1
            log.info("%s: reconnect in %.2fs (attempt %d)", self.name, delay, self.attempts + 1)
            await asyncio.sleep(delay)

    async def _recv(self, ws: ClientConnection, timeout: float) -> str | bytes:
        # asyncio.timeout, not wait_for: recv runs in this task, so a cancel (close()) reaches it directly.
        async with asyncio.timeout(timeout):
            return await ws.recv()

    async def _login(self, ws: ClientConnection) -> None:
        assert self._creds is not None
        await ws.send(json.dumps(self._creds.ws_login(self._clock())))
        deadline = asyncio.get_running_loop().time() + self.options.login_timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise _Reconnect("no login reply")
            try:
                raw = await self._recv(ws, remaining)
            except TimeoutError:
                raise _Reconnect("no login reply") from None
            msg = self.decoder.decode(raw)
            if isinstance(msg, Event) and msg.event == "login" and not msg.failed:
                log.info("%s: logged in", self.name)
                return
            if isinstance(msg, Event) and msg.failed:
                raise msg.error()  # 60009 etc. -> AuthError, 63999 -> ExchangeBusy

    async def _session(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        opts = self.options
        pending = len(self.subscriptions)
        if pending:
            await ws.send(json.dumps(ws_request("subscribe", self.subscriptions), separators=(",", ":")))
        else:
            self._became_ready()
        sub_deadline = loop.time() + opts.subscribe_timeout
        awaiting_pong = False
        while True:
            timeout = opts.pong_timeout if awaiting_pong else opts.ping_interval
            if pending:
                timeout = max(0.0, min(timeout, sub_deadline - loop.time()))
            try:
                raw = await self._recv(ws, timeout)
            except TimeoutError:
                if pending and loop.time() >= sub_deadline:
                    raise _Reconnect(f"{pending} subscription(s) not acknowledged") from None
                if awaiting_pong:
                    ws.transport.abort()  # a dead peer will not answer a close handshake either
                    raise _Reconnect("no pong") from None
                await ws.send("ping")
                awaiting_pong = True
                continue
            awaiting_pong = False  # anything received proves the connection alive
            msg = self.decoder.decode(raw)
            if msg is None:
                log.debug("%s: dropped a bad frame (%s)", self.name, self.decoder.last_error)
                continue
            if isinstance(msg, Pong):
                continue
            if isinstance(msg, Event):
                if msg.event == "subscribe" or (msg.failed and pending and msg.event == "error"):
                    if msg.failed:
                        log.error("%s: subscription refused [%s] %s", self.name, msg.code, msg.msg[:200])
                    if pending:
                        pending -= 1
                        if pending == 0:
                            self._became_ready()
                elif msg.event == "notice" and msg.code == "64008":
                    self._now_please = True
                    raise _Reconnect("64008 service upgrade notice")
                elif msg.failed:
                    log.warning("%s: %s [%s] %s", self.name, msg.event, msg.code, msg.msg[:200])
            await self._dispatch(msg)

    def _became_ready(self) -> None:
        self.sessions += 1
        self._ready.set()
        log.info("%s: ready (session %d)", self.name, self.sessions)
        if self._on_ready is not None:
            try:
                self._on_ready(self.sessions)
            except Exception:
                self.handler_errors += 1
                log.exception("%s: on_ready failed", self.name)

    async def _dispatch(self, msg: WsMessage) -> None:
        try:
            result = self._on_message(msg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.handler_errors += 1
            log.exception("%s: message handler failed", self.name)

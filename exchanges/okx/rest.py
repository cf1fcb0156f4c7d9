"""Async OKX v5 REST client on httpx: signing, demo header, client-side rate limits, 50011 back-off.

What a caller gets when things go wrong (PROTOCOL_RULES §4, §7):
  reads (GET)    ExchangeUnavailable for timeouts, transport errors, 5xx, malformed bodies, 50004-style
                 codes, and rate limits that outlived the retries; definite refusals (51603, auth...) typed.
  writes (POST)  OutcomeUnknown when the request may have reached OKX (timeout after sending, connection
                 lost, 50004/51054/51149, malformed reply); ExchangeUnavailable only when it certainly did
                 not leave (connect failed); typed ExchangeError for refusals.
  50011 / 50013  `limiter.penalize` pauses that request kind (exponentially growing), then the request is
                 retried up to `retries` times: such a reply means "not executed", so a retry is safe.
No header, body or exception produced here contains the API key, secret or passphrase.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx

from exchanges.base import ExchangeUnavailable, OutcomeUnknown, RateLimited
from exchanges.okx.auth import Credentials, request_path
from exchanges.okx.errors import ExchangeBusy, OkxOutcomeUnknown, TimestampError
from exchanges.okx.messages import decode_rest
from exchanges.okx.ratelimit import Kind, RateLimiter
from exchanges.okx.records import ServerTime
from exchanges.okx.wire import DecodeError

T = TypeVar("T")
log = logging.getLogger(__name__)

LIVE_REST_URL = "https://www.okx.com"
DEMO_REST_URL = "https://openapi.okx.com"  # PROTOCOL_RULES §1 (older SDKs: www.okx.com + the demo header)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class OkxRest:
    """One httpx client per venue connection. `get`/`post` return the decoded `data[]` of a reply."""

    def __init__(
        self,
        creds: Credentials | None,
        base_url: str = LIVE_REST_URL,
        *,
        demo: bool = False,
        timeout: float = 5.0,
        limiter: RateLimiter | None = None,
        retries: int = 3,
        trust_env: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._creds = creds
        self.base_url = base_url.rstrip("/")
        self.demo = demo
        self.limiter = limiter if limiter is not None else RateLimiter()
        self._retries = retries
        self._clock_offset = 0.0  # server time - local time, seconds (50102 protection)
        # trust_env off by default: the base URL is explicit, a stray HTTP(S)_PROXY must not reroute orders.
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, trust_env=trust_env, transport=transport
        )

    def __repr__(self) -> str:
        return f"OkxRest(base_url={self.base_url!r}, demo={self.demo}, creds={self._creds!r})"

    def now(self) -> float:
        """Epoch seconds on the server's clock (as last measured by sync_clock)."""
        return time.time() + self._clock_offset

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- public entry points ---

    async def get(
        self,
        path: str,
        data_type: type[T],
        params: Mapping[str, str] | None = None,
        *,
        kind: Kind,
        inst_id: str = "",
        auth: bool = True,
    ) -> list[T]:
        """A read: anything that leaves the answer unknown becomes ExchangeUnavailable."""
        try:
            return await self._call("GET", request_path(path, params), "", data_type, kind, inst_id, auth)
        except (OutcomeUnknown, RateLimited, ExchangeBusy, DecodeError) as e:
            raise ExchangeUnavailable(f"OKX GET {path}: {_short(e)}") from e

    async def post(
        self,
        path: str,
        data_type: type[T],
        body: Mapping[str, Any] | list[Any],
        *,
        kind: Kind,
        inst_id: str = "",
    ) -> list[T]:
        """A write: a reply we cannot read means the outcome is unknown (OutcomeUnknown)."""
        text = json.dumps(body, separators=(",", ":"))
        try:
            return await self._call("POST", path, text, data_type, kind, inst_id, True)
        except DecodeError as e:
            raise OkxOutcomeUnknown("decode", f"POST {path}: unreadable reply ({e.reason})") from e

    async def sync_clock(self) -> float:
        """Measure server time - local time from GET /api/v5/public/time (used for signing timestamps)."""
        t0 = time.time()
        data = await self.get("/api/v5/public/time", ServerTime, kind=Kind.TICKERS, auth=False)
        t1 = time.time()
        self._clock_offset = data[0].ts / 1000.0 - (t0 + t1) / 2
        log.info("okx clock offset %.3fs", self._clock_offset)
        return self._clock_offset

    # --- internals ---

    async def _call(
        self, method: str, path_q: str, body: str, data_type: type[T], kind: Kind, inst_id: str, auth: bool
    ) -> list[T]:
        resynced = False
        strikes = 0
        while True:
            await self.limiter.acquire(kind, inst_id)
            try:
                result = await self._send(method, path_q, body, data_type, auth)
            except (RateLimited, ExchangeBusy) as e:
                # Not executed: pause this kind (every caller of it waits too), then try again.
                pause = self.limiter.penalize(kind, inst_id)
                log.warning(
                    "okx %s %s: [%s] attempt %d, pausing %s for %.2fs",
                    method, path_q, e.code, strikes + 1, kind.value, pause,
                )  # fmt: skip
                if strikes >= self._retries:
                    raise
                strikes += 1
                continue
            except TimestampError:
                if resynced or not auth:
                    raise
                resynced = True  # our clock drifted from OKX's: measure it again, re-sign, resend once
                await self.sync_clock()
                continue
            self.limiter.success(kind, inst_id)
            return result

    async def _send(self, method: str, path_q: str, body: str, data_type: type[T], auth: bool) -> list[T]:
        headers = self._headers(method, path_q, body, auth)
        started = time.monotonic()
        try:
            resp = await self._client.request(
                method, path_q, content=body.encode() if body else None, headers=headers
            )
        except _NOT_SENT as e:
            raise ExchangeUnavailable(f"OKX {method} {_path(path_q)}: not sent ({type(e).__name__})") from e
        except httpx.HTTPError as e:  # timeout or connection lost after the request may have left
            what = f"OKX {method} {_path(path_q)}: {type(e).__name__}"
            if method == "POST":
                raise OkxOutcomeUnknown("timeout", what) from e
            raise ExchangeUnavailable(what) from e
        elapsed = (time.monotonic() - started) * 1000
        try:
            data = decode_rest(resp.content, data_type)
        except DecodeError:
            log.debug("okx %s %s -> HTTP %d unreadable (%.0f ms)", method, path_q, resp.status_code, elapsed)
            if resp.status_code == 429:
                raise RateLimited("50011", "Too Many Requests (HTTP 429)") from None
            raise
        except Exception as e:
            log.debug(
                "okx %s %s -> HTTP %d %s (%.0f ms)", method, path_q, resp.status_code, _short(e), elapsed
            )
            raise
        log.debug("okx %s %s -> HTTP %d ok (%.0f ms)", method, path_q, resp.status_code, elapsed)
        return data

    def _headers(self, method: str, path_q: str, body: str, auth: bool) -> dict[str, str]:
        if auth:
            if self._creds is None:
                raise ValueError("this OKX client has no credentials for private endpoints")
            return self._creds.rest_headers(method, path_q, body, demo=self.demo, now=self.now())
        headers = {"Content-Type": "application/json"}
        if self.demo:
            headers["x-simulated-trading"] = "1"
        return headers


def _path(path_q: str) -> str:
    return path_q.split("?", 1)[0]


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"

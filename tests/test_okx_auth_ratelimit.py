"""Signing vectors computed independently from the protocol text, secret masking, and the rate limiter."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import pickle
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr

from config.settings import ExchangeSettings
from exchanges.base import OrderRequest, OrderSide, OrderType
from exchanges.okx.auth import Credentials, request_path, rest_timestamp
from exchanges.okx.convert import order_args
from exchanges.okx.ratelimit import DEFAULT_LIMITS, Kind, Limit, RateLimiter
from tests import okx_data as data

KEY, SECRET, PASSPHRASE = "a1b2c3d4-key-0000", "S3cr3tV4lueNobodyMayS33", "pa55Phrase!"
SECRETS = (KEY, SECRET, PASSPHRASE)


def expected_sign(secret: str, message: str) -> str:
    """PROTOCOL_RULES §4: Base64(HMAC_SHA256(secret, message)) - written out here, not imported."""
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()).decode()


def at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def creds() -> Credentials:
    return Credentials(KEY, SECRET, PASSPHRASE)


# --- REST signing ---------------------------------------------------------------------------------------


def test_rest_timestamp_format() -> None:
    assert rest_timestamp(at("2020-12-08T09:08:57.715Z")) == "2020-12-08T09:08:57.715Z"
    assert rest_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rest_timestamp(1_700_000_000.5))


def test_rest_get_with_query(creds: Credentials) -> None:
    ts = "2020-12-08T09:08:57.715Z"
    path = request_path("/api/v5/account/balance", {"ccy": "BTC"})
    assert path == "/api/v5/account/balance?ccy=BTC"
    headers = creds.rest_headers("GET", path, now=at(ts))
    assert headers == {
        "OK-ACCESS-KEY": KEY,
        "OK-ACCESS-SIGN": expected_sign(SECRET, "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC"),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": PASSPHRASE,
        "Content-Type": "application/json",
    }
    assert creds.rest_headers("get", path, now=at(ts)) == headers  # method is upper-cased before signing


def test_rest_post_with_body(creds: Credentials) -> None:
    ts = "2024-01-30T10:56:02.995Z"
    req = OrderRequest(
        "BTC-USDT-SWAP",
        "testBTC0123",
        OrderSide.BUY,
        Decimal("1"),
        OrderType.LIMIT,
        Decimal("50912.4"),
        td_mode="cross",
    )
    body = json.dumps(order_args(req), separators=(",", ":"))
    headers = creds.rest_headers("POST", "/api/v5/trade/order", body, now=at(ts))
    assert headers["OK-ACCESS-SIGN"] == expected_sign(SECRET, ts + "POST" + "/api/v5/trade/order" + body)
    assert headers["OK-ACCESS-TIMESTAMP"] == ts and "x-simulated-trading" not in headers
    # One more byte of body, one different signature: the body signed must be the body sent.
    other = creds.rest_headers("POST", "/api/v5/trade/order", body + " ", now=at(ts))
    assert other["OK-ACCESS-SIGN"] != headers["OK-ACCESS-SIGN"]


def test_demo_header(creds: Credentials) -> None:
    demo = creds.rest_headers("GET", "/api/v5/account/positions", demo=True, now=0)
    live = creds.rest_headers("GET", "/api/v5/account/positions", demo=False, now=0)
    assert demo["x-simulated-trading"] == "1" and "x-simulated-trading" not in live
    assert {k: v for k, v in demo.items() if k != "x-simulated-trading"} == live  # same signature


def test_request_path_encoding() -> None:
    assert request_path("/api/v5/trade/order") == "/api/v5/trade/order"
    assert (
        request_path(
            "/api/v5/account/positions", {"instType": "SWAP", "instId": "LTC-USDT-SWAP,BTC-USDT-SWAP"}
        )
        == "/api/v5/account/positions?instType=SWAP&instId=LTC-USDT-SWAP%2CBTC-USDT-SWAP"
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/api/v5/x", "{}"), ("DELETE", "/api/v5/x", ""), ("GET", "api/v5/x", "")],
)
def test_rest_headers_reject_bad_requests(creds: Credentials, method: str, path: str, body: str) -> None:
    with pytest.raises(ValueError) as info:
        creds.rest_headers(method, path, body)
    assert not any(s in str(info.value) for s in SECRETS)


# --- WS login -------------------------------------------------------------------------------------------


def test_ws_login_matches_the_docs_shape(creds: Credentials) -> None:
    doc = data.doc("ws_login_request.json")
    ours = creds.ws_login(now=1538054050.9)
    assert list(ours) == list(doc) and ours["op"] == doc["op"] == "login"
    assert len(ours["args"]) == len(doc["args"]) == 1
    args, doc_args = ours["args"][0], doc["args"][0]
    assert list(args) == list(doc_args)  # apiKey, passphrase, timestamp, sign - same order
    assert all(isinstance(v, str) for v in args.values())
    assert args["timestamp"] == doc_args["timestamp"] == "1538054050"  # SECONDS, not ms, not ISO
    assert args["sign"] == expected_sign(SECRET, "1538054050" + "GET" + "/users/self/verify")
    assert len(base64.b64decode(args["sign"])) == len(base64.b64decode(doc_args["sign"])) == 32
    assert (args["apiKey"], args["passphrase"]) == (KEY, PASSPHRASE)


def test_ws_login_default_clock_is_now(creds: Credentials) -> None:
    ts = int(creds.ws_login_args()["timestamp"])
    assert abs(ts - datetime.now(UTC).timestamp()) < 5


# --- secrets never shown ----------------------------------------------------------------------------------


def test_credentials_repr_masks_everything(creds: Credentials) -> None:
    for text in (
        repr(creds),
        str(creds),
        f"{creds}",
        f"{creds!r}",
        "%s" % (creds,),  # noqa: UP031 - old-style formatting, as a logger would use
        repr([creds]),
    ):
        assert not any(s in text for s in SECRETS), text
        assert "***" in text
    with pytest.raises(TypeError):
        vars(creds)  # slots only: no __dict__ to dump
    with pytest.raises(TypeError) as info:
        pickle.dumps(creds)
    assert not any(s in str(info.value) for s in SECRETS)


def test_credentials_from_secretstr_and_settings() -> None:
    c = Credentials(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASSPHRASE))
    assert c.rest_headers("GET", "/a", now=0) == Credentials(KEY, SECRET, PASSPHRASE).rest_headers(
        "GET", "/a", now=0
    )
    settings = ExchangeSettings(venue="okx", api_key=KEY, api_secret=SECRET, passphrase=PASSPHRASE)
    from_settings = Credentials.from_settings(settings)
    assert from_settings.ws_login_args(now=5) == c.ws_login_args(now=5)
    assert not any(s in repr(from_settings) for s in SECRETS)


@pytest.mark.parametrize("missing", ["api_key", "api_secret", "passphrase"])
def test_missing_credential_error_names_the_field_only(missing: str) -> None:
    values = {"api_key": KEY, "api_secret": SECRET, "passphrase": PASSPHRASE}
    settings = ExchangeSettings(venue="paper", **{k: v for k, v in values.items() if k != missing})
    with pytest.raises(ValueError) as info:
        Credentials.from_settings(settings)
    assert missing in str(info.value) and not any(s in str(info.value) for s in SECRETS)
    with pytest.raises(ValueError) as info:
        Credentials(KEY, "", PASSPHRASE)
    assert not any(s in str(info.value) for s in SECRETS)


# --- rate limiter -------------------------------------------------------------------------------------------


class FakeClock:
    """Time only moves when the limiter sleeps: waits are measured, never spent."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, slack=0.05)


def test_default_limits_follow_protocol_rules() -> None:
    expect = {
        Kind.PLACE: 60, Kind.CANCEL: 60, Kind.AMEND: 60, Kind.GET_ORDER: 60, Kind.CLOSE_POSITION: 20,
        Kind.SET_LEVERAGE: 20, Kind.POSITIONS: 10, Kind.BALANCE: 10, Kind.INSTRUMENTS: 20, Kind.CANDLES: 40,
    }  # fmt: skip
    for kind, count in expect.items():
        assert (DEFAULT_LIMITS[kind].count, DEFAULT_LIMITS[kind].period) == (count, 2.0), kind
    assert DEFAULT_LIMITS[Kind.PLACE].per_instrument and not DEFAULT_LIMITS[Kind.POSITIONS].per_instrument


async def test_61st_place_order_within_2s_waits(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(60):
        await limiter.acquire(Kind.PLACE, "BTC-USDT-SWAP")
    assert clock.sleeps == [] and limiter.delay(Kind.PLACE, "BTC-USDT-SWAP") == pytest.approx(2.05)
    await limiter.acquire(Kind.PLACE, "BTC-USDT-SWAP")
    assert clock.sleeps == [pytest.approx(2.05)] and clock.now == pytest.approx(2.05)


async def test_rest_and_ws_share_the_place_budget(limiter: RateLimiter, clock: FakeClock) -> None:
    # The REST client and the WS `op: order` sender both take Kind.PLACE for the instrument.
    for i in range(60):
        if i % 2:
            await limiter.acquire(Kind.PLACE, "ETH-USDT-SWAP")  # "REST"
        else:
            assert limiter.try_acquire(Kind.PLACE, "ETH-USDT-SWAP")  # "WS"
    assert not limiter.try_acquire(Kind.PLACE, "ETH-USDT-SWAP")
    await limiter.acquire(Kind.PLACE, "ETH-USDT-SWAP")
    assert clock.sleeps == [pytest.approx(2.05)]


async def test_other_instrument_and_other_kinds_not_affected(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(60):
        await limiter.acquire(Kind.PLACE, "BTC-USDT-SWAP")
    await limiter.acquire(Kind.PLACE, "ETH-USDT-SWAP")
    for _ in range(60):
        await limiter.acquire(Kind.CANCEL, "BTC-USDT-SWAP")  # cancel has its own budget
    await limiter.acquire(Kind.AMEND, "BTC-USDT-SWAP")
    assert clock.sleeps == []


async def test_per_user_limits_ignore_the_instrument(limiter: RateLimiter, clock: FakeClock) -> None:
    for i in range(10):
        await limiter.acquire(Kind.POSITIONS, f"I{i}")
    await limiter.acquire(Kind.POSITIONS, "other")
    assert clock.sleeps == [pytest.approx(2.05)]


async def test_window_slides(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(30):
        await limiter.acquire(Kind.PLACE, "X")
    clock.now = 1.0
    for _ in range(30):
        await limiter.acquire(Kind.PLACE, "X")
    await limiter.acquire(Kind.PLACE, "X")  # waits for the t=0 batch to leave the window
    assert clock.now == pytest.approx(2.05)
    for _ in range(29):
        assert limiter.try_acquire(Kind.PLACE, "X")
    assert not limiter.try_acquire(Kind.PLACE, "X")
    assert limiter.delay(Kind.PLACE, "X") == pytest.approx(1.0)  # until the t=1 batch leaves


async def test_penalize_backs_off_exponentially_and_resets(limiter: RateLimiter, clock: FakeClock) -> None:
    pauses = [limiter.penalize(Kind.PLACE, "BTC-USDT-SWAP") for _ in range(9)]
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # capped
    assert limiter.strikes(Kind.PLACE, "BTC-USDT-SWAP") == 9
    await limiter.acquire(Kind.PLACE, "BTC-USDT-SWAP")
    assert clock.now == pytest.approx(30.0)  # blocked until the longest pause ended
    limiter.success(Kind.PLACE, "BTC-USDT-SWAP")
    assert limiter.strikes(Kind.PLACE, "BTC-USDT-SWAP") == 0
    assert limiter.penalize(Kind.PLACE, "BTC-USDT-SWAP") == 0.5
    assert limiter.penalize(Kind.PLACE, "BTC-USDT-SWAP", seconds=2.0) == 4.0  # base override, strike 1


async def test_penalty_blocks_the_shared_key_only(limiter: RateLimiter, clock: FakeClock) -> None:
    limiter.penalize(Kind.PLACE, "BTC-USDT-SWAP")
    assert not limiter.try_acquire(Kind.PLACE, "BTC-USDT-SWAP")  # WS side
    assert limiter.try_acquire(Kind.PLACE, "ETH-USDT-SWAP")
    assert limiter.try_acquire(Kind.CANCEL, "BTC-USDT-SWAP")
    await limiter.acquire(Kind.PLACE, "BTC-USDT-SWAP")  # REST side waits the pause
    assert clock.sleeps == [pytest.approx(0.5)]


async def test_cancelled_waiter_takes_no_slot(clock: FakeClock) -> None:
    gate = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        await gate.wait()

    limiter = RateLimiter({Kind.PLACE: Limit(3, 2.0)}, clock=clock, sleep=stuck_sleep, slack=0.0)
    for _ in range(3):
        await limiter.acquire(Kind.PLACE, "X")
    waiter = asyncio.create_task(limiter.acquire(Kind.PLACE, "X"))
    await asyncio.sleep(0)
    assert not waiter.done() and not limiter.try_acquire(Kind.PLACE, "X")  # queued behind the waiter
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    clock.now = 2.0
    assert [limiter.try_acquire(Kind.PLACE, "X") for _ in range(4)] == [True, True, True, False]


async def test_concurrent_waiters_with_real_time() -> None:
    limiter = RateLimiter({Kind.PLACE: Limit(2, 0.02)}, slack=0.002)
    loop = asyncio.get_running_loop()
    start = loop.time()
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire(Kind.PLACE, "X")
        stamps.append(loop.time() - start)

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), timeout=2.0)
    assert len(stamps) == 6 and stamps == sorted(stamps)
    # Never more than 2 inside any 20 ms window.
    for i in range(2, 6):
        assert stamps[i] - stamps[i - 2] >= 0.02 - 1e-3

"""The OKX WebSocket connection manager and the public stream, against the fake OKX server on loopback.

Keep-alive ("ping" after idle, dead without "pong"), reconnection with back-off, login and resubscribe,
64008 early reconnect, malformed frames counted and dropped, handler failures contained, and the public
tickers/trades (/public) and candles (/business) turned into Ticks. Timings are shrunk (tens of ms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from exchanges.okx import counts
from exchanges.okx.auth import Credentials
from exchanges.okx.convert import Tick
from exchanges.okx.messages import Push, WsMessage
from exchanges.okx.public import OkxPublicStream
from exchanges.okx.records import Candle
from exchanges.okx.ws import WsConnection, WsOptions, backoff_delay
from tests.fakeokx import FakeOkx, eventually

KEY, SECRET, PASSPHRASE = "wsTestKey0001", "wsTestSecret0002", "wsTestPass0003"
BTC = "BTC-USDT-SWAP"
FAST = WsOptions(ping_interval=0.05, pong_timeout=0.05, backoff_base=0.02, backoff_cap=0.1, stable_after=5.0,
                 open_timeout=2.0, close_timeout=0.2, login_timeout=1.0, subscribe_timeout=1.0)  # fmt: skip
TICKERS = [{"channel": "tickers", "instId": BTC}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOkx]:
    server = await FakeOkx(KEY, SECRET, PASSPHRASE).start()
    await server.set_price(BTC, "50000")
    yield server
    await server.stop()


class Recorder:
    def __init__(self) -> None:
        self.msgs: list[WsMessage] = []

    def __call__(self, msg: WsMessage) -> None:
        self.msgs.append(msg)

    def pushes(self, channel: str) -> list[Push[Any]]:
        return [m for m in self.msgs if isinstance(m, Push) and m.channel == channel]


async def _conn(fake: FakeOkx, options: WsOptions = FAST) -> tuple[WsConnection, Recorder]:
    rec = Recorder()
    conn = WsConnection(fake.ws_url("public"), TICKERS, rec, options=options)
    conn.start()
    return conn, rec


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    assert backoff_delay(0, 0.5, 30, rand=lambda: 0.0) == 0.25
    assert backoff_delay(0, 0.5, 30, rand=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 30, rand=lambda: 0.0) == 2.0
    assert backoff_delay(50, 0.5, 30, rand=lambda: 1.0) == 30.0
    delays = [backoff_delay(n, 0.5, 30) for n in range(6)]
    assert all(0.25 * 2**n <= d <= 0.5 * 2**n for n, d in enumerate(delays))


async def test_idle_connection_sends_text_ping_and_stays_up(fake: FakeOkx) -> None:
    conn, _ = await _conn(fake)
    try:
        assert await conn.wait_ready(2)
        await eventually(lambda: fake.pings >= 3)
        assert fake.connects["public"] == 1 and conn.sessions == 1
    finally:
        await conn.close()


async def test_no_pong_means_dead_reconnect_and_resubscribe(fake: FakeOkx) -> None:
    conn, rec = await _conn(fake)
    try:
        assert await conn.wait_ready(2)
        counted = counts.RECONNECTS[conn.name]
        fake.mute("public")  # the link goes silent: no pong, no data
        await eventually(lambda: conn.sessions == 2)
        assert fake.connects["public"] == 2
        assert counts.RECONNECTS[conn.name] == counted + 1  # for /metrics (scalper_ws_reconnects_total)
        assert [args for kind, args in fake.subscribe_requests if kind == "public"] == [TICKERS, TICKERS]
        await fake.set_price(BTC, "50100")  # the new connection delivers
        await eventually(lambda: any(p.data[0].last == Decimal("50100") for p in rec.pushes("tickers")))
    finally:
        await conn.close()


async def test_notice_64008_reconnects_at_once(fake: FakeOkx) -> None:
    # A back-off of seconds: only the no-delay path of 64008 can reconnect within the timeout below.
    conn, _ = await _conn(fake, options=replace(FAST, backoff_base=5.0, backoff_cap=5.0))
    try:
        assert await conn.wait_ready(2)
        await fake.notice("public")  # the server keeps the old connection open: we leave on our own
        await eventually(lambda: conn.sessions == 2, timeout=1.0)
        assert fake.connects["public"] == 2
    finally:
        await conn.close()


async def test_bad_frames_are_counted_and_dropped(fake: FakeOkx) -> None:
    conn, rec = await _conn(fake)
    try:
        assert await conn.wait_ready(2)
        junk = ["{", "not json", '{"arg":{"channel":"tickers","instId":"BTC-USDT-SWAP"},"data":[{"bad":1}]}',
                '{"event":"surprise"}', '{"arg":{"channel":"nochannel"},"data":[{}]}', "[]"]  # fmt: skip
        for text in junk:
            await fake.send_raw("public", text)
        await fake.set_price(BTC, "50200")
        await eventually(lambda: any(p.data[0].last == Decimal("50200") for p in rec.pushes("tickers")))
        assert conn.decoder.dropped_total == len(junk)
        assert fake.connects["public"] == 1  # the reader survived every one of them
    finally:
        await conn.close()


async def test_failing_handler_does_not_stop_the_reader(fake: FakeOkx) -> None:
    seen: list[WsMessage] = []

    def handler(msg: WsMessage) -> None:
        seen.append(msg)
        if len(seen) == 1:
            raise RuntimeError("boom")

    conn = WsConnection(fake.ws_url("public"), TICKERS, handler, options=FAST)
    conn.start()
    try:
        assert await conn.wait_ready(2)
        await fake.set_price(BTC, "50300")
        await eventually(lambda: any(isinstance(m, Push) for m in seen))
        assert conn.handler_errors == 1 and fake.connects["public"] == 1
    finally:
        await conn.close()


async def test_private_login_then_subscribe_and_relogin_after_drop(fake: FakeOkx) -> None:
    subs = [{"channel": "orders", "instType": "SWAP"}, {"channel": "account"}]
    rec = Recorder()
    ready: list[int] = []
    conn = WsConnection(fake.ws_url("private"), subs, rec, creds=Credentials(KEY, SECRET, PASSPHRASE),
                        options=FAST, on_ready=ready.append)  # fmt: skip
    conn.start()
    try:
        assert await conn.wait_ready(2)
        assert fake.logins == 1 and ready == [1]
        await eventually(lambda: len(rec.pushes("account")) == 1)  # the snapshot sent on subscribe
        fake.drop("private")
        await eventually(lambda: ready == [1, 2])
        assert fake.logins == 2
        assert [a for k, a in fake.subscribe_requests if k == "private"] == [subs, subs]
        await eventually(lambda: len(rec.pushes("account")) == 2)
    finally:
        await conn.close()


async def test_refused_login_backs_off(fake: FakeOkx, caplog: pytest.LogCaptureFixture) -> None:
    conn = WsConnection(fake.ws_url("private"), [{"channel": "account"}], Recorder(),
                        creds=Credentials(KEY, "wrongSecret", PASSPHRASE), options=FAST)  # fmt: skip
    conn.start()
    try:
        await eventually(lambda: fake.login_failures >= 3)
        assert not conn.ready
        assert any("login refused [60007]" in r.getMessage() for r in caplog.records)
        await asyncio.sleep(0.3)
        # back-off 0.01-0.02, 0.02-0.04, then capped 0.05-0.1: a handful of attempts, not hundreds
        assert conn.attempts <= 12
    finally:
        await conn.close()


async def test_refused_handshakes_retry_until_the_server_is_back(fake: FakeOkx) -> None:
    fake.refuse.add("public")
    conn, _ = await _conn(fake)
    try:
        await eventually(lambda: conn.attempts >= 3)
        assert not conn.ready and fake.connects["public"] == 0
        fake.refuse.discard("public")
        assert await conn.wait_ready(2)
    finally:
        await conn.close()


async def test_close_ends_the_connection(fake: FakeOkx) -> None:
    conn, _ = await _conn(fake)
    assert await conn.wait_ready(2)
    await conn.close()
    await eventually(lambda: not fake.conns["public"])
    assert not conn.ready
    with pytest.raises(ConnectionError):
        await conn.send({"op": "subscribe", "args": []})


async def test_public_stream_ticks_from_tickers_trades_and_candles(fake: FakeOkx) -> None:
    candles: list[tuple[str, Candle]] = []
    stream = OkxPublicStream([BTC], public_url=fake.ws_url("public"), business_url=fake.ws_url("business"),
                             channels=("tickers", "trades"), candle_bar="1m", options=FAST,
                             on_candle=lambda inst, c: candles.append((inst, c)))  # fmt: skip
    ticks = stream.ticks()
    assert await stream.start(wait=2)
    try:
        kinds = {kind: [a["channel"] for a in args] for kind, args in fake.subscribe_requests}
        assert kinds == {"public": ["tickers", "trades"], "business": ["candle1m"]}
        await fake.set_price(BTC, "50123.4")
        got: list[Tick] = [await asyncio.wait_for(ticks.__anext__(), 2) for _ in range(3)]
        assert all(t.inst_id == BTC and t.price == 50123.4 for t in got)
        assert sum(t.bid is not None for t in got) == 1  # only the ticker carries the book
        assert candles and candles[0][0] == BTC and candles[0][1].close == Decimal("50123.4")
    finally:
        await stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(ticks.__anext__(), 1)


async def test_frames_are_never_logged(fake: FakeOkx, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    conn = WsConnection(fake.ws_url("private"), [{"channel": "account"}], Recorder(),
                        creds=Credentials(KEY, SECRET, PASSPHRASE), options=FAST)  # fmt: skip
    conn.start()
    try:
        assert await conn.wait_ready(2)
    finally:
        await conn.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "logged in" in text
    assert KEY not in text and PASSPHRASE not in text and '"op":"login"' not in text

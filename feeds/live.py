"""The live feed: OKX public market data (tickers and trades) into the tick streams, after warming the
history stream up from OKX's REST candles. Public data needs no credentials, so paper trading on the live
market works out of the box."""

from __future__ import annotations

import asyncio
import logging
import threading

from config.settings import Settings
from exchanges.base import ExchangeError, ExchangeUnavailable
from exchanges.okx import counts as okx_counts
from exchanges.okx.public import OkxPublicStream
from exchanges.okx.ratelimit import Kind
from exchanges.okx.records import Candle
from exchanges.okx.rest import LIVE_REST_URL, OkxRest
from exchanges.sync import until_stopped
from feeds.ticks import TickWriter

log = logging.getLogger("scalper.feed")


async def warm_history(rest: OkxRest, writer: TickWriter, symbol: str, limit: int = 300) -> int:
    """Closed 1-minute candles, oldest first (OKX returns newest first; the forming one is skipped)."""
    params = {"instId": symbol, "bar": "1m", "limit": str(limit)}
    rows = await rest.get(
        "/api/v5/market/candles", Candle, params, kind=Kind.CANDLES, inst_id=symbol, auth=False
    )
    closed = sorted((c for c in rows if c.closed), key=lambda c: c.ts)
    candles = [(c.ts / 1000.0, float(c.open), float(c.high), float(c.low), float(c.close)) for c in closed]
    return writer.history(symbol, candles)


async def _run(settings: Settings, writer: TickWriter, stop: threading.Event) -> None:
    symbols = list(settings.symbols)
    ex = settings.exchange
    rest = OkxRest(None, ex.rest_url or LIVE_REST_URL)
    for symbol in symbols:
        try:
            n = await warm_history(rest, writer, symbol)
            log.info("%s: %d history candles", symbol, n)
        except (ExchangeUnavailable, ExchangeError) as err:
            log.warning("%s: no history candles (%s); indicators warm up from live ticks", symbol, err)
    await rest.aclose()
    urls = {"public_url": f"{ex.ws_url.rstrip('/')}/public"} if ex.ws_url else {}
    stream = OkxPublicStream(symbols, channels=("tickers", "trades"), candle_bar=None, **urls)
    await stream.start()
    try:
        async for tick in stream.ticks():
            if stop.is_set():
                break
            writer.tick(tick.inst_id, tick.ts, tick.price, tick.bid, tick.ask)
            if okx_counts.pending():  # after a reconnect only: one round trip then, none a tick
                pipe = writer.client.pipeline(transaction=False)
                okx_counts.write_pending(pipe, writer.keys)
                pipe.execute()
    finally:
        await stream.close()


def run_live(settings: Settings, writer: TickWriter, stop: threading.Event) -> int:
    asyncio.run(until_stopped(_run(settings, writer, stop), stop))
    return 0

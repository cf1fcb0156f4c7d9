"""The `account` process: the exchange's private side, into the engines' event streams.

- venue `paper`: this process *is* the paper exchange (its single writer). It takes quotes from the tick
  streams, serves the engines' and workers' requests, and publishes its order and position events.
- venue `okx`: the private WebSocket (orders, positions, account) is relayed; after every reconnect the
  time is noted in `{prefix}:exchange` so the engines reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import redis

from config.settings import Settings
from exchanges import sync as exchange_loop
from exchanges.base import ExchangeUnavailable, OutcomeUnknown
from exchanges.okx import counts as okx_counts
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.paper.venue import PaperVenue
from exchanges.tiers import OKX_ISOLATED_SWAP_TIERS, PositionTiers, TierDataError, load_position_tiers
from statemachines.keys import Keys
from workers.events import EventBus, order_fields, position_fields
from workers.tickpath import new_guard

log = logging.getLogger("scalper.account")

START_RETRY_MAX_S = 30.0  # the longest wait between two attempts to reach OKX at start


def paper_venue(settings: Settings, client: redis.Redis) -> PaperVenue:
    known = {i.inst_id for i in DEFAULT_INSTRUMENTS}
    missing = [s for s in settings.symbols if s not in known]
    if missing:
        raise SystemExit(f"scalper: the paper exchange has no instrument {', '.join(missing)} "
                         f"(it knows {', '.join(sorted(known))}); check SCALPER_SYMBOLS")  # fmt: skip
    ex = settings.exchange
    exchange = PaperExchange(
        client, DEFAULT_INSTRUMENTS, prefix=settings.redis.prefix, taker_fee=ex.taker_fee,
        maker_fee=ex.maker_fee, pos_mode="long_short" if ex.pos_mode == "long_short" else "net",
        default_lever=settings.risk.leverage, tiers=position_tiers(settings),
        starting_balance=ex.paper_balance,
    )  # fmt: skip
    return PaperVenue(client, exchange, Keys(settings.redis.prefix), list(settings.symbols),
                      history_s=ex.paper_history_s, spread_bps=ex.paper_spread_bps,
                      accept=quote_guard(settings))  # fmt: skip


def quote_guard(settings: Settings) -> Callable[[str, float, float], bool]:
    """The engine's tick guard (workers/tickguard.py), one per symbol, for the paper venue's quotes: a bad
    print in the feed (chaos seed 111654074: BTC at 4.69) must not trigger stops or liquidate at a price no
    exchange traded. Band and confirmation only: the venue runs on the host's clock, not the exchange's."""
    guards = {s: new_guard(settings) for s in settings.symbols}

    def accept(symbol: str, ts: float, px: float) -> bool:
        guard = guards.get(symbol)
        return guard is None or not guard.check(ts, px, None)

    return accept


def position_tiers(settings: Settings) -> PositionTiers:
    """The shipped tiers, with those of the instruments in `exchange.position_tiers_file` replaced."""
    path = settings.exchange.position_tiers_file
    if path is None:
        return OKX_ISOLATED_SWAP_TIERS
    try:
        return OKX_ISOLATED_SWAP_TIERS.updated(load_position_tiers(path))
    except TierDataError as err:
        raise SystemExit(f"scalper: exchange.position_tiers_file: {err}") from None


def run_account(settings: Settings, client: redis.Redis, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    loop = exchange_loop.loop()
    if settings.exchange.venue == "paper":
        venue = paper_venue(settings, client)
        loop.run_until_complete(venue.start())
        log.info("paper venue serving %s", ", ".join(settings.symbols))
        while not stop.is_set():
            loop.run_until_complete(venue.run_once())
        return
    loop.run_until_complete(exchange_loop.until_stopped(_relay_okx(settings, client, stop), stop))


async def _relay_okx(settings: Settings, client: redis.Redis, stop: threading.Event) -> None:
    from scalper.connect import exchange_client

    keys = Keys(settings.redis.prefix)
    bus = EventBus(client, keys)
    wait = 1.0
    while True:
        adapter = exchange_client(settings, client, private_stream=True)
        events = adapter.events()  # subscribed before start: the first snapshots are not missed
        try:
            await adapter.start()  # type: ignore[attr-defined]
            break
        except (TimeoutError, ExchangeUnavailable, OutcomeUnknown, OSError) as err:
            # OKX slow or down at start: a pause, not a crash loop (under a Procfile one exit would stop
            # every process). Wrong credentials or account settings (ExchangeError) still stop it.
            log.warning("OKX not reachable at start (%s: %s); trying again in %.0f s", type(err).__name__,
                        err, wait)  # fmt: skip
            await adapter.close()
            await asyncio.sleep(wait)
            wait = min(wait * 2, START_RETRY_MAX_S)
    log.info("OKX private stream up")
    async for event in events:
        if stop.is_set():
            break
        kind = event.kind.value
        pipe = client.pipeline(transaction=False)
        if kind == "reconnected":
            pipe.hset(keys.exchange(), "reconnected_at", repr(time.time()))
        for order in event.orders:
            bus.publish(order.inst_id, order_fields(order, "okx"), pipe)
        for pos in event.positions:
            bus.publish(pos.inst_id, position_fields(pos, snapshot=event.snapshot, source="okx"), pipe)
        okx_counts.write_pending(pipe, keys)  # reconnects, rate-limit replies: for /metrics
        pipe.execute()
    await adapter.close()

"""How a process reaches Redis and its exchange, from the settings."""

from __future__ import annotations

import redis

from config.settings import Settings
from exchanges.base import Exchange
from scalper.embedded import embedded_url
from statemachines.keys import Keys


class NoRedis(RuntimeError):
    pass


def redis_url(settings: Settings) -> str:
    if settings.redis.url is not None:
        return settings.redis.url.get_secret_value()
    url = embedded_url(settings.redis.data_dir)
    if url is None:
        raise NoRedis(
            f"no REDIS_URL is set and no embedded Redis is running for data dir {settings.redis.data_dir}: "
            "start `scalper run`, or set REDIS_URL"
        )
    return url


def redis_client(settings: Settings) -> redis.Redis:
    """Bytes responses (the engine and store decode what they read); TLS and passwords come with the URL
    (rediss://, redis://:password@host)."""
    return redis.Redis.from_url(redis_url(settings), health_check_interval=30)


def exchange_client(settings: Settings, client: redis.Redis, *, private_stream: bool = False) -> Exchange:
    """The venue for this process. With `private_stream` (the account process) the caller starts it."""
    if settings.exchange.venue == "paper":
        from exchanges.paper.remote import PaperClient

        return PaperClient(client, Keys(settings.redis.prefix))
    from exchanges import sync
    from exchanges.okx.adapter import OkxExchange

    ex = settings.exchange
    urls: dict[str, str] = {}
    if ex.rest_url:
        urls["rest_url"] = ex.rest_url
    if ex.ws_url:
        urls["ws_private_url"] = f"{ex.ws_url.rstrip('/')}/private"
    adapter = OkxExchange.from_settings(ex, **urls)
    if not private_stream:  # REST only (engine, workers): sync the clock for signing, load instruments
        sync.run(adapter.rest.sync_clock(), 10)
        sync.run(adapter.instruments(), 10)
    return adapter

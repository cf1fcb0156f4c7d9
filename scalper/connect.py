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


def exchange_client(settings: Settings, client: redis.Redis) -> Exchange:
    if settings.exchange.venue == "paper":
        from exchanges.paper.remote import PaperClient

        return PaperClient(client, Keys(settings.redis.prefix))
    from exchanges.okx.adapter import OkxExchange

    return OkxExchange.from_settings(settings.exchange)  # type: ignore[no-any-return]

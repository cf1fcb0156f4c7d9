"""How a process reaches Redis and its exchange, from the settings."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

import redis

from config.settings import RedisSettings, Settings
from exchanges.base import Exchange
from scalper.embedded import embedded_url
from scalper.sentinel import is_sentinel_url, sentinel_client
from statemachines.keys import Keys


class NoRedis(RuntimeError):
    """Redis cannot be used: none configured, unreachable, credentials refused, TLS failed. The message names
    the setting and shows the URL with its password masked; it never contains the password. `transient`:
    it may come up (no answer, connection refused, loading), as opposed to a configuration problem."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# Query options that carry a secret (`password`, `ssl_password`, `sentinel_password`), or a name a typo of
# one may have (`sentinel_pasword`, `pwd`, `secret`, `auth`, `token`): their values are masked too.
_SECRET_OPTION = re.compile(r"(?i)([?&][^=&#]*(?:pas|pwd|secret|auth|token)[^=&#]*=)([^&#]*)")
MASK = "***"


def _parts(url: str) -> tuple[str, str, str, str]:
    """(scheme + "://", userinfo, "@" or "", the rest). In a well-formed redis:// or rediss:// URL the
    userinfo is the authority's; otherwise it runs to the last "@" of the URL, so that a password with an
    unescaped "/", "?", "#" or "@" is still taken whole (masking too much rather than too little)."""
    from urllib.parse import urlsplit

    scheme, sep, tail = url.partition("://")
    head = scheme + sep
    if not sep:
        head, tail = "", url
    if sep and scheme.lower() in ("redis", "rediss") and not _garbled(url):
        netloc = urlsplit(url).netloc
        if tail.startswith(netloc):
            userinfo, at, hostport = netloc.rpartition("@")
            return (head, userinfo, at, hostport + tail[len(netloc) :]) if at else (head, "", "", tail)
    userinfo, at, rest = tail.rpartition("@")
    return (head, userinfo, at, rest) if at else (head, "", "", tail)


def _garbled(url: str) -> bool:
    """A redis:// URL whose password has an unescaped "/", "?" or "#": the authority ends inside the password
    (redis://:pa/ss@host reads as host "", port "pa", path "/ss@host"), so an "@" shows up where a Redis URL
    never has one (path, fragment, a query option's name), or the port is not a number."""
    from urllib.parse import urlsplit

    if "@" not in url.partition("://")[2] or not url.lower().startswith(("redis://", "rediss://")):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (it raises on a port that is not a number)
    except ValueError:
        return True
    return "@" in parts.path + parts.fragment or any(
        "@" in q.partition("=")[0] for q in parts.query.split("&")
    )


def redact_url(url: str) -> str:
    """`url` fit for a log line or an error: the password (or a user part with no ":", which a password
    forgotten its colon would be) and password-like query options replaced by ***."""
    head, userinfo, at, rest = _parts(url)
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon else MASK
    return head + userinfo + at + _SECRET_OPTION.sub(rf"\g<1>{MASK}", rest)


def url_secrets(url: str) -> list[str]:
    """The secret pieces of `url` as written and percent-decoded (what redis-py sends), longest first."""
    from urllib.parse import unquote

    _, userinfo, at, rest = _parts(url)
    found = [m.group(2) for m in _SECRET_OPTION.finditer(rest)]
    if at:
        found.append(userinfo.partition(":")[2] if ":" in userinfo else userinfo)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every secret piece of `url` masked: for messages of libraries we do not control."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text


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


def redis_client(settings: Settings, *, check: bool = True) -> redis.Redis:
    """Bytes responses (the engine and store decode what they read); TLS and passwords come with the URL
    (rediss://, redis://:password@host, ?ssl_ca_certs=...). With `check` (start-up) one PING proves the
    address, the password and the TLS handshake, and a failure is a NoRedis naming the setting."""
    url = redis_url(settings)
    if settings.redis.url is None:
        where = f"the embedded Redis of {settings.redis.data_dir}/"
        return connect(url, where, check=check, options=settings.redis)
    setting = "SCALPER_REDIS__URL" if os.environ.get("SCALPER_REDIS__URL") else "REDIS_URL"
    return connect(url, setting, check=check, options=settings.redis)


def connect(
    url: str, setting: str = "REDIS_URL", *, check: bool = True, options: RedisSettings | None = None
) -> redis.Redis:
    """A client of `url`; errors name `setting` (where the URL came from) and show the URL redacted.
    `options`: the timeouts, keepalive and health checks (the settings' defaults if not given)."""
    transient = False
    try:
        client, problem = _open(url, setting, check, options or RedisSettings())
    except _Unreachable as err:
        client, problem, transient = None, str(err), True
    if problem is not None:  # raised outside any except block: no __context__ holding a library's message
        raise NoRedis(problem, transient=transient)
    assert client is not None
    return client


class _Unreachable(Exception):
    """Within _open: Redis did not answer or refused the connection (it may come up), not a configuration
    problem. `from None`: no library message is kept with it."""


def client_options(url: str, options: RedisSettings) -> dict[str, Any]:
    """redis-py's arguments for a connection that cannot hang: every read and connect has a timeout (a
    Redis that vanished without closing the connection, or a black-holed route, fails instead), TCP
    keepalive finds a dead peer on an idle connection, and one idle for long is PINGed before use."""
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.connect_timeout_s,
        "health_check_interval": options.health_check_s,
    }
    if url.lower().startswith(("redis://", "rediss://")) or is_sentinel_url(url):  # TCP, not a unix socket
        probes = {"TCP_KEEPIDLE": options.keepalive_s, "TCP_KEEPINTVL": options.keepalive_s,
                  "TCP_KEEPCNT": options.keepalive_probes}  # fmt: skip
        kwargs["socket_keepalive"] = True
        # Linux names; elsewhere the system's keepalive timing applies.
        kwargs["socket_keepalive_options"] = {
            getattr(socket, name): value for name, value in probes.items() if hasattr(socket, name)
        }
    return kwargs


def from_url(url: str, **kwargs: Any) -> redis.Redis:
    """A client of `url`: redis://, rediss://, unix://, or redis+sentinel:// (scalper/sentinel.py), which
    follows the primary through failovers."""
    if is_sentinel_url(url):
        return sentinel_client(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def _open(
    url: str, setting: str, check: bool, options: RedisSettings
) -> tuple[redis.Redis | None, str | None]:
    shown = f"{setting}={redact_url(url)}" if setting.isupper() else f"{redact_url(url)} ({setting})"
    if _garbled(url):  # not handed on: the parser's own message would quote a piece of the password
        return None, (f"{shown} is malformed: its port is not a port number, or its password has a / ? or # "
                      "that must be percent-encoded (%2F %3F %23)")  # fmt: skip
    try:
        client = from_url(url, **client_options(url, options))
    except (ValueError, TypeError) as err:
        return None, f"{shown} is not a Redis URL that works: {scrub(str(err), url)}"
    if not check:
        return client, None
    refused = f"check the password in {setting} (redis://:PASSWORD@host:port/db, percent-encoded)"
    try:
        client.ping()
    except redis.AuthenticationError as err:
        return None, f"Redis at {shown} refused the credentials ({scrub(str(err), url)}): {refused}"
    except redis.TimeoutError:
        raise _Unreachable(f"Redis at {shown}: no answer within {options.socket_timeout_s:g} s (a firewall "
                           "dropping the packets, or the wrong host or port)") from None  # fmt: skip
    except redis.ConnectionError as err:
        reason = scrub(str(err), url)
        if "SSL" in reason or "TLS" in reason or "certificate" in reason.lower():
            return None, (f"Redis at {shown}: the TLS handshake failed ({reason}); a private CA goes in as "
                          "?ssl_ca_certs=/path/to/ca.pem")  # fmt: skip
        raise _Unreachable(f"Redis at {shown}: cannot connect ({reason})") from None
    except redis.ResponseError as err:  # NOAUTH/WRONGPASS from an older server; anything else: it answered
        reason = scrub(str(err), url)
        if reason.startswith(("NOAUTH", "WRONGPASS")):
            return None, f"Redis at {shown} refused the credentials ({reason}): {refused}"
    return client, None


def exchange_client(settings: Settings, client: redis.Redis, *, private_stream: bool = False) -> Exchange:
    """The venue for this process. With `private_stream` (the account process) the caller starts it."""
    if settings.exchange.venue == "paper":
        from exchanges.paper.client import PaperClient

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

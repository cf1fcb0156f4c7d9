"""Redis through Sentinel: a `redis+sentinel://` URL names the sentinels and the service, and the client
asks them for the current primary, and again after a failover.

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db][?options]
    rediss+sentinel://...   the same over TLS, to the sentinels and to the data nodes

The password (and user) in the URL are the data nodes' (`requirepass`, or an ACL user). Options:
`sentinel_password` and `sentinel_username` (the sentinels' own, when they have one), and the TLS options
of a rediss:// URL (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`). A host without a port
is on Sentinel's 26379.

redis-py's `Sentinel.master_for` does the following: a connection is opened to the primary the sentinels
name at that moment, and a connection that meets READONLY (the old primary, now a replica) is dropped as a
ConnectionError so that the next one asks the sentinels again. Its retries here are short and few; what
outlasts them is the processes' to wait out (workers/redis_trouble.py: READONLY, a lost connection, no
primary known yet, LOADING are all transient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
DEFAULT_PORT = 26379
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_OPTIONS = ("sentinel_password", "sentinel_username", *_TLS_OPTIONS)
# A command that meets the switch is tried again this many times, after 50 ms, 100 ms, ... up to 1 s:
# about what a failover takes to name a new primary once the sentinels agree it is needed.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 6)


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SCHEMES)


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict, repr=False)


def parse(url: str) -> SentinelAddress:
    """The parts of a sentinel URL. A ValueError says what is wrong, and never quotes the password."""
    scheme, _, rest = url.partition("://")
    tls = scheme.lower().startswith("rediss")
    rest, _, query = rest.partition("?")
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = (unquote(user) or None, unquote(secret)) if colon else (None, unquote(user))
    hosts, _, path = rest.partition("/")
    sentinels = [_host_port(h) for h in hosts.split(",") if h.strip()]
    if not sentinels:
        raise ValueError("names no sentinel (host:port[,host:port...] after the ://)")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError("names no service (the sentinels' name of the primary, after the hosts: /mymaster)")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        extra = "/".join(parts[1:])
        raise ValueError(f"has a path after the service that is not a database number: /{extra}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"has options it does not know: {', '.join(unknown)} (known: {', '.join(_OPTIONS)})")
    if not tls and any(o in options for o in _TLS_OPTIONS):
        raise ValueError("has TLS options but is not rediss+sentinel://")
    return SentinelAddress(sentinels, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                           username, password, tls, options)  # fmt: skip


def _host_port(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"has a sentinel without a host: {text!r}")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"has a sentinel whose port is not a port number: {text!r}")
    return host, int(port) if port else DEFAULT_PORT


def sentinel_client(url: str, **kwargs: Any) -> redis.Redis:
    """A client of the primary the sentinels name, following it through failovers. `kwargs`: connection
    arguments (timeouts, keepalive, decode_responses), for the data nodes and, the socket ones, the
    sentinels."""
    address = parse(url)
    tls: dict[str, Any] = {}
    if address.tls:
        tls = {"ssl": True, **{k: v for k, v in address.options.items() if k in _TLS_OPTIONS}}
    sentinel_kwargs: dict[str, Any] = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    sentinel_kwargs |= {"password": address.options.get("sentinel_password") or None,
                        "username": address.options.get("sentinel_username") or None, **tls}  # fmt: skip
    manager = Sentinel(address.sentinels, sentinel_kwargs=sentinel_kwargs)
    connection = {"db": address.db, "username": address.username, "password": address.password,
                  "retry": RETRY, **tls, **kwargs}  # fmt: skip
    return manager.master_for(address.service, redis_class=redis.Redis, **connection)

"""Serving the API: uvicorn on a socket bound here, so that port 0 (any free port) gives a URL to log and to
publish in Redis (`{prefix}:web:url`) before the first request."""

from __future__ import annotations

import logging
import signal
import socket

import uvicorn

from config.settings import Settings
from scalper.connect import redis_client
from scalper.web.app import build_app

log = logging.getLogger("scalper.web")


def url_key(prefix: str) -> str:
    return f"{prefix}:web:url"


def run_web(settings: Settings, port: int | None = None) -> int:
    client = redis_client(settings)
    app = build_app(settings, client)
    host = settings.web.host
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, settings.web.port if port is None else port))
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    client.set(url_key(settings.redis.prefix), url)
    mode = "operator actions allowed (token set)" if settings.web.token else "read-only (no web.token)"
    log.warning("web: serving %s (%s)", url, mode)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the handler it found:
    # with this one the process ends with 0 after a stop it was asked for, like every other process here.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
    log.info("web: stopped")
    return 0

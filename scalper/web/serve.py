"""Serving the API: uvicorn on a socket bound here, so that port 0 (any free port) gives a URL to log and to
publish in Redis (`{prefix}:web:url`) before the first request."""

from __future__ import annotations

import errno
import logging
import signal
import socket

import uvicorn

from config.settings import Settings
from scalper.connect import redis_client
from scalper.processes import yield_cpu_to_trading
from scalper.web.app import build_app
from statemachines.keys import Keys

log = logging.getLogger("scalper.web")


def _bind(host: str, port: int, any_port_if_busy: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        if not any_port_if_busy or err.errno != errno.EADDRINUSE:
            sock.close()
            raise
        log.warning("web: port %d is taken; serving on any free port instead", port)
        sock.bind((host, 0))
    return sock


def run_web(settings: Settings, port: int | None = None, any_port_if_busy: bool = False) -> int:
    """`any_port_if_busy`: `scalper run`'s child, which must not crash-loop the run over a taken port."""
    yield_cpu_to_trading("web")
    client = redis_client(settings)
    app = build_app(settings, client)
    host = settings.web.host
    sock = _bind(host, settings.web.port if port is None else port, any_port_if_busy)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    client.set(Keys(settings.redis.prefix).web_url(), url)
    mode = "operator actions allowed (token set)" if settings.web.token else "read-only (no web.token)"
    # Standalone (a Procfile), the address is worth a line in the log; `scalper run` prints it itself.
    log.log(logging.INFO if any_port_if_busy else logging.WARNING, "web: serving %s (%s)", url, mode)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the handler it found:
    # with this one the process ends with 0 after a stop it was asked for, like every other process here.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
    log.info("web: stopped")
    return 0

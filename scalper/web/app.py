"""`scalper web`: the HTTP API over Redis (Starlette, served by uvicorn).

    GET  /health                      alive (the process answers)
    GET  /ready                       200 when Redis answers, an engine holds a shard, the exchange is known
    GET  /api/positions[?all=1]       live positions (all=1: closed and archived too)
    GET  /api/positions/{id}          one position: fields, summary, whole transition log
    GET  /api/summary                 today's and all closed trades' totals, positions by state
    GET  /api/health                  feeds, engines, exchange, order jobs, Redis memory, panic, quarantine
    GET  /api/commands/{id}           an operator command's outcome (404 until an engine answered)
    POST /api/positions/{id}/close    close it (through its closing state), as `scalper close`
    POST /api/panic, /api/panic/off   as `scalper panic` and `scalper panic --off`
    GET  /metrics                     Prometheus (scalper/web/metrics.py)
    GET  /, /positions/{id}           the dashboard (dashboard.html): live from /api/stream, a position's log
    GET  /api/stream                  server-sent events, each second: positions, closed trades, health

It never writes a position: the actions go through the operator command path of the CLI (scalper/inspect.py,
workers/commands.py), so an engine applies them, once. They need `Authorization: Bearer <web.token>`; with
no token set the API is read-only. JSON numbers are numbers, times ISO 8601 UTC.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from config.settings import Settings
from scalper import inspect
from scalper.web.metrics import RedisCollector
from scalper.web.views import Views
from statemachines.store import PositionNotFound, PositionStore
from workers import commands

log = logging.getLogger("scalper.web")

Handler = Callable[[Request], Response]
DASHBOARD = (Path(__file__).with_name("dashboard.html")).read_text()
STREAM_EVERY_S = 1.0


def build_app(settings: Settings, client: redis.Redis) -> Starlette:
    store = PositionStore(client, settings.redis.prefix)
    views = Views(client, store, list(settings.symbols))
    registry = CollectorRegistry()
    registry.register(RedisCollector(views))
    token = settings.web.token.get_secret_value() if settings.web.token else ""

    def reads(handler: Handler) -> Handler:
        """A Redis that does not answer is a 503 with the reason, never a traceback."""

        def wrapped(request: Request) -> Response:
            try:
                return handler(request)
            except redis.RedisError as err:
                return JSONResponse({"error": f"redis: {type(err).__name__}"}, status_code=503)

        return wrapped

    def action(handler: Handler) -> Handler:
        def wrapped(request: Request) -> Response:
            if not token:
                return JSONResponse({"error": "read-only: no web.token is set"}, status_code=403)
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a valid operator token is needed"}, status_code=401)
            return reads(handler)(request)

        return wrapped

    def health(_: Request) -> Response:
        return JSONResponse({"alive": True})

    def ready(_: Request) -> Response:
        ok, why = views.ready()
        return JSONResponse({"ready": ok, "why": why}, status_code=200 if ok else 503)

    def positions(request: Request) -> Response:
        include = request.query_params.get("all", "") in ("1", "true", "yes")
        return JSONResponse(views.positions(include_closed=include))

    def position(request: Request) -> Response:
        try:
            return JSONResponse(views.position(request.path_params["id"]))
        except PositionNotFound as err:
            return JSONResponse({"error": str(err)}, status_code=404)

    def summary(_: Request) -> Response:
        return JSONResponse(views.summary())

    def api_health(_: Request) -> Response:
        return JSONResponse(views.health())

    def command(request: Request) -> Response:
        raw = client.get(store.keys.control_reply(request.path_params["id"]))
        if raw is None:
            return JSONResponse({"error": "no answer (yet) to that command"}, status_code=404)
        return JSONResponse(commands.Outcome.from_json(raw).__dict__)

    def close(request: Request) -> Response:
        pid = request.path_params["id"]
        cmd_id = inspect.request_close(client, store, pid, "manual")
        if cmd_id is None:
            return JSONResponse({"error": f"no live position {pid}"}, status_code=404)
        log.info("close %s asked through the API (command %s)", pid, cmd_id)
        return JSONResponse({"command": cmd_id, "position": pid}, status_code=202)

    def panic(request: Request) -> Response:
        off = request.url.path.endswith("/off")
        closing = inspect.panic(client, store, off=off)
        log.warning("panic %s through the API", "off" if off else f"on: closing {len(closing)}")
        return JSONResponse({"panic": not off, "closing": closing})

    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def page(_: Request) -> Response:
        return HTMLResponse(DASHBOARD)

    async def stream(request: Request) -> Response:
        """The dashboard's data, once a second, as server-sent events (read in the thread pool: Redis is
        read with the sync client). Every open dashboard and /metrics share one read a second."""

        async def events() -> AsyncIterator[str]:
            while not await request.is_disconnected():
                try:
                    board = await run_in_threadpool(views.board, STREAM_EVERY_S)
                    yield f"data: {json.dumps(board)}\n\n"
                except redis.RedisError as err:
                    yield f"event: trouble\ndata: {json.dumps({'error': type(err).__name__})}\n\n"
                await asyncio.sleep(STREAM_EVERY_S)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip

    routes = [
        Route("/health", health),
        Route("/ready", reads(ready)),
        Route("/api/positions", reads(positions)),
        Route("/api/positions/{id}", reads(position)),
        Route("/api/summary", reads(summary)),
        Route("/api/health", reads(api_health)),
        Route("/api/commands/{id}", reads(command)),
        Route("/api/positions/{id}/close", action(close), methods=["POST"]),
        Route("/api/panic", action(panic), methods=["POST"]),
        Route("/api/panic/off", action(panic), methods=["POST"]),
        Route("/metrics", reads(metrics)),
        Route("/", page),
        Route("/positions/{id}", page),
        Route("/api/stream", stream),
    ]
    return Starlette(routes=routes)

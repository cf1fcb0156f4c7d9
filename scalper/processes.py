"""The long-running processes of the Procfile: feed, account, engine, worker. Each stops cleanly on
SIGTERM/SIGINT (finishes the iteration in hand, releases its lease)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from config.settings import Settings
from scalper.connect import exchange_client, redis_client
from statemachines.keys import Keys

log = logging.getLogger("scalper")


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_feed(settings: Settings, replay: str | None, speed: float, symbol: str | None = None) -> int:
    from feeds.replay import Replay, sample_path
    from feeds.ticks import TickWriter

    client = redis_client(settings)
    writer = TickWriter(client, Keys(settings.redis.prefix))
    if replay is None:
        from feeds.live import run_live

        return int(run_live(settings, writer, stop_on_signals()))
    path = sample_path() if replay == "sample" else Path(replay)
    target = symbol or next(iter(settings.symbols))
    stop_on_signals()
    n = Replay(writer, target, path, speed=speed).run()
    log.info("replay of %s finished: %d ticks for %s", path.name, n, target)
    return 0


def run_account_process(settings: Settings) -> int:
    from workers.account import run_account

    run_account(settings, redis_client(settings), stop_on_signals())
    return 0


def build_engine(settings: Settings, *, symbols: list[str] | None, shard: str, clock: str):  # type: ignore[no-untyped-def]
    from workers.engine import Engine
    from workers.entries import StrategyEntries
    from workers.reconciler import Reconciler

    client = redis_client(settings)
    exchange = exchange_client(settings, client)
    reconciler = Reconciler(exchange, unknown_positions=settings.engine.unknown_positions)
    entries = StrategyEntries(settings, client, exchange)
    return Engine(
        settings, client, symbols=symbols, shard=shard, clock=clock,  # type: ignore[arg-type]
        entries=entries, reconciler=reconciler, lease_ttl_s=settings.engine.lease_ttl_s,
        reconcile_every_s=settings.engine.reconcile_every_s, mark_every_s=settings.engine.mark_every_s,
    )  # fmt: skip


def run_engine(settings: Settings, *, symbols: list[str] | None, shard: str, clock: str) -> int:
    engine = build_engine(settings, symbols=symbols, shard=shard, clock=clock)
    stop = stop_on_signals()
    try:
        while not stop.is_set():
            engine.run_once()
    finally:
        engine.stop()
    return 0


def run_worker(settings: Settings, burst: bool = False) -> int:
    from rq import Queue, SimpleWorker

    from workers.relay import QUEUE

    client = redis_client(settings)
    # SimpleWorker runs jobs in this process: the forking worker adds ~7 ms per job, and our jobs keep
    # their exchange connection between runs.
    worker = SimpleWorker([Queue(QUEUE, connection=client)], connection=client)
    worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    return 0

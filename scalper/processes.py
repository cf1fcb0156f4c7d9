"""The long-running processes of the Procfile: feed, account, engine, worker. Each stops cleanly on
SIGTERM/SIGINT (finishes the iteration in hand, releases its lease)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from config.settings import Settings
from exchanges.base import Exchange
from scalper.connect import NoRedis, exchange_client, redis_client
from statemachines.keys import Keys
from workers.redis_trouble import Outage, RedisTrouble, diagnose, transient

log = logging.getLogger("scalper")


_forking_pid = 0  # the process that is forking, recorded just before (see die_with_parent)


def _before_fork() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def die_with_parent() -> None:
    """For a child this process forks (RQ's scheduler): SIGTERM when this process dies, even by SIGKILL,
    instead of living on as an orphan that holds the scheduler lock. Linux only; elsewhere a no-op. A
    parent that died between the fork and this call is caught by the parent-pid check."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if _forking_pid and os.getppid() != _forking_pid:
            os.kill(os.getpid(), signal.SIGTERM)


def exit_with_parent_on_fork() -> None:
    """Make every child this process forks from now on die with it (die_with_parent)."""
    os.register_at_fork(before=_before_fork, after_in_child=die_with_parent)


# How much lower than the trading processes `web` and `notify` run (nice(2)): on a small host they share cores
# with the engine and the workers, and what a person reads must not delay an order (bench/RESULTS.md).
WATCHER_NICENESS = 10


def yield_cpu_to_trading(name: str) -> None:
    """Lower this process's CPU priority (a watcher: `web`, `notify`); never fatal."""
    try:
        os.nice(WATCHER_NICENESS)
    except OSError as err:
        log.warning("%s: could not lower its CPU priority (%s)", name, err)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


MAINTENANCE_S = 5  # seconds between an order worker's RQ maintenance passes (see run_worker)
# A run that lasted this long was healthy: its failure starts a new outage (logged, back-off from the start).
HEALTHY_RUN_S = 30.0


def ride_out_redis(name: str, run: Callable[[], int], stop: threading.Event, *, max_wait_s: float,
                   startup_wait_s: float = 0.0) -> int:  # fmt: skip
    """Run `run` and, on transient Redis trouble (gone, restarting, slow, or refusing writes: out of memory,
    MISCONF, READONLY, BUSY...; see workers/redis_trouble.py), run it again from scratch (new connections,
    state reloaded from Redis) after a back-off capped at `max_wait_s`, instead of exiting: an outage is a
    pause, logged once. From scratch because the restarted Redis may have lost its last second of writes;
    nothing in memory is trusted over what Redis and the exchange say (the engine reconciles at start).
    At the very first start, Redis not answering is waited out for `startup_wait_s` (a process manager may
    start the processes before Redis is up, or while it restarts); a configuration problem (credentials,
    TLS, the URL) stops the process at once with its one line."""
    outage = Outage(name, log, max_wait_s)
    first = True
    born = time.monotonic()
    while True:
        started = time.monotonic()
        try:
            return run()
        except (redis.RedisError, NoRedis) as err:
            if stop.is_set():
                return 0
            if isinstance(err, NoRedis):
                if first and (not err.transient or time.monotonic() - born >= startup_wait_s):
                    raise  # said in one line, and the process stops
                trouble = RedisTrouble("unreachable", True, str(err))
                if first:
                    stop.wait(outage.failed(trouble))
                    continue
            else:
                found = diagnose(err)
                if found is None or not found.transient:
                    raise
                trouble = found
            first = False
            if time.monotonic() - started > HEALTHY_RUN_S:
                outage.forget()  # it had been running fine: this is a new outage
            stop.wait(outage.failed(trouble))


def run_feed(settings: Settings, replay: str | None, speed: float, symbol: str | None = None,
             lockstep: bool = False) -> int:  # fmt: skip
    from feeds.replay import Replay
    from feeds.ticks import TickWriter

    stop = stop_on_signals()

    def once() -> int:
        writer = TickWriter(redis_client(settings), Keys(settings.redis.prefix))
        if replay is None:
            from feeds.live import run_live

            return int(run_live(settings, writer, stop))
        step = None
        if lockstep:
            from scalper.lockstep import Lockstep

            step = Lockstep(writer.client, writer.keys, list(settings.symbols)).wait
        n = Replay(writer, symbol, replay, symbols=list(settings.symbols), speed=speed, stop=stop,
                   candle_seconds=settings.indicators.candle_seconds, lockstep=step).run()  # fmt: skip
        if lockstep:
            writer.client.delete(writer.keys.lockstep_on())  # the engine stops marking
        log.info("replay of %s finished: %d ticks", replay, n)
        return 0

    return ride_out_redis("feed", once, stop, max_wait_s=settings.redis.retry_max_wait_s,
                         startup_wait_s=settings.redis.startup_wait_s)


def run_record(settings: Settings, args: Any) -> int:
    """`scalper record`: until Ctrl-C or --duration; one line on stderr when it starts, one when it ends."""
    from feeds.data import DataError
    from feeds.record import record

    symbols = args.symbols.split(",") if args.symbols else list(settings.symbols)
    out = Path(args.out)
    stop = stop_on_signals()
    client = redis_client(settings)
    print(f"scalper: recording the ticks of {', '.join(symbols)} to {out}; Ctrl-C stops", file=sys.stderr)
    try:
        done = record(client, Keys(settings.redis.prefix), symbols, out, stop=stop, duration=args.duration,
                      compress=args.gzip or out.name.endswith(".gz"), from_start=args.from_start)  # fmt: skip
    except DataError as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{s} {n}" for s, n in done.ticks.items())
    print(f"scalper: recorded {done.total} ticks to {out} ({counts})", file=sys.stderr)
    for symbol, n in done.overruns.items():
        if n:
            print(f"scalper: {symbol}: the tick stream was trimmed past the recorder {n} time(s): ticks "
                  "may be missing there", file=sys.stderr)  # fmt: skip
    return 0


def run_account_process(settings: Settings) -> int:
    from workers.account import run_account

    stop = stop_on_signals()

    def once() -> int:
        run_account(settings, redis_client(settings), stop)
        return 0

    return ride_out_redis("account", once, stop, max_wait_s=settings.redis.retry_max_wait_s,
                         startup_wait_s=settings.redis.startup_wait_s)


def build_engine(settings: Settings, *, symbols: list[str] | None, shard: str, clock: str,  # type: ignore[no-untyped-def]
                 background_io: bool = True):  # fmt: skip
    """The engine with its collaborators; its exchange reads run on its I/O thread (workers/exchange_io.py),
    through a client made on that thread (an async client belongs to its thread's loop)."""
    from workers.engine import Engine
    from workers.entries import StrategyEntries
    from workers.reconciler import Reconciler

    client = redis_client(settings)
    if background_io:  # the client is made on the I/O thread, on first use: nothing on this thread
        io_exchange = ThreadExchange(lambda: exchange_client(settings, client))
    else:
        exchange = exchange_client(settings, client)
        io_exchange = ThreadExchange(lambda: exchange)
    policy = settings.engine.unknown_positions
    reconciler = Reconciler(exchange_factory=io_exchange.get, unknown_positions=policy)
    entries = StrategyEntries(settings, client)
    engine = Engine(
        settings, client, symbols=symbols, shard=shard, clock=clock,  # type: ignore[arg-type]
        entries=entries, reconciler=reconciler, lease_ttl_s=settings.engine.lease_ttl_s,
        reconcile_every_s=settings.engine.reconcile_every_s, mark_every_s=settings.engine.mark_every_s,
        background_io=background_io,
    )  # fmt: skip
    engine.io.add("account", entries.balance_every_s, lambda _: entries.read_account(io_exchange.get()),
                  entries.use_account)  # fmt: skip
    if clock == "wall" and settings.exchange.venue == "okx":
        engine.io.add("clock", CLOCK_SYNC_S, lambda _: exchange_offset(io_exchange.get()),
                      engine.set_clock_offset)  # fmt: skip
    return engine


CLOCK_SYNC_S = 60.0  # the exchange's clock is measured again this often


class ThreadExchange:
    """The exchange client of the engine's I/O thread, made on first use on that thread."""

    def __init__(self, make: Callable[[], Exchange]) -> None:
        self._make = make
        self._exchange: Exchange | None = None

    def get(self) -> Exchange:
        if self._exchange is None:
            self._exchange = self._make()
        return self._exchange


def exchange_offset(exchange: Exchange) -> float:
    """The exchange's clock minus this host's, seconds (OKX: GET /public/time, halfway through the call)."""
    from exchanges import sync

    rest = getattr(exchange, "rest", None)
    if rest is None:
        return 0.0
    return float(sync.run(rest.sync_clock(), 10))


def run_engine(settings: Settings, *, symbols: list[str] | None, shard: str, clock: str) -> int:
    stop = stop_on_signals()

    def once() -> int:
        engine = build_engine(settings, symbols=symbols, shard=shard, clock=clock)
        try:
            while not stop.is_set():
                engine.run_once()
        finally:
            try:
                engine.stop()  # flushes the marks and releases the lease: both need Redis
            except redis.RedisError as err:
                if not transient(err):
                    raise  # (the lease's TTL covers a release that could not be sent)
        return 0

    return ride_out_redis("engine", once, stop, max_wait_s=settings.redis.retry_max_wait_s,
                         startup_wait_s=settings.redis.startup_wait_s)


def run_worker(settings: Settings, burst: bool = False) -> int:
    from rq import Queue

    from workers import orders
    from workers.relay import QUEUE
    from workers.rqworker import OrderWorker

    def once() -> int:
        client = redis_client(settings)
        # A SimpleWorker runs jobs in this process: the forking worker adds ~7 ms per job, and our jobs keep
        # their exchange connection between runs. OrderWorker trims its round trips before each job, and
        # waits out Redis trouble where it happens instead of quitting RQ's loop (see workers/rqworker.py).
        # Maintenance every few seconds, not RQ's ten minutes: it is where a worker takes over the scheduler
        # (which runs the retries) from one that died, and hands a dead worker's started jobs back. It runs
        # between dequeues, whose wait RQ derives from the worker TTL (TTL - 15 s; 405 s by default): at
        # most MAINTENANCE_S, and 2 s below the socket timeout (a wait longer than the socket timeout would
        # make RQ raise it: see OrderWorker.connection_timeout).
        dequeue_wait_s = max(1, min(MAINTENANCE_S, int(settings.redis.socket_timeout_s) - 2))
        worker = OrderWorker([Queue(QUEUE, connection=client)], connection=client,
                             maintenance_interval=MAINTENANCE_S, worker_ttl=dequeue_wait_s + 15,
                             preload=orders.preload(settings.redis.prefix),
                             max_wait_s=settings.redis.retry_max_wait_s)  # fmt: skip
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        except redis.RedisError as err:
            if worker.stop_requested and transient(err):
                return 0  # stopping during an outage: unregistering failed; the registration expires
            raise
        if not burst and not worker.stop_requested:
            # RQ's loop quits on an error it cannot handle and returns as if done: start again, as after
            # any outage, instead of ending the formation.
            raise redis.ConnectionError("the RQ worker loop quit on an error logged above")
        return 0

    exit_with_parent_on_fork()  # RQ forks its scheduler
    # A failure to start (registering the worker while Redis refuses writes) or a loop that quit starts the
    # worker again here; a job it held is recovered like the job of a killed worker.
    return ride_out_redis("worker", once, threading.Event(), max_wait_s=settings.redis.retry_max_wait_s,
                         startup_wait_s=settings.redis.startup_wait_s)

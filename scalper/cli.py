"""The `scalper` command line."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

from config.settings import ConfigError, Settings, load_settings
from scalper import backtest_cmd, logformat, optimize_cmd
from statemachines.redis_text import as_str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalper", description="Scalp perpetual futures; positions are FSMs."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start every process on this machine (embedded Redis without REDIS_URL)")
    run.add_argument(
        "--replay", metavar="PATH|sample", help="feed recorded ticks instead of the live OKX feed"
    )
    run.add_argument("--speed", type=_positive, default=600.0,
                     help="replay speed (market seconds per second)")  # fmt: skip
    run.add_argument("--lockstep", action="store_true",
                     help="replay: feed each tick once the system is done with the last (deterministic, as "
                          "fast as the processes go; --speed is not used)")  # fmt: skip
    run.add_argument("--workers", type=_at_least_one, default=1, help="order worker processes")
    run.add_argument("--duration", type=_seconds, default=0,
                     help="stop after this many seconds (0 = never)")  # fmt: skip

    feed = sub.add_parser("feed", help="public market data into the tick streams")
    feed.add_argument("--replay", metavar="PATH|sample",
                      help="feed a recording (or the bundled sample day), not OKX's live data")  # fmt: skip
    feed.add_argument("--speed", type=_positive, default=600.0,
                      help="replay speed (market seconds per second)")  # fmt: skip
    feed.add_argument("--lockstep", action="store_true", help="replay: wait for the system before each tick")
    feed.add_argument("--symbol", help="replay: the symbol the recording is fed as (default: the first)")
    record = sub.add_parser("record", help="the feed's ticks from Redis into a file, to replay or backtest")
    record.add_argument("out", metavar="OUT", help="the recording (appended to if it is one already)")
    record.add_argument("--symbols", help="comma-separated (default: every configured symbol)")
    record.add_argument("--duration", type=_seconds, default=0, help="stop after S seconds (0: at Ctrl-C)")
    record.add_argument("--gzip", action="store_true", help="compress it (so does an OUT ending in .gz)")
    record.add_argument("--from-start", action="store_true", help="begin with the ticks Redis holds already")
    sub.add_parser("account", help="the private side: paper venue, or OKX's private stream")
    engine = sub.add_parser("engine", help="step the position machines of a symbol shard")
    engine.add_argument("--symbols", help="comma-separated shard (default: every configured symbol)")
    engine.add_argument("--shard", default="", help="lease name (default: the symbols, or 'all')")
    engine.add_argument("--clock", choices=["wall", "data"], default="wall", help="data: replay time")
    worker = sub.add_parser("worker", help="RQ order worker (non-forking)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--trials", action="store_true",
                        help="run optimisation trials (optimize, sweep) instead of orders")  # fmt: skip

    sub.add_parser("notify", help="send what needs a person through apprise (notify.urls): opens, closes, "
                   "risk stops, exchange state, panic, quarantined records")  # fmt: skip
    web = sub.add_parser("web", help="the HTTP API, /health, /ready and Prometheus /metrics over Redis")
    web.add_argument("--port", type=int, help="listen here instead of web.port (0: any free port)")
    web.add_argument("--any-port-if-busy", action="store_true",
                     help="a taken port is not an error: any free one is used (scalper run)")  # fmt: skip
    pos = sub.add_parser("positions", help="positions as a table")
    pos.add_argument("--all", action="store_true", help="include closed positions")
    pos.add_argument("--json", action="store_true", help="print JSON (numbers as numbers, times ISO 8601)")
    show = sub.add_parser("show", help="one position: its fields and its transition log")
    show.add_argument("id", help="the position id (as `scalper positions` lists it)")
    show.add_argument("--json", action="store_true", help="print JSON")
    op = sub.add_parser("open", help="manual entry (the engine applies the risk gates), with its outcome")
    op.add_argument("symbol", help="a configured instrument, e.g. BTC-USDT-SWAP")
    op.add_argument("side", choices=["long", "short"], help="the position's side")
    op.add_argument("--wait", type=float, default=10.0, metavar="S", help="seconds to wait (0: none)")
    close = sub.add_parser("close", help="close a position (through its closing state), with its outcome")
    close.add_argument("id", help="the position id")
    close.add_argument("--wait", type=float, default=10.0, metavar="S", help="seconds to wait (0: none)")
    panic = sub.add_parser("panic", help="close everything and stop entries")
    panic.add_argument("--off", action="store_true", help="allow entries again")
    rec = sub.add_parser("reconcile", help="settle positions with the exchange now")
    rec.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    rec.add_argument("--json", action="store_true", help="print the pass's report as JSON")

    rep = sub.add_parser("report", help="the report of this live or paper run's trades (as a backtest's)")
    rep.add_argument("--since", type=_time, help="trades closed from (ISO-8601 UTC or epoch seconds)")
    rep.add_argument("--until", type=_time, help="trades closed before")
    rep.add_argument("--out", type=Path, metavar="DIR", help="write trades.csv, equity.csv, report.json/html")
    rep.add_argument("--json", action="store_true", help="print report.json instead of the tables")
    rep.add_argument("--balance", type=_amount, help="starting balance (default: the paper account's)")

    fsm = sub.add_parser("fsm", help="the position lifecycle (transition table or Mermaid diagram)")
    fsm.add_argument("--mermaid", action="store_true", help="print a Mermaid stateDiagram of the machine")
    backtest_cmd.add_parser(sub)
    optimize_cmd.add_parsers(sub)
    cfg = sub.add_parser("config", help="configuration")
    cfg.add_argument("action", choices=["show"], help="show: the effective configuration, secrets masked")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scalper")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _checked(text: str, parse: Callable[[str], float], ok: Callable[[float], bool], what: str) -> float:
    """An option's number, or argparse's one-line error naming the option."""
    try:
        value = parse(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _positive(text: str) -> float:
    return _checked(text, float, lambda v: v > 0, "a positive number")


def _seconds(text: str) -> float:
    return _checked(text, float, lambda v: v >= 0, "a number of seconds (0 or more)")


def _at_least_one(text: str) -> int:
    return int(_checked(text, int, lambda v: v >= 1, "a whole number, 1 or more"))


def _time(text: str) -> float:
    from scalper.report_cmd import parse_time

    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _amount(text: str) -> Decimal:
    _checked(text, float, lambda v: v > 0, "a positive amount")
    return Decimal(text)


def _check_replay(args: argparse.Namespace, settings: Settings) -> str | None:
    """The replay file, checked before anything starts: None if fine, else the one-line reason."""
    from feeds.data import DataError
    from feeds.replay import check_recording

    if args.replay is None:
        return None
    try:
        check_recording(args.replay, symbols=list(settings.symbols), symbol=getattr(args, "symbol", None),
                        candle_seconds=settings.indicators.candle_seconds)  # fmt: skip
    except DataError as err:
        return f"--replay {err}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logformat.configure(args.verbose)
    if args.command == "fsm":
        return _fsm(args)
    if args.command == "backtest":  # its own settings (--set), no Redis
        return backtest_cmd.run(args)
    if args.command in ("optimize", "sweep"):  # their own settings (--set); Redis as REDIS_URL says
        return optimize_cmd.run(args)
    try:
        settings = load_settings()
        if args.command in ("run", "engine"):  # the processes that run the strategy: it must load first
            from workers.strategies import check_strategy

            check_strategy(settings)
    except ConfigError as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    logformat.configure(args.verbose, settings.log.format)
    if args.command == "feed" and args.symbol and args.symbol not in settings.symbols:
        print(f"scalper: --symbol {args.symbol} is not a configured symbol ({', '.join(settings.symbols)})",
              file=sys.stderr)  # fmt: skip
        return 2
    problem = _check_replay(args, settings) if args.command in ("run", "feed") else None
    if problem is not None:
        print(f"scalper: {problem}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a clear one-line error for the operator; -v shows the traceback
        from scalper.connect import NoRedis
        from workers.redis_trouble import diagnose

        trouble = diagnose(err)
        if trouble is not None:  # never redis-py's text: a script's error, a pipeline's arguments
            then = "; run the command again when Redis is back" if trouble.transient else ""
            print(f"scalper: {trouble.what}{then}", file=sys.stderr)
            return 1
        if isinstance(err, NoRedis | LookupError) or not args.verbose:
            print(f"scalper: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        raise


def _fsm(args: argparse.Namespace) -> int:
    from statemachines.lifecycle import build_machine, edges, mermaid

    if args.mermaid:
        sys.stdout.write(mermaid())
    else:
        for src, dst, trigger in edges(build_machine()):
            print(f"{src:<11} --{trigger}--> {dst}")
    return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from scalper import processes

    cmd = args.command
    if cmd == "config":
        print(__import__("json").dumps(settings.masked(), indent=2))
        return 0
    if cmd == "run":
        from scalper.supervisor import run

        return run(settings, replay=args.replay, speed=args.speed, workers=args.workers,
                   duration=args.duration, verbose=args.verbose, lockstep=args.lockstep)  # fmt: skip
    if cmd == "feed":
        return processes.run_feed(settings, args.replay, args.speed, args.symbol, lockstep=args.lockstep)
    if cmd == "account":
        return processes.run_account_process(settings)
    if cmd == "record":
        return processes.run_record(settings, args)
    if cmd == "engine":
        symbols = args.symbols.split(",") if args.symbols else None
        shard = args.shard or ("-".join(symbols) if symbols else "all")
        return processes.run_engine(settings, symbols=symbols, shard=shard, clock=args.clock)
    if cmd == "worker" and args.trials:
        from optimize.worker import run_trial_worker
        from scalper.connect import redis_client

        return run_trial_worker(redis_client(settings), burst=args.burst)
    if cmd == "worker":
        return processes.run_worker(settings, burst=args.burst)
    if cmd == "notify":
        from scalper.notify import run_notify

        stop = processes.stop_on_signals()
        return run_notify(settings, stop.is_set)
    if cmd == "web":
        from scalper.web.serve import run_web

        return run_web(settings, port=args.port, any_port_if_busy=args.any_port_if_busy)
    if cmd == "report":
        from scalper.report_cmd import Window, run_report

        return run_report(settings, window=Window(args.since, args.until), out=args.out, as_json=args.json,
                          balance=args.balance)  # fmt: skip
    return _operator(args, settings)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    """`positions` and `show`: they only read, so a stopped run's data is read without starting it."""
    from scalper import inspect
    from scalper.run_redis import RunDataError, run_redis
    from statemachines.store import PositionStore

    try:
        with run_redis(settings) as client:
            store = PositionStore(client, settings.redis.prefix)
            if args.command == "positions":
                rows = inspect.positions(store, include_closed=args.all)
                print(inspect.dumps(rows) if args.json else inspect.table(rows))
            else:
                data = inspect.show(store, args.id)
                print(inspect.dumps(data) if args.json else inspect.show_text(data))
    except RunDataError as err:
        print(f"scalper: {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


def _operator(args: argparse.Namespace, settings: Settings) -> int:
    from scalper import inspect, outcome
    from scalper.connect import redis_client
    from statemachines.store import PositionStore

    if args.command in ("positions", "show"):
        return _inspect(args, settings)
    client = redis_client(settings)
    store = PositionStore(client, settings.redis.prefix)
    cmd = args.command
    if cmd == "open":
        if args.symbol not in settings.symbols:
            print(f"scalper: {args.symbol} is not a configured symbol ({', '.join(settings.symbols)})",
                  file=sys.stderr)  # fmt: skip
            return 2
        cmd_id = inspect.request_open(client, store.keys, args.symbol, args.side)
        return outcome.report_open(store, cmd_id, args.symbol, args.side, args.wait)
    elif cmd == "close":
        cmd_id = inspect.request_close(client, store, args.id)
        if cmd_id is None:
            print(f"scalper: no live position {args.id}", file=sys.stderr)
            return 1
        return outcome.report_close(store, cmd_id, args.id, args.wait)
    elif cmd == "panic":
        closed = inspect.panic(client, store, off=args.off)
        print("panic off: entries allowed" if args.off else f"panic: entries stopped, closing {len(closed)}")
    elif cmd == "reconcile":
        return _reconcile(args, settings)
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from scalper import inspect
    from scalper.processes import build_engine

    engine = build_engine(settings, symbols=None, shard="all", clock="wall", background_io=False)
    if not args.dry_run:
        # A pass that changes Redis while an engine runs would race it (it could adopt, under a second id,
        # a position that engine has just opened): only with no engine running, and holding the lease an
        # engine starting meanwhile waits for. Running engines reconcile every engine.reconcile_every_s.
        # A one-off command: it scans for leases rather than trusting the listing alone (`scalper web`'s
        # readers do), so an engine whose listing a failover lost, or of an older version, is seen too.
        leases = engine.client.scan_iter(match=f"{settings.redis.prefix}:lease:*", count=1000)
        running = sorted(as_str(k) for k in leases)
        if running or not engine.lease.acquire():
            print(f"scalper: reconcile: an engine is running ({', '.join(running) or 'lease all'}): it "
                  f"reconciles every {settings.engine.reconcile_every_s:g} s and after each reconnect; "
                  "`scalper reconcile --dry-run` shows what a pass would change",
                  file=sys.stderr)  # fmt: skip
            return 2
    engine.reconciler.dry_run = args.dry_run  # type: ignore[union-attr]
    engine.bus.ensure_groups(engine.symbols)
    for pos in engine.store.load_live():
        if pos.symbol in engine.book:
            engine.adopt(pos)
    report = engine.reconciler.reconcile(engine, engine.now())  # type: ignore[union-attr]
    if not args.dry_run:
        engine.lease.release()
    data = asdict(report)
    if args.json:
        print(inspect.dumps(data))
    else:
        print(f"exchange readable: {report.exchange_known} {report.why}")
        for pid, trig, why in report.corrections:
            print(f"  {pid or '-':<12} {trig:<16} {why}")
        print(
            f"{len(report.corrections)} correction(s){' (dry run: nothing changed)' if args.dry_run else ''}"
        )
    return 0 if report.exchange_known else 3

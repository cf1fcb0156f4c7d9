"""`scalper optimize DATA… --param …` and `scalper sweep DATA… --param …`: backtests of many settings as RQ
jobs on the project's Redis, an Optuna study (TPE, or a grid for a sweep) in that Redis, and a report that
puts in-sample beside out-of-sample (optimize/).

Redis is REDIS_URL when set (workers on other machines join with `scalper worker --trials` pointed at it);
otherwise a private embedded server under `<redis.data_dir>/optimize`, kept on disk so `--resume` finds the
study. `--workers K` starts K local trial workers (restarted if one dies) and stops them at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config.settings import ConfigError, Settings, load_settings
from scalper.backtest_cmd import _when, overrides_of

NAME = re.compile(r"^[A-Za-z0-9_]{1,60}$")
RESTART_S = 5.0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="*", metavar="DATA", help="files, globs or `sample` (as for backtest)")
    p.add_argument("--param", action="append", default=[], metavar="SECTION.FIELD=SPEC",
                   help="a setting to search: LOW:HIGH, LOW:HIGH:STEP or X|Y|Z (repeatable)")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="a fixed setting for every trial, as backtest --set (repeatable)")  # fmt: skip
    p.add_argument("--symbol", help="the instrument of data that does not name its own")
    p.add_argument("--from", dest="start", type=_when, metavar="TIME", help="ISO date/time (UTC) or epoch s")
    p.add_argument("--to", dest="end", type=_when, metavar="TIME", help="ISO date/time (UTC) or epoch s")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="the last part of the data kept out of the search, to test on (0: none)")  # fmt: skip
    p.add_argument("--objective", default="net_pnl",
                   help="net_pnl, net_pct, sharpe, sortino, calmar, profit_factor, win_rate, expectancy, "
                        "max_drawdown; comma-separated for a multi-objective study")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed: the same seed, the same study")
    p.add_argument("--name", help="the study's name in Redis (letters, digits, _); default: a timestamp")
    p.add_argument("--workers", type=int, default=1, help="local trial workers (0: remote ones only)")
    p.add_argument("--batch", type=int, default=4,
                   help="trials asked at a time; the study depends on it, not on the workers")  # fmt: skip
    p.add_argument("--top", type=int, default=10, help="best trials shown")
    p.add_argument("--out", type=Path, metavar="DIR", help="write study.html and best.env here")


def add_parsers(sub: Any) -> None:
    opt = sub.add_parser("optimize", help="search settings with Optuna over backtests run as RQ jobs",
                         description="Optimise settings: each trial is a backtest (in sample and out of "
                                     "sample) run by trial workers on the project's Redis.")  # fmt: skip
    _common(opt)
    opt.add_argument("--trials", type=int, help="trials in all (default 100; resumed: as it was)")
    opt.add_argument("--resume", metavar="NAME", help="continue the study NAME (its data and parameters)")
    sweep = sub.add_parser("sweep", help="a grid over one or two settings, with a heat map",
                           description="Every combination of one or two settings' values, as backtests on "
                                       "the trial workers.")  # fmt: skip
    _common(sweep)


def run(args: argparse.Namespace) -> int:
    from backtest.load import DataError
    from optimize.coordinator import StudyError
    from optimize.objectives import ObjectiveError
    from optimize.params import ParamError

    try:
        return _run(args)
    except (ConfigError, ParamError, ObjectiveError, StudyError, DataError) as err:
        print(f"scalper: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from optimize.coordinator import Coordinator, load_plan, open_study, own_study

    settings = load_settings(**overrides_of(args.overrides))
    resume = getattr(args, "resume", None)
    plan = None if resume else _plan(args, settings)  # a bad --param is said before Redis is opened
    redis_handle = _redis(settings)
    url, client = redis_handle.url, redis_handle.client
    workers: list[subprocess.Popen[bytes]] = []
    lock = None
    try:
        lock = own_study(client, settings.redis.prefix, resume or plan.name)
        if plan is None:
            plan = load_plan(client, settings.redis.prefix, resume)
            plan.trials = args.trials or plan.trials
        study = open_study(plan, client, url, resume=bool(resume))
        workers = [_start_worker(url) for _ in range(max(args.workers, 0))]
        started = [time.monotonic()] * len(workers)

        def keep_workers() -> None:
            """A local worker that died is started again, at most once per RESTART_S per slot (one that
            cannot start at all is said every RESTART_S, not restarted in a loop)."""
            for i, proc in enumerate(workers):
                if proc.poll() is not None and time.monotonic() - started[i] >= RESTART_S:
                    print(f"optimize: local worker {proc.pid} exited ({proc.returncode}); starting another",
                          file=sys.stderr)  # fmt: skip
                    workers[i], started[i] = _start_worker(url), time.monotonic()

        if not workers:
            print("optimize: no local workers: trials wait for `scalper worker --trials` on this Redis",
                  file=sys.stderr)  # fmt: skip
        try:
            Coordinator(plan, study, client, say=lambda s: print(s, file=sys.stderr), tick=keep_workers,
                    lock=lock).run()
        except KeyboardInterrupt:
            print(f"optimize: stopped; `scalper optimize --resume {plan.name}` continues the study",
                  file=sys.stderr)  # fmt: skip
            return 130
        for proc in workers:
            proc.terminate()
        _report(study, plan, args.top, args.out)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)
        if lock is not None:
            from redis.exceptions import LockError, RedisError

            with contextlib.suppress(LockError, RedisError):  # lapses by itself within its TTL
                lock.release()
        redis_handle.close()
    return 0


def _plan(args: argparse.Namespace, settings: Settings) -> Any:
    from backtest.load import DataError, load
    from optimize import objectives, params
    from optimize.coordinator import Plan
    from workers.strategies import strategy_class

    if not args.data:
        raise ConfigError("give the DATA to optimise on (or --resume NAME)")
    if not args.param:
        raise ConfigError("give at least one --param SECTION.FIELD=SPEC to search")
    name = args.name or time.strftime("study_%Y%m%d_%H%M%S")
    if not NAME.match(name):
        raise ConfigError(f"--name {name!r}: letters, digits and _ only")
    grid = args.command == "sweep"
    strategy_class(settings.engine.strategy)  # a bad engine.strategy is said as such, before its params
    found = [params.parse(p, settings.engine.strategy) for p in args.param]
    if grid and len(found) > 2:
        raise ConfigError("a sweep is over one or two settings; use `scalper optimize` for more")
    base = overrides_of(args.overrides)
    params.check(found, base)
    size = 1
    for p in found:
        size *= len(p.grid()) if grid else 1
    if not 0 <= args.test_fraction < 1:
        raise ConfigError(f"--test-fraction {args.test_fraction}: must be in [0, 1)")
    data_args = [_absolute(a) for a in args.data]
    data = load(data_args, settings, symbol=args.symbol, start=args.start, end=args.end)
    split = data.start_ts + (data.end_ts - data.start_ts) * (1 - args.test_fraction)
    ins = (args.start, split if args.test_fraction else args.end)
    outs = (split, args.end) if args.test_fraction else None
    for what, window in (("in-sample", ins), ("out-of-sample", outs)):
        if window is None:
            continue
        try:  # each window warms the indicators up on its own first bars: say now if one cannot
            load(data_args, settings, symbol=args.symbol, start=window[0], end=window[1])
        except DataError as err:
            raise DataError(f"the {what} window ({args.test_fraction:g} of the data is kept out of sample): "
                            f"{err}") from None
    return Plan(name=name, params=found, objectives=objectives.parse(args.objective),
                trials=size if grid else args.trials or 100, seed=args.seed, batch=max(args.batch, 1),
                base=base, sets=list(args.overrides), data=data_args, symbol=args.symbol, in_sample=ins,
                out_of_sample=outs, grid=grid, prefix=settings.redis.prefix)  # fmt: skip


def _absolute(arg: str) -> str:
    """A file given relative to here, made absolute: a worker runs elsewhere (`sample` and globs stay)."""
    head, eq, tail = arg.partition("=")
    if eq and os.path.exists(tail):
        return f"{head}={os.path.abspath(tail)}"
    return os.path.abspath(arg) if os.path.exists(arg) else arg


class _Redis:
    def __init__(self, url: str, client: Any, server: Any = None) -> None:
        self.url, self.client, self.server = url, client, server

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


def _redis(settings: Settings) -> _Redis:
    """REDIS_URL (or a running `scalper run`'s embedded server), else a private embedded one on disk."""
    from scalper.connect import NoRedis, redis_client, redis_url

    try:
        return _Redis(redis_url(settings), redis_client(settings))
    except NoRedis:
        if settings.redis.url is not None:
            raise
    from scalper.embedded import LocalRedis, stop_stale_servers

    where = Path(settings.redis.data_dir) / "optimize"
    where.mkdir(parents=True, exist_ok=True)
    stop_stale_servers(where)  # left by an optimize that was killed
    server = LocalRedis(where)
    server.start()
    return _Redis(f"unix://{server.socket_path}", server.client(), server)


def _start_worker(url: str) -> subprocess.Popen[bytes]:
    from scalper.deathsig import dies_with_parent

    env = {**os.environ, "REDIS_URL": url}
    env.pop("SCALPER_REDIS__URL", None)
    return subprocess.Popen([sys.executable, "-m", "scalper", "worker", "--trials"], env=env,
                            preexec_fn=dies_with_parent())  # fmt: skip


def _report(study: Any, plan: Any, top: int, out: Path | None) -> None:
    from optimize.summary import summarize
    from optimize.terminal import render
    from reports.terminal import console

    summary = summarize(study, plan, top)
    render(summary, console())
    if out is None:
        print("optimize: --out DIR writes the HTML report", file=sys.stderr)
        return
    from optimize.page import render_page

    out.mkdir(parents=True, exist_ok=True)
    best = _best_report(plan, summary)
    (out / "study.html").write_text(render_page(study, summary, best))
    (out / "best.env").write_text("".join(f"{line}\n" for line in summary.env))
    print(f"wrote {out / 'study.html'}\nwrote {out / 'best.env'}", file=sys.stderr)


def _best_report(plan: Any, summary: Any) -> Any:
    """The best trial's backtest over the whole data (both windows), as `scalper backtest` reports it."""
    if summary.best is None:
        return None
    from backtest.load import load
    from backtest.output import run_result
    from backtest.run import run_backtest
    from optimize.params import merged, nested
    from reports.report import build

    settings = load_settings(**merged(plan.base, nested(summary.best.params)))
    end = plan.out_of_sample[1] if plan.out_of_sample else plan.in_sample[1]
    data = load(plan.data, settings, symbol=plan.symbol, start=plan.in_sample[0], end=end)
    result = run_backtest(settings, data.series)
    sets = [*plan.sets, *(f"{k}={v}" for k, v in summary.best.params.items())]
    return build(run_result(result, data, sets))

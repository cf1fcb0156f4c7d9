"""One trial as an RQ job: the backtest of one set of settings on the in-sample window and on the
out-of-sample window, its metrics written to Redis under the trial's number.

The job knows nothing of Optuna: the coordinator (optimize/coordinator.py) asks the study for the settings,
enqueues this job, and tells the study what it wrote. The result key is written once (SET NX): a trial run
twice (its worker was thought dead, and was not) is still one result. While it runs, the job refreshes a
heartbeat key with a short TTL from a thread, so the coordinator can tell a running trial from one whose
worker died (SIGKILL, a machine gone) and enqueue it again.

The payload holds the resolved settings of the sections a backtest reads (config/settings.py), never a
secret: a worker's own environment does not change a trial, whichever machine runs it.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job

from backtest.load import LoadedData, load
from backtest.output import run_result
from backtest.run import run_backtest
from config.settings import Settings, load_settings
from optimize.params import EXCHANGE_FIELDS, NOT_SENT
from reports.report import build
from workers.strategies import absolute_spec

BEAT_S = 1.0  # the job's heartbeat period...
BEAT_TTL_S = 5.0  # ...and how long a heartbeat lasts: a started trial with none is a dead worker's


@dataclass(frozen=True)
class Keys:
    """Where a study's trial results and heartbeats live in Redis (beside its Optuna journal)."""

    prefix: str
    study: str

    def result(self, trial: int) -> str:
        return f"{self.prefix}:optimize:{self.study}:result:{trial}"

    def beat(self, trial: int) -> str:
        return f"{self.prefix}:optimize:{self.study}:beat:{trial}"

    def journal(self) -> str:
        return f"{self.prefix}:optimize:{self.study}:journal"

    def owner(self) -> str:
        return f"{self.prefix}:optimize:{self.study}:owner"

    def meta(self) -> str:
        return f"{self.prefix}:optimize:{self.study}:meta"


def resolved(settings: Settings) -> dict[str, Any]:
    """The settings a trial runs with, as plain data without secrets (and without the Redis address). A
    strategy given as a relative file is sent as an absolute path: the worker may run in another directory."""
    data = settings.model_dump(mode="json", exclude={*NOT_SENT, "exchange"})
    data["engine"]["strategy"] = absolute_spec(settings.engine.strategy)
    data["exchange"] = settings.exchange.model_dump(mode="json", include=set(EXCHANGE_FIELDS))
    return data


@dataclass(frozen=True)
class Window:
    start: float | None
    end: float | None


_cache: dict[tuple[Any, ...], LoadedData] = {}  # a worker loads each window's data once, not per trial


def _data(args: list[str], symbol: str | None, window: Window, settings: Settings) -> LoadedData:
    key = (tuple(args), symbol, window.start, window.end, settings.indicators.candle_seconds,
           next(iter(settings.symbols)))  # fmt: skip
    if key not in _cache:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = load(args, settings, symbol=symbol, start=window.start, end=window.end)
    return _cache[key]


def metrics(settings: Settings, args: list[str], symbol: str | None, window: Window) -> dict[str, Any]:
    """The backtest of `window` summed up as the report does (reports/metrics.py)."""
    data = _data(args, symbol, window, settings)
    result = run_backtest(settings, data.series)
    s = build(run_result(result, data, [])).summary
    return {
        "net_pnl": float(s.net_pnl), "net_pct": s.net_pct, "sharpe": s.ratios.sharpe,
        "sortino": s.ratios.sortino, "calmar": s.ratios.calmar, "max_drawdown": s.drawdown.pct,
        "win_rate": s.win_rate_pct, "profit_factor": s.profit_factor, "trades": s.trades,
        "expectancy": float(s.expectancy) if s.expectancy is not None else None,
        "start": result.start_ts, "end": result.end_ts,
    }  # fmt: skip


def run_trial(payload: dict[str, Any]) -> None:
    """The RQ job: the trial's backtests, the result written once under its number."""
    job = get_current_job()
    assert job is not None
    client: redis.Redis = job.connection
    keys = Keys(payload["prefix"], payload["study"])
    n = payload["trial"]
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(client, keys.beat(n), stop), daemon=True)
    client.set(keys.beat(n), payload["attempt"], px=int(BEAT_TTL_S * 1000))
    beat.start()
    started = time.perf_counter()
    try:
        result = _measure(payload)
    except Exception as err:  # a trial that raises is a failed trial with its reason, not a crashed worker
        result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    finally:
        stop.set()
        beat.join()
    result |= {"attempt": payload["attempt"], "seconds": time.perf_counter() - started,
               "worker": getattr(job, "worker_name", None)}  # fmt: skip
    client.set(keys.result(n), json.dumps(result), nx=True)
    client.delete(keys.beat(n))


def _measure(payload: dict[str, Any]) -> dict[str, Any]:
    settings = load_settings(**payload["settings"])
    args, symbol = payload["data"], payload.get("symbol")
    ins = metrics(settings, args, symbol, Window(*payload["in_sample"]))
    outs = payload.get("out_of_sample")
    oos = metrics(settings, args, symbol, Window(*outs)) if outs else None
    return {"ok": True, "in": ins, "out": oos}


def _beat(client: redis.Redis, key: str, stop: threading.Event) -> None:
    while not stop.wait(BEAT_S):
        # A missed beat: the coordinator may run the trial again; its result is still one.
        with contextlib.suppress(redis.RedisError):
            client.set(key, 1, px=int(BEAT_TTL_S * 1000))


def finite(x: float | None) -> float:
    """An objective's value Optuna can take: a figure that cannot be measured (no trade: no Sharpe) is 0."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return 0.0
    return float(x)

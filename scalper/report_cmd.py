"""`scalper report`: the report of a live or paper run, from its Redis, through the backtest's report code.

Its Redis is the run's, running or stopped (scalper/run_redis.py), as for `scalper positions` and `show`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import redis

from config.settings import Settings
from reports.report import Report, build
from reports.terminal import console, render
from reports.trades import RunResult
from scalper.run_history import History, contract_values, read_history, read_prices, realized_curve
from scalper.run_redis import RunDataError, run_redis
from statemachines.keys import Keys


class ReportError(RunDataError):
    """The report cannot be made; the message is the one line the operator sees."""


@dataclass(frozen=True)
class Window:
    since: float | None = None
    until: float | None = None


def parse_time(text: str) -> float:
    """Epoch seconds, or an ISO-8601 date or time (UTC unless it names its offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch seconds nor an ISO-8601 date or time") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()




def starting_balance(
    client: redis.Redis, settings: Settings, history: History, given: Decimal | None
) -> Decimal:
    """`--balance`, or the paper account's starting balance plus what closed before the window."""
    if given is not None:
        return given
    if settings.exchange.venue != "paper":
        raise ReportError(
            "the starting balance of an OKX account is not in Redis (deposits and withdrawals "
            "are not known to scalper): give it with --balance AMOUNT"
        )
    from exchanges.paper.state import PaperState

    if not client.exists(PaperState(client, settings.redis.prefix).key("account")):
        raise ReportError("no paper account in this Redis: give the starting balance with --balance AMOUNT")
    return PaperState(client, settings.redis.prefix).account().start + history.net_before


def live_run(
    client: redis.Redis, settings: Settings, window: Window, balance: Decimal | None, *, prices: bool = False
) -> tuple[RunResult, History]:
    """The run's trades in the window; with `prices`, the ticks the streams hold too (for report.html)."""
    keys = Keys(settings.redis.prefix)
    history = read_history(client, keys, contract_values(), window.since, window.until)
    start_balance = starting_balance(client, settings, history, balance)
    start = window.since if window.since is not None else history.first_ts
    end = window.until if window.until is not None else history.last_ts
    start = start if start is not None else time.time()
    end = max(end if end is not None else start, start)
    symbols = {t.symbol for t in history.trades} | {p.symbol for p in history.open_positions}
    run = RunResult(
        trades=history.trades,
        equity=realized_curve(history, start_balance, start),
        starting_balance=start_balance,
        start_ts=start,
        end_ts=end,
        source="paper" if settings.exchange.venue == "paper" else "live",
        open_positions=history.open_positions,
        prices=read_prices(client, keys, symbols) if prices else {},
        meta={
            "venue": settings.exchange.venue,
            "redis prefix": settings.redis.prefix,
            "trades from": "position hashes and the trade ledger",
        },
    )
    return run, history


def warnings(history: History) -> list[str]:
    out = []
    if history.in_flight:
        out.append(
            f"{len(history.in_flight)} position(s) with an order in flight ({', '.join(history.in_flight)}): "
            "what the exchange did with it may not be in Redis yet, nor in this report"
        )
    if history.unreadable:
        out.append(
            f"{len(history.unreadable)} record(s) could not be read and are left out: "
            + "; ".join(history.unreadable[:3])
        )
    return out


def run_report(
    settings: Settings, *, window: Window, out: Path | None, as_json: bool, balance: Decimal | None
) -> int:
    try:
        with run_redis(settings) as client:
            run, history = live_run(client, settings, window, balance, prices=out is not None)
    except RunDataError as err:  # ReportError included
        print(f"scalper: report: {err}", file=sys.stderr)
        return 2
    from reports.files import report_json, write_all  # plotly's import: only for a report

    report = build(run)
    for line in warnings(history):
        print(f"scalper: report: {line}", file=sys.stderr)
    if as_json:
        sys.stdout.write(report_json(report))
    else:
        render(report, console())
    if out is not None:
        paths = write_all(report, out)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr if as_json else sys.stdout)
    return 0


def summary_at_stop(client: redis.Redis, settings: Settings) -> Report | None:
    """The report of what the run's Redis holds; None when there is nothing to report (no position, or
    no paper account to take the starting balance from)."""
    try:
        run, _ = live_run(client, settings, Window(), None)
    except ReportError:
        return None
    if not run.trades and not run.open_positions:
        return None
    return build(run)


def print_summary_at_stop(url: str | None, settings: Settings) -> None:
    """`scalper run`, its children stopped and its Redis still up: the report's summary panel. Never fails
    the stop: a Redis that cannot be read gets one line instead."""
    from scalper.connect import NoRedis, connect, scrub

    if url is None:
        return
    try:
        report = summary_at_stop(connect(url, check=False, options=settings.redis), settings)
    except NoRedis as err:  # its message shows the URL with the password masked
        print(f"scalper: no report at the stop ({err})", file=sys.stderr)
        return
    except Exception as err:  # the run must still stop its Redis cleanly; never a secret in the line
        print(
            f"scalper: no report at the stop ({type(err).__name__}: {scrub(str(err), url)})", file=sys.stderr
        )
        return
    if report is not None:
        render(report, console(), tables=False)
        print("scalper: the tables and the files: scalper report [--out DIR]")

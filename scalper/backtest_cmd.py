"""`scalper backtest DATA…`: recorded market data through the live decision code, with a report.

One process, no Redis: the settings are the live ones (environment, `.env`) with `--set` on top, per-symbol
overrides included; the data is read by content (feeds/); the run is deterministic (backtest/run.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from typing import Any

from config.settings import ConfigError, load_settings


def add_parser(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="run recorded market data through the live engine's decisions",
                        description="Backtest: the live engine's own decision code on recorded data, one "
                                    "process, no Redis. Deterministic: the same data and settings give the "
                                    "same trades.")  # fmt: skip
    bt.add_argument("data", nargs="+", metavar="DATA",
                    help="files, globs or `sample`; SYMBOL=PATH names a file's instrument")  # fmt: skip
    bt.add_argument("--symbol", help="the instrument of data that does not name its own (default: the "
                                     "first configured symbol)")  # fmt: skip
    bt.add_argument("--from", dest="start", type=_when, metavar="TIME", help="ISO date/time (UTC) or epoch s")
    bt.add_argument("--to", dest="end", type=_when, metavar="TIME", help="ISO date/time (UTC) or epoch s")
    bt.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="a setting for this run, e.g. risk.leverage=5 or "
                         "symbols.BTC-USDT-SWAP.exits.stop_loss_max_pct=1 (repeatable)")  # fmt: skip
    bt.add_argument("--funding", action="append", default=[], metavar="[SYMBOL=]FILE",
                    help="funding rates to charge (OKX funding-rate-history, CSV time,rate, Freqtrade's "
                         "funding candles); repeatable")  # fmt: skip
    bt.add_argument("--out", metavar="DIR", help="write trades.csv, equity.csv, report.json, report.html")
    bt.add_argument("--quiet", action="store_true", help="no progress bar, only the report")


def _when(text: str) -> float:
    from scalper.report_cmd import parse_time

    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def overrides_of(pairs: list[str]) -> dict[str, Any]:
    """`section.field=value` pairs as nested settings; a value is read as JSON when it parses (numbers,
    booleans, lists), else taken as text. `symbols.<SYMBOL>.<section>.<field>` sets a per-symbol override."""
    out: dict[str, Any] = {}
    for pair in pairs:
        path, eq, text = pair.partition("=")
        parts = path.split(".")
        if not eq or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {pair!r}: expected SECTION.FIELD=VALUE (e.g. risk.leverage=5)")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        node = out
        for key in parts[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {key} is set twice, as a value and as a section")
        node[parts[-1]] = value
    return out


def _funding(args: list[str], symbols: list[str]) -> dict[str, list[tuple[float, Decimal]]]:
    """Each `[SYMBOL=]FILE` read by content; a file that does not name its instrument is the data's first."""
    from exchanges.funding import load_funding

    out: dict[str, list[tuple[float, Decimal]]] = {}
    for arg in args:
        symbol, eq, path = arg.partition("=")
        symbol, path = (symbol, path) if eq else (symbols[0], arg)
        for sym, rates in load_funding(path, symbol).items():
            out[sym] = sorted({*out.get(sym, []), *((r.ts, r.rate) for r in rates)})
    return out


def run(args: argparse.Namespace) -> int:
    from backtest.load import DataError, load
    from backtest.run import DataTooShort, run_backtest
    from exchanges.funding import FundingDataError

    try:
        settings = load_settings(**overrides_of(args.overrides))
        from workers.strategies import check_strategy

        check_strategy(settings)
    except ConfigError as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    try:
        data = load(args.data, settings, symbol=args.symbol, start=args.start, end=args.end)
    except DataError as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    for note in data.notes:  # records skipped, bars missing: said, and the run goes on
        print(f"scalper: {note}", file=sys.stderr)
    try:
        funding = _funding(args.funding, [d.symbol for d in data.series])
    except FundingDataError as err:
        print(f"scalper: --funding {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    progress = None if args.quiet else _progress(data)
    try:
        result = run_backtest(settings, data.series, funding=funding,
                              progress=progress.update if progress else None)  # fmt: skip
    except DataTooShort as err:
        print(f"scalper: {err}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    elapsed = time.perf_counter() - started
    from backtest.output import report

    report(result, data, args.overrides, args.out, elapsed)
    return 0


class _Progress:
    """A progress bar on stderr for the market time covered, shown once a run takes more than a second."""

    def __init__(self, start: float, end: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.start, self.span = start, max(end - start, 1.0)
        self.bar = Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TimeRemainingColumn(), console=_stderr(), transient=True)  # fmt: skip
        self.task = self.bar.add_task("run", total=100.0)
        self.t0 = time.perf_counter()
        self.shown = False
        self.last = 0.0

    def update(self, ts: float) -> None:
        now = time.perf_counter()
        if now - self.last < 0.1:
            return
        self.last = now
        if not self.shown and now - self.t0 > 1.0:
            self.bar.start()
            self.shown = True
        self.bar.update(self.task, completed=100.0 * (ts - self.start) / self.span)

    def close(self) -> None:
        if self.shown:
            self.bar.stop()


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _progress(data: Any) -> _Progress | None:
    if not sys.stderr.isatty():
        return None
    return _Progress(data.start_ts, data.end_ts)

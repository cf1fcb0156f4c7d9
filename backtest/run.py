"""A backtest run: market data in, trades and an equity curve out, deterministic.

Bars warm the indicators up first, as `scalper run --replay` does: the first `WARMUP_BARS` of each symbol go
to the indicators as closed candles (the live engine's history), and every later bar becomes four ticks
(feeds/data/expand.py `bar_ticks`). Tick data warms the indicators up from its own first minutes. The symbols'
ticks are merged in time order into one engine, so the portfolio-level gates (positions, notional, daily
loss) see every symbol as live. Positions still open when the data ends are closed on its last prices
through the one close path, with the exit reason `end_of_data`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice, repeat

from backtest.engine import BacktestEngine, Lane
from backtest.venue import MaintenanceRate, Quote, SimVenue
from config.settings import Settings
from exchanges.base import Instrument
from exchanges.paper import DEFAULT_INSTRUMENTS
from reports.trades import EquityPoint, Trade
from statemachines import stepper
from statemachines.lifecycle import State
from statemachines.snapshot import Action, Decision
from workers.account import position_tiers

END_OF_DATA = "end_of_data"
Bar = tuple[float, float, float, float, float]
Tick = tuple[float, float, float | None, float | None]  # ts, price, bid, ask


class DataTooShort(ValueError):
    """The data cannot warm the indicators up: nothing could ever be traded on it."""


@dataclass(frozen=True)
class SymbolData:
    """One symbol's market data: bars (with their warm-up taken off) or ticks."""

    symbol: str
    ticks: Callable[[], Iterable[Tick]]  # called once; every tick after the warm-up, in time order
    warmup: list[Bar] = field(default_factory=list)  # closed candles for the indicators before any tick
    bars: int = 0  # bars replayed as ticks (0 for tick data)


@dataclass
class BacktestResult:
    trades: list[Trade]
    equity: list[EquityPoint]
    start_balance: Decimal
    end_balance: Decimal  # free cash at the end; every position is closed by then
    start_ts: float
    end_ts: float
    symbols: list[str]
    bars: int
    ticks: int
    dropped_ticks: int
    entries_failed: int
    refusals: dict[str, int]
    prices: dict[str, tuple[list[float], list[float]]]  # per symbol, one price per equity sample
    liquidations: int
    # The strategy raised on these symbols and was quarantined there from then: symbol -> (time, why).
    strategy_failures: dict[str, tuple[float, str]] = field(default_factory=dict)
    strategy: str = ""  # engine.strategy


class _Samples:
    """The equity, and each quoted symbol's price, once a candle: plain lists while the run goes, shaped into
    the result at its end."""

    def __init__(self, venue: SimVenue, progress: Callable[[float], None] | None) -> None:
        self.venue, self.progress = venue, progress
        self.ts: list[float] = []
        self.equity: list[float] = []
        self._px: dict[str, list[float]] = {}  # a symbol's prices from its first quote on
        self._first: dict[str, int] = {}  # the index in `ts` of that first sample
        self._quoted: list[tuple[Quote, Callable[[float], None]]] = []  # a quote, its price list's append

    def __call__(self, ts: float) -> None:
        venue = self.venue
        self.ts.append(ts)
        self.equity.append(venue.equity())
        if len(venue.quotes) != len(self._quoted):  # a symbol has its first quote
            for symbol, quote in venue.quotes.items():
                if symbol not in self._px:
                    self._first[symbol], self._px[symbol] = len(self.ts) - 1, []
                    self._quoted.append((quote, self._px[symbol].append))
        for quote, append in self._quoted:
            append(quote.px)
        if self.progress is not None:
            self.progress(ts)

    def prices(self, symbols: list[str]) -> dict[str, tuple[list[float], list[float]]]:
        return {s: (self.ts[self._first[s] :], self._px[s]) if s in self._px else ([], []) for s in symbols}


def run_backtest(
    settings: Settings,
    data: list[SymbolData],
    *,
    instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS,
    maintenance: MaintenanceRate | None = None,
    funding: dict[str, list[tuple[float, Decimal]]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> BacktestResult:
    """Run `data` through the live decision code on a simulated venue. `progress` is told the market time
    now and then (a progress bar)."""
    symbols = [d.symbol for d in data]
    known = {i.inst_id: i for i in instruments}
    missing = [s for s in symbols if s not in known]
    if missing:
        raise ValueError(f"no instrument data for {', '.join(missing)} (known: {', '.join(sorted(known))})")
    insts = {s: known[s] for s in symbols}
    ex = settings.exchange
    venue = SimVenue(
        instruments=insts, balance=ex.paper_balance, taker_fee=ex.taker_fee,
        latency_s=settings.backtest.latency_ms / 1000.0, spread_bps=Decimal(repr(ex.paper_spread_bps)),
        leverage=Decimal(settings.risk.leverage),
        maintenance=maintenance or position_tiers(settings).maintenance_rate,
        funding_times=funding or {},
    )  # fmt: skip
    engine = BacktestEngine(settings, symbols, venue, insts)
    for d in data:
        if d.warmup:
            engine.ind[d.symbol].warm_up(d.warmup)
            engine.guard[d.symbol].anchor(d.warmup[-1][0], d.warmup[-1][4])

    sample = _Samples(venue, progress)
    every = float(settings.indicators.candle_seconds)
    if len(data) == 1:  # one symbol: its ticks as they come, no merge
        lane = engine.lanes[data[0].symbol]
        played = engine.play(zip(repeat(lane), data[0].ticks()), every, sample)
    else:  # every symbol's ticks merged in time order; on equal times, in the order the symbols were given
        played = engine.play(merged([engine.lanes[d.symbol] for d in data], [d.ticks() for d in data]),
                             every, sample)  # fmt: skip
    ticks, start_ts, end_ts = played
    if not ticks:
        raise DataTooShort("the data holds no ticks after the indicators' warm-up")
    cold = [s for s in symbols if not engine.ind[s].warm]
    if len(cold) == len(symbols):  # nothing could ever have been traded: say why instead of a silent run
        ind = settings.indicators
        need = max(ind.macd_slow + ind.macd_signal - 1, ind.rsi_period + 1, ind.atr_period + 1)
        raise DataTooShort(
            f"the data is too short to warm the indicators up: MACD({ind.macd_fast},{ind.macd_slow},"
            f"{ind.macd_signal}), RSI({ind.rsi_period}) and ATR({ind.atr_period}) need {need} candles of "
            f"{ind.candle_seconds} s ({need * ind.candle_seconds / 60:.0f} min); "
            f"{', '.join(cold)} spans {(end_ts - start_ts) / 60:.1f} min"
        )  # fmt: skip
    _close_at_end(engine)
    equity = list(map(EquityPoint._make, zip(sample.ts, sample.equity, strict=True)))
    equity.append(EquityPoint(end_ts, venue.equity()))
    return BacktestResult(
        trades=engine.trades, equity=equity, start_balance=ex.paper_balance, end_balance=venue.cash,
        start_ts=start_ts, end_ts=end_ts, symbols=symbols, bars=sum(d.bars for d in data), ticks=ticks,
        dropped_ticks=engine.dropped_ticks, entries_failed=engine.entries_failed,
        refusals=dict(sorted(engine.strategy_entries.refusals.items())), prices=sample.prices(symbols),
        liquidations=venue.liquidations, strategy_failures=dict(engine.strategy_failures),
        strategy=settings.engine.strategy,
    )  # fmt: skip


def merged(lanes: list[Lane], sources: list[Iterable[Tick]]) -> Iterator[tuple[Lane, Tick]]:
    """The sources' ticks, each with its lane, in time order; on equal times in the order given (heapq.merge's
    rule, without its generator layers: a third of the time of ten symbols)."""
    its = [iter(src) for src in sources]
    heap = [(t[0], i, t) for i, it in enumerate(its) for t in islice(it, 1)]  # the index breaks every tie
    heapq.heapify(heap)
    while heap:
        _, i, tick = heap[0]
        nxt = next(its[i], None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt[0], i, nxt))
        yield lanes[i], tick


def _close_at_end(engine: BacktestEngine) -> None:
    """Orders on their way land; what is still open is closed on the last prices, through `closing`."""
    engine.finish()
    for pos in engine.live_positions():
        if pos.state in (State.OPEN, State.TRAILING, State.HARVESTING):
            snap = engine.snap[pos.symbol]
            stepper.apply(engine.pm, pos, Decision(Action.CLOSE, END_OF_DATA), snap, engine.cfg[pos.symbol])
    engine.finish()
    left = engine.live_positions()
    if left:
        raise RuntimeError(f"positions still live after the end of the data: {[p.id for p in left]}")

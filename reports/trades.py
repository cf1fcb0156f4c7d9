"""The report's input: closed trades and an equity curve, from a backtest or a live run's Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed position. Money is in the quote currency (USDT); fees and funding carry OKX's sign
    (negative = paid), so the net is their plain sum with the gross."""

    position_id: str
    symbol: str
    side: str  # "long" | "short"
    entry_ts: float  # the entry fill, epoch seconds UTC (market time in a backtest)
    exit_ts: float  # the last closing fill
    entry_price: Decimal  # average entry fill
    # Average of every closing fill, harvests included; None where it cannot be known (a live run's trade
    # whose instrument's contract value could not be read: its exit price is derived from its PnL).
    exit_price: Decimal | None
    size: Decimal  # contracts entered
    contract_value: Decimal  # base currency per contract (OKX ctVal): notional = size × ct_val × price
    exit_reason: str
    gross_pnl: Decimal  # realized, before fees and funding
    fees: Decimal
    funding: Decimal = Decimal(0)
    time_in: dict[str, float] = field(default_factory=dict)  # seconds spent per lifecycle state

    @property
    def net_pnl(self) -> Decimal:
        return self.gross_pnl + self.fees + self.funding

    @property
    def holding_s(self) -> float:
        return max(0.0, self.exit_ts - self.entry_ts)


class EquityPoint(NamedTuple):
    """The account's equity at `ts`: the balance plus the open positions' unrealized PnL. A named tuple: a
    backtest makes one a candle (45,000 a month), built in two thirds of a frozen dataclass's time."""

    ts: float
    equity: float


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position still open when the run stopped. It is not a trade (nothing closed it), but its entry
    fee, and any part closed by a harvest, have already moved the account's balance."""

    position_id: str
    symbol: str
    side: str
    state: str  # its lifecycle state at the stop: opening, open, harvesting, trailing or closing
    entry_ts: float
    entry_price: Decimal
    size: Decimal  # contracts still held
    realized_pnl: Decimal  # of what harvests closed so far, before fees
    fees: Decimal  # charged so far (OKX sign): the entry's, and the harvests'
    funding: Decimal = Decimal(0)

    @property
    def realized(self) -> Decimal:
        """What it has done to the balance already."""
        return self.realized_pnl + self.fees + self.funding


@dataclass(frozen=True, slots=True)
class RunResult:
    """Everything the report reads about one run, whoever made it (a backtest, or a live or paper run's
    Redis). `start_ts`..`end_ts` is the run's time span (epoch seconds UTC), which exposure and the daily
    returns are measured over."""

    trades: list[Trade]
    equity: list[EquityPoint]  # by time; the starting balance at `start_ts` need not be in it
    starting_balance: Decimal
    start_ts: float
    end_ts: float
    source: str = "backtest"  # backtest | paper | live: says in the report where the trades come from
    open_positions: list[OpenPosition] = field(default_factory=list)
    # symbol -> (timestamps, prices): for the price chart of report.html, with the entries and exits marked
    prices: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    # what the run was: data files, symbols, bars, settings overrides... shown as given, in key order
    meta: dict[str, str] = field(default_factory=dict)

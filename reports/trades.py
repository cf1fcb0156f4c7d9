"""The report's input: closed trades and an equity curve, from a backtest or a live run's Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


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
    exit_price: Decimal  # average of every closing fill, harvests included
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


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The account's equity at `ts`: the balance plus the open positions' unrealized PnL."""

    ts: float
    equity: float

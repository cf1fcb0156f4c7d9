"""What a backtest prints and writes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from backtest.run import BacktestResult
from config.settings import Settings


def report(result: BacktestResult, settings: Settings, data: Any, out: str | None, elapsed: float) -> None:
    trades = result.trades
    net = sum((t.net_pnl for t in trades), Decimal(0))
    gross = sum((t.gross_pnl for t in trades), Decimal(0))
    fees = sum((t.fees for t in trades), Decimal(0))
    wins = sum(1 for t in trades if t.net_pnl > 0)
    print(f"trades {len(trades)}, win rate {100 * wins / max(1, len(trades)):.1f} %, net {net:.2f} "
          f"(gross {gross:.2f}, fees {fees:.2f}); {result.bars} bars in {elapsed:.2f} s")  # fmt: skip

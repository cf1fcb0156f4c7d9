"""`--objective`: which of a trial's in-sample figures the study optimises, and in which direction. The
figures are the backtest report's (reports/metrics.py), so a study's best net PnL is the one
`scalper backtest` prints for the same settings."""

from __future__ import annotations

OBJECTIVES = {
    "net_pnl": "maximize",  # USDT
    "net_pct": "maximize",  # of the starting balance
    "sharpe": "maximize",  # daily returns, annualised
    "sortino": "maximize",
    "calmar": "maximize",
    "profit_factor": "maximize",
    "win_rate": "maximize",  # %
    "expectancy": "maximize",  # USDT per trade
    "max_drawdown": "minimize",  # % below the equity's peak
}


class ObjectiveError(ValueError):
    pass


def parse(text: str) -> list[str]:
    """"net_pnl" or "net_pnl,max_drawdown" (multi-objective): the names, checked."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in OBJECTIVES]
    if not names or bad:
        raise ObjectiveError(f"--objective {text!r}: choose from {', '.join(OBJECTIVES)} (comma-separated "
                             "for several)")  # fmt: skip
    if len(set(names)) != len(names):
        raise ObjectiveError(f"--objective {text!r}: an objective is named twice")
    return names


def directions(names: list[str]) -> list[str]:
    return [OBJECTIVES[n] for n in names]

"""The report's tables: the trades grouped by exit reason, by side and by symbol, and the time spent in
each lifecycle state. Pure functions of the trades; money in Decimal."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from reports.trades import Trade

ZERO = Decimal(0)
# The states a position spends time in before it is closed, in lifecycle order.
LIFECYCLE_STATES = ("opening", "open", "harvesting", "trailing", "closing")


@dataclass(frozen=True, slots=True)
class GroupRow:
    key: str
    trades: int
    wins: int
    win_rate_pct: float
    net_pnl: Decimal
    avg_net: Decimal
    share_pct: float  # of all the trades (by count): what part of the run this group is


@dataclass(frozen=True, slots=True)
class StateRow:
    state: str
    total_s: float  # summed over the trades
    mean_s: float  # per trade (0 for a trade that never entered the state)
    share_pct: float  # of the time the trades spent in all states


def group_by(trades: Sequence[Trade], key: Callable[[Trade], str]) -> list[GroupRow]:
    """One row per distinct key: most trades first, then by key (a stable order for equal counts)."""
    groups: dict[str, list[Trade]] = {}
    for t in trades:
        groups.setdefault(key(t), []).append(t)
    rows = []
    for name, members in groups.items():
        net = sum((t.net_pnl for t in members), ZERO)
        wins = sum(1 for t in members if t.net_pnl > 0)
        rows.append(GroupRow(name, len(members), wins, 100.0 * wins / len(members), net,
                             net / len(members), 100.0 * len(members) / len(trades)))  # fmt: skip
    return sorted(rows, key=lambda r: (-r.trades, r.key))


def by_exit_reason(trades: Sequence[Trade]) -> list[GroupRow]:
    return group_by(trades, lambda t: t.exit_reason or "(none)")


def by_side(trades: Sequence[Trade]) -> list[GroupRow]:
    return group_by(trades, lambda t: t.side)


def by_symbol(trades: Sequence[Trade]) -> list[GroupRow]:
    return group_by(trades, lambda t: t.symbol)


def time_per_state(trades: Sequence[Trade]) -> list[StateRow]:
    """Every lifecycle state, in order, then any other state a trade recorded, by name."""
    others = sorted({s for t in trades for s in t.time_in} - set(LIFECYCLE_STATES) - {"closed"})
    states = [*LIFECYCLE_STATES, *others]
    totals = {s: sum(t.time_in.get(s, 0.0) for t in trades) for s in states}
    whole = sum(totals.values())
    return [StateRow(s, totals[s], statistics.fmean(t.time_in.get(s, 0.0) for t in trades) if trades else 0.0,
                     100.0 * totals[s] / whole if whole > 0 else 0.0) for s in states]  # fmt: skip

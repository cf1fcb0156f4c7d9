"""What a live or paper run did, read from its Redis as the report's input (reports/trades.py).

Closed positions come from two places: their hashes, while Redis keeps them (`engine.closed_retention_s`),
and the per-day trade ledger, whose rows outlive them. A position in both is counted once, from its hash.
A position that never filled (entry_failed, nothing paid) is no trade. Positions not yet closed are the
report's open positions: their entry fees are paid already. Those in `opening`, `harvesting` or `closing`
have an order in flight whose outcome may be at the exchange and not yet in Redis: listed as in flight.

Neither the position nor its ledger row holds an exit price. It is derived from the realized PnL, exactly
for the average of every closing fill: PnL = (exit − entry) × contracts × ctVal × direction, so
exit = entry + PnL / (contracts × ctVal × direction), with the contracts of the entry. It needs the
instrument's contract value (None where that is unknown). Funding is not recorded by the bot: 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from reports.trades import EquityPoint, OpenPosition, Trade
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord
from statemachines.lifecycle import State
from statemachines.position import Position
from statemachines.store import PositionStore

ZERO = Decimal(0)
IN_FLIGHT = frozenset({State.OPENING.value, State.HARVESTING.value, State.CLOSING.value})
MAX_TICKS = 50_000  # price points read per symbol for the chart (the tick stream is trimmed near this)


@dataclass
class History:
    trades: list[Trade] = field(default_factory=list)  # closed in the window, by exit time
    open_positions: list[OpenPosition] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)  # ids of open positions with an order in flight
    net_before: Decimal = ZERO  # net PnL of the trades closed before the window
    unreadable: list[str] = field(default_factory=list)  # hashes and ledger rows that could not be parsed
    first_ts: float | None = None  # the earliest entry and the latest event in the window
    last_ts: float | None = None


def contract_values() -> dict[str, Decimal]:
    """ctVal per symbol for the exit prices: the shipped instrument table (OKX's own values)."""
    from exchanges.paper import DEFAULT_INSTRUMENTS

    return {inst.inst_id: inst.ct_val for inst in DEFAULT_INSTRUMENTS}


def exit_price(
    entry: Decimal, gross: Decimal, size: Decimal, side: str, ct_val: Decimal | None
) -> Decimal | None:
    """The average closing price that realizes `gross` on `size` contracts entered at `entry`."""
    if ct_val is None or ct_val <= 0 or size <= 0 or entry <= 0:
        return None
    return entry + gross / (size * ct_val * (1 if side == "long" else -1))


def trade_of_position(pos: Position, ct_val: Decimal | None) -> Trade:
    return Trade(
        position_id=pos.id,
        symbol=pos.symbol,
        side=pos.side.value,
        entry_ts=pos.opened_at or pos.created_at,
        exit_ts=pos.state_since,
        entry_price=pos.entry_price,
        exit_price=exit_price(pos.entry_price, pos.realized_pnl, pos.entry_size, pos.side.value, ct_val),
        size=pos.entry_size,
        contract_value=ct_val or ZERO,
        exit_reason=pos.exit_reason,
        gross_pnl=pos.realized_pnl,
        fees=pos.fees,
        time_in=dict(pos.time_in),
    )


def trade_of_record(rec: TradeRecord, ct_val: Decimal | None) -> Trade:
    return Trade(
        position_id=rec.id,
        symbol=rec.symbol,
        side=rec.side,
        entry_ts=rec.entry_ts,
        exit_ts=rec.exit_ts,
        entry_price=rec.entry_price,
        exit_price=exit_price(rec.entry_price, rec.pnl, rec.size, rec.side, ct_val),
        size=rec.size,
        contract_value=ct_val or ZERO,
        exit_reason=rec.exit_reason,
        gross_pnl=rec.pnl,
        fees=rec.fees,
        time_in=dict(rec.time_in),
    )


def open_position(pos: Position) -> OpenPosition:
    return OpenPosition(
        position_id=pos.id,
        symbol=pos.symbol,
        side=pos.side.value,
        state=pos.state,
        entry_ts=pos.opened_at or pos.created_at,
        entry_price=pos.entry_price,
        size=pos.size,
        realized_pnl=pos.realized_pnl,
        fees=pos.fees,
    )


def never_filled(trade: Trade) -> bool:
    return trade.entry_price == 0 and trade.gross_pnl == 0 and trade.fees == 0


def gather(
    positions: Iterable[Position],
    records: Iterable[TradeRecord],
    contract_values: Mapping[str, Decimal],
    since: float | None = None,
    until: float | None = None,
) -> History:
    """The history of these positions and ledger rows: pure. Trades are those closed in [since, until); the
    open positions are listed only when the window reaches the present (no `until`)."""
    history = History()
    closed: dict[str, Trade] = {}
    for pos in positions:
        if pos.state == State.CLOSED.value:
            closed[pos.id] = trade_of_position(pos, contract_values.get(pos.symbol))
        elif until is None:
            history.open_positions.append(open_position(pos))
            if pos.state in IN_FLIGHT:
                history.in_flight.append(pos.id)
    for rec in records:
        if rec.id not in closed:
            closed[rec.id] = trade_of_record(rec, contract_values.get(rec.symbol))
    for trade in sorted(closed.values(), key=lambda t: (t.exit_ts, t.position_id)):
        if never_filled(trade) or (until is not None and trade.exit_ts >= until):
            continue
        if since is not None and trade.exit_ts < since:
            history.net_before += trade.net_pnl
            continue
        history.trades.append(trade)
    history.open_positions.sort(key=lambda p: (p.entry_ts, p.position_id))
    times = [t.entry_ts for t in history.trades] + [p.entry_ts for p in history.open_positions]
    ends = [t.exit_ts for t in history.trades] + times
    history.first_ts = min(times) if times else None
    history.last_ts = max(ends) if ends else None
    return history


def realized_curve(history: History, starting_balance: Decimal, start_ts: float) -> list[EquityPoint]:
    """The balance as the run realized it: each trade's net at its exit, each open position's fees at its
    entry. A live run's Redis keeps no marks over time, so this curve has no unrealized PnL in it."""
    steps = [(t.exit_ts, t.position_id, t.net_pnl) for t in history.trades]
    steps += [(p.entry_ts, p.position_id, p.realized) for p in history.open_positions]
    balance = starting_balance
    curve = [EquityPoint(start_ts, float(balance))]
    for ts, _, amount in sorted(steps):
        balance += amount
        curve.append(EquityPoint(max(ts, start_ts), float(balance)))
    return curve


def read_history(
    client: redis.Redis,
    keys: Keys,
    contract_values: Mapping[str, Decimal],
    since: float | None = None,
    until: float | None = None,
) -> History:
    """Every position the store holds and every ledger row, as a History (reads only)."""
    store = PositionStore(client, keys.prefix)
    unreadable: list[str] = []

    def on_bad(symbol: str, pid: str, _raw: Any, why: str) -> None:
        unreadable.append(f"{symbol}/{pid}: {why}")

    positions = [p for symbol in store.symbols() for p in store.load_symbol(symbol, on_bad=on_bad)]
    ledger = TradeLedger(client, keys)
    history = gather(positions, ledger.all(), contract_values, since, until)
    history.unreadable = unreadable + [f"ledger {row}" for row in ledger.malformed]
    return history


def read_prices(
    client: redis.Redis, keys: Keys, symbols: Iterable[str]
) -> dict[str, tuple[list[float], list[float]]]:
    """The last ticks each symbol's stream still holds (it is trimmed), for the report's price chart."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for symbol in sorted(set(symbols)):
        ts: list[float] = []
        px: list[float] = []
        for _id, f in reversed(client.xrevrange(keys.ticks(symbol), count=MAX_TICKS)):
            try:
                t, p = float(f.get(b"ts", f.get("ts"))), float(f.get(b"px", f.get("px")))
            except (TypeError, ValueError):
                continue  # a tick the engine quarantined: not a price
            ts.append(t)
            px.append(p)
        if ts:
            out[symbol] = (ts, px)
    return out

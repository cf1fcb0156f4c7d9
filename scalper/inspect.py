"""The read and operator commands: positions, show, open, close, panic, reconcile."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis

from reports.fmt import duration, iso, money
from scalper.run_history import contract_values, exit_price
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord
from statemachines.position import Position, Side
from statemachines.store import PositionNotFound, PositionStore
from workers import commands

COLUMNS = ("id", "symbol", "side", "state", "size", "entry", "exit", "stop", "trail", "exit_reason", "net",
           "gross", "fees", "opened", "closed")  # fmt: skip
MONEY = frozenset({"net", "gross", "fees"})
TIMES = frozenset({"opened", "closed"})
# Hash fields that are times (epoch seconds) and durations: `show` writes them for a person.
_TIME_FIELDS = frozenset({"created_at", "opened_at", "state_since", "wall_since"})
# Hash fields held as floats (levels and ratios the engine computes): shown without float artefacts. The
# Decimal ones (sizes, prices filled, PnL, fees) are shown exactly as held.
_FLOAT_FIELDS = frozenset({"stop_price", "trail_stop", "peak_pnl_pct", "liq_price", "margin_ratio"})


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else ""


def _num(x: Decimal | float | None) -> float | None:
    """A JSON number (None for "unknown", as a 0 price is)."""
    return None if x is None or not x else float(x)


def _iso(ts: float) -> str | None:
    return iso(ts) if ts else None


def _price_text(x: float | None) -> str:
    """A price as a person reads it: twelve significant digits at most, so no float artefacts."""
    return "" if x is None else f"{x:.12g}"


def row(pos: Position, ct_val: Decimal | None = None) -> dict[str, Any]:
    """A position as `positions --json` gives it: numbers as numbers, times ISO 8601 (UTC), money in the
    account's currency (net = gross PnL + fees, fees negative when charged)."""
    closed = pos.state == "closed"
    exit_px = exit_price(pos.entry_price, pos.realized_pnl, pos.entry_size, pos.side.value, ct_val)
    return {
        "id": pos.id, "symbol": pos.symbol, "side": pos.side.value, "state": pos.state,
        "size": float(pos.size if not closed else pos.entry_size), "entry": _num(pos.entry_price),
        "exit": _num(exit_px) if closed else None, "stop": _num(pos.stop_price),
        "trail": _num(pos.trail_stop),
        "peak_pnl_pct": pos.peak_pnl_pct, "exit_reason": pos.exit_reason,
        "net": float(pos.realized_pnl + pos.fees), "gross": float(pos.realized_pnl), "fees": float(pos.fees),
        "opened": _iso(pos.opened_at or pos.created_at), "closed": _iso(pos.state_since) if closed else None,
        "state_since": _iso(pos.state_since), "version": pos.version,
    }  # fmt: skip


def archived_row(rec: TradeRecord, ct_val: Decimal | None = None) -> dict[str, Any]:
    """A position removed after the retention, as its trade ledger row shows it (size: the entry's)."""
    return {
        "id": rec.id, "symbol": rec.symbol, "side": rec.side, "state": "archived", "size": float(rec.size),
        "entry": _num(rec.entry_price), "exit": _num(exit_price(rec.entry_price, rec.pnl, rec.size, rec.side,
                                                                ct_val)),
        "stop": None, "trail": None, "peak_pnl_pct": None, "exit_reason": rec.exit_reason,
        "net": float(rec.net), "gross": float(rec.pnl), "fees": float(rec.fees),
        "opened": _iso(rec.entry_ts), "closed": _iso(rec.exit_ts), "version": None,
    }  # fmt: skip


def positions(store: PositionStore, *, include_closed: bool) -> list[dict[str, Any]]:
    """Live positions; with `include_closed` also the closed ones Redis still holds and, as `archived`,
    those removed after the retention whose trade ledger row remains."""
    ct = contract_values()
    unreadable: list[dict[str, Any]] = []

    def on_bad(symbol: str, position_id: str, _raw: Any, err: str) -> None:
        # One hash that cannot be parsed must not hide every other position from the operator.
        unreadable.append({"id": position_id, "symbol": symbol, "state": "unreadable", "exit_reason": err})

    if not include_closed:
        found = store.load_live(on_bad=on_bad)
        rows = [row(p, ct.get(p.symbol)) for p in sorted(found, key=lambda p: (p.created_at, p.id))]
    else:
        found = [p for s in store.symbols() for p in store.load_symbol(s, on_bad=on_bad)]
        rows = rows_of(found, TradeLedger(store.client, store.keys).all())
    return rows + unreadable


def rows_of(found: list[Position], ledger: list[TradeRecord]) -> list[dict[str, Any]]:
    """The rows of stored positions and, as `archived`, of ledger rows whose position is no longer stored,
    oldest first (what `positions(include_closed=True)` shows, from what the caller read)."""
    ct = contract_values()
    stored = {p.id for p in found}
    archived = [r for r in ledger if r.id not in stored]
    keyed = [((p.created_at, p.id), row(p, ct.get(p.symbol))) for p in found]
    keyed += [((r.entry_ts, r.id), archived_row(r, ct.get(r.symbol))) for r in archived]
    return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]


def cell(column: str, value: Any) -> str:
    """One number format in the terminal: money to the cent with its sign, prices without float artefacts,
    times to the second in UTC."""
    if value is None:
        return ""
    if column in MONEY:
        return money(value, sign=True)
    if column in TIMES:
        return value.replace("T", " ")[:19]
    if isinstance(value, float):
        return _price_text(value)
    return str(value)


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    if not rows:
        return "no positions"
    cells = [{c: cell(c, r.get(c)) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(x[c]) for x in cells)) for c in columns}
    right = MONEY | {"size", "entry", "exit", "stop", "trail"}
    lines = ["  ".join(c.rjust(widths[c]) if c in right else c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(x[c].rjust(widths[c]) if c in right else x[c].ljust(widths[c]) for c in columns)
              for x in cells]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def show(store: PositionStore, position_id: str) -> dict[str, Any]:
    """The position's fields and log; for one removed after the retention, its trade ledger row."""
    try:
        pos = store.load(position_id)
    except PositionNotFound:
        rec = TradeLedger(store.client, store.keys).find(position_id)
        if rec is None:
            raise PositionNotFound(f"no stored position {position_id}, and no trade ledger row") from None
        archived = archived_row(rec, contract_values().get(rec.symbol))
        return {"archived": archived, "keys": {"ledger": store.keys.ledger(rec.day)}}
    return {
        "position": pos.to_hash(),
        "summary": row(pos, contract_values().get(pos.symbol)),
        "log": store.log(position_id),
        "keys": {"hash": store.keys.pos(pos.symbol, pos.id), "log": store.keys.log(pos.symbol, pos.id)},
    }


def _field_text(name: str, value: str) -> str:
    """A hash field for a person: times in UTC, durations, floats without artefacts; Decimals as held."""
    try:
        number = float(value)
    except ValueError:
        return value
    if name in _TIME_FIELDS:
        return _when(number) or "-"
    if name.startswith("t_"):
        return duration(number)
    if name in _FLOAT_FIELDS:
        return _price_text(number)
    return value


def show_text(data: dict[str, Any]) -> str:
    if "archived" in data:
        return _archived_text(data)
    pos, summary = data["position"], data["summary"]
    head = f"position {pos['id']}  {pos['symbol']} {pos['side']}  state {pos['state']}  v{pos['version']}"
    out = [head, f"  redis: HGETALL '{data['keys']['hash']}'   XRANGE '{data['keys']['log']}' - +", ""]
    result = [f"net {cell('net', summary['net'])}", f"gross {cell('gross', summary['gross'])}",
              f"fees {cell('fees', summary['fees'])}"]  # fmt: skip
    if summary["exit"] is not None:
        result.append(f"exit price {cell('exit', summary['exit'])}")
    out += ["  " + ",  ".join(result), ""]
    width = max(len(k) for k in pos)
    out += [f"  {k.ljust(width)}  {_field_text(k, v)}" for k, v in pos.items()]
    out += ["", "  transitions:"]
    for e in data["log"]:
        price = float(e["price"] or 0)
        at = f"  @ {_price_text(price)}" if price else ""
        out.append(f"    v{e['version']:>3}  {_when(float(e['ts']))}  {e['from'] or '∅':>10} → {e['to']:<10} "
                   f"{e['trigger']:<14} {e['reason']}{at}")  # fmt: skip
    return "\n".join(out)


def _archived_text(data: dict[str, Any]) -> str:
    rec, key = data["archived"], data["keys"]["ledger"]
    out = [f"position {rec['id']}  {rec['symbol']} {rec['side']}  archived: past the retention "
           "(engine.closed_retention_s), its hash and transition log were removed; its trade ledger row:",
           f"  redis: HGET '{key}' {rec['id']}", ""]  # fmt: skip
    fields = ("opened", "closed", "entry", "exit", "size", "exit_reason", "net", "gross", "fees")
    width = max(len(k) for k in fields)
    out += [f"  {k.ljust(width)}  {cell(k, rec[k])}" for k in fields]
    return "\n".join(out)


def request_close(
    client: redis.Redis, store: PositionStore, position_id: str, reason: str = "manual"
) -> str | None:
    """Persist the request on the position (survives an engine restart), then tell its engine now. The
    command's id (to wait for its outcome), or None when there is no live position `position_id`."""
    if not store.request_close(position_id, reason):
        return None
    cmd = commands.Command("close", commands.new_command_id(), position_id=position_id, reason=reason)
    return commands.send(client, store.keys, cmd)


def request_open(client: redis.Redis, keys: Keys, symbol: str, side: str) -> str:
    """Ask the engine that owns `symbol` for an entry; the command's id is the new position's id."""
    cmd = commands.Command("open", commands.new_command_id(), symbol=symbol, side=Side(side))
    return commands.send(client, keys, cmd)


def panic(client: redis.Redis, store: PositionStore, *, off: bool = False) -> list[str]:
    """Stop entries and close every live position (each through its own closing state)."""
    if off:
        client.delete(store.keys.panic())
        return []
    client.set(store.keys.panic(), repr(time.time()))
    closed = []
    for pos in store.load_live(on_bad=lambda *_: None):  # an unreadable hash is the engine's to report
        if request_close(client, store, pos.id, "panic"):
            closed.append(pos.id)
    return closed


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json)


def _json(x: Any) -> Any:
    """Numbers as numbers (a Decimal too); anything else as its text."""
    return float(x) if isinstance(x, Decimal) else str(x)

"""The read and operator commands: positions, show, open, close, panic, reconcile."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord
from statemachines.position import Position, Side
from statemachines.store import PositionNotFound, PositionStore
from workers import commands

COLUMNS = ("id", "symbol", "side", "state", "size", "entry_price", "stop_price", "trail_stop", "peak_pnl_pct",
           "exit_reason", "realized_pnl", "fees", "opened")  # fmt: skip


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def row(pos: Position) -> dict[str, Any]:
    return {
        "id": pos.id, "symbol": pos.symbol, "side": pos.side.value, "state": pos.state,
        "size": format(pos.size, "f"), "entry_price": format(pos.entry_price, "f"),
        "stop_price": round(pos.stop_price, 2), "trail_stop": round(pos.trail_stop, 2),
        "peak_pnl_pct": round(pos.peak_pnl_pct, 4), "exit_reason": pos.exit_reason,
        "realized_pnl": format(pos.realized_pnl, "f"), "fees": format(pos.fees, "f"),
        "opened": _when(pos.opened_at or pos.created_at), "version": pos.version,
    }  # fmt: skip


def archived_row(rec: TradeRecord) -> dict[str, Any]:
    """A position removed after the retention, as its trade ledger row shows it (size: the entry's)."""
    return {
        "id": rec.id, "symbol": rec.symbol, "side": rec.side, "state": "archived",
        "size": format(rec.size, "f"), "entry_price": format(rec.entry_price, "f"), "stop_price": "",
        "trail_stop": "", "peak_pnl_pct": "", "exit_reason": rec.exit_reason,
        "realized_pnl": format(rec.pnl, "f"), "fees": format(rec.fees, "f"), "opened": _when(rec.entry_ts),
        "version": "", "closed": _when(rec.exit_ts), "net": format(rec.net, "f"),
    }  # fmt: skip


def positions(store: PositionStore, *, include_closed: bool) -> list[dict[str, Any]]:
    """Live positions; with `include_closed` also the closed ones Redis still holds and, as `archived`,
    those removed after the retention whose trade ledger row remains."""
    if not include_closed:
        found = store.load_live()
        return [row(p) for p in sorted(found, key=lambda p: (p.created_at, p.id))]
    found = [p for s in store.symbols() for p in store.load_symbol(s)]
    stored = {p.id for p in found}
    archived = [r for r in TradeLedger(store.client, store.keys).all() if r.id not in stored]
    keyed = [((p.created_at, p.id), row(p)) for p in found]
    keyed += [((r.entry_ts, r.id), archived_row(r)) for r in archived]
    return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    if not rows:
        return "no positions"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def show(store: PositionStore, position_id: str) -> dict[str, Any]:
    """The position's fields and log; for one removed after the retention, its trade ledger row."""
    try:
        pos = store.load(position_id)
    except PositionNotFound:
        rec = TradeLedger(store.client, store.keys).find(position_id)
        if rec is None:
            raise PositionNotFound(f"no stored position {position_id}, and no trade ledger row") from None
        return {"archived": archived_row(rec), "keys": {"ledger": store.keys.ledger(rec.day)}}
    return {
        "position": pos.to_hash(),
        "log": store.log(position_id),
        "keys": {"hash": store.keys.pos(pos.symbol, pos.id), "log": store.keys.log(pos.symbol, pos.id)},
    }


def show_text(data: dict[str, Any]) -> str:
    if "archived" in data:
        return _archived_text(data)
    pos = data["position"]
    head = f"position {pos['id']}  {pos['symbol']} {pos['side']}  state {pos['state']}  v{pos['version']}"
    out = [head, f"  redis: HGETALL '{data['keys']['hash']}'   XRANGE '{data['keys']['log']}' - +", ""]
    width = max(len(k) for k in pos)
    out += [f"  {k.ljust(width)}  {v}" for k, v in pos.items()]
    out += ["", "  transitions:"]
    for e in data["log"]:
        out.append(f"    v{e['version']:>3}  {_when(float(e['ts']))}  {e['from'] or '∅':>10} → {e['to']:<10} "
                   f"{e['trigger']:<14} {e['reason']}  @ {e['price']}")  # fmt: skip
    return "\n".join(out)


def _archived_text(data: dict[str, Any]) -> str:
    rec, key = data["archived"], data["keys"]["ledger"]
    out = [f"position {rec['id']}  {rec['symbol']} {rec['side']}  archived: past the retention "
           "(engine.closed_retention_s), its hash and transition log were removed; its trade ledger row:",
           f"  redis: HGET '{key}' {rec['id']}", ""]  # fmt: skip
    fields = ("opened", "closed", "entry_price", "size", "exit_reason", "realized_pnl", "fees", "net")
    width = max(len(k) for k in fields)
    out += [f"  {k.ljust(width)}  {rec[k]}" for k in fields]
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
    return json.dumps(data, indent=2, default=str)

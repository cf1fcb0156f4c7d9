"""The read and operator commands: positions, show, open, close, panic, reconcile."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis

from statemachines.keys import Keys
from statemachines.position import Position, Side
from statemachines.store import PositionStore
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


def positions(store: PositionStore, *, include_closed: bool) -> list[dict[str, Any]]:
    if include_closed:
        found = [p for s in store.symbols() for p in store.load_symbol(s)]
    else:
        found = store.load_live()
    return [row(p) for p in sorted(found, key=lambda p: (p.created_at, p.id))]


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    if not rows:
        return "no positions"
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def show(store: PositionStore, position_id: str) -> dict[str, Any]:
    pos = store.load(position_id)
    return {
        "position": pos.to_hash(),
        "log": store.log(position_id),
        "keys": {"hash": store.keys.pos(pos.symbol, pos.id), "log": store.keys.log(pos.symbol, pos.id)},
    }


def show_text(data: dict[str, Any]) -> str:
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

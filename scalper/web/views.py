"""What `scalper web` shows, read from Redis: the positions, the day's and the run's totals, the system's
health. Plain data (numbers as numbers, times ISO 8601 UTC), shared by the JSON API and /metrics. Nothing
here writes a position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import redis

from reports.fmt import iso
from scalper import inspect
from scalper.run_history import contract_values
from statemachines.keys import Keys
from statemachines.ledger import TradeLedger, TradeRecord
from statemachines.lifecycle import STATES
from statemachines.position import Position
from statemachines.store import PositionStore
from workers.relay import QUEUE


def _epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


Stored = tuple[list[Position], list[TradeRecord]]  # every stored position, every ledger row


def _count_states(found: list[Position]) -> dict[str, int]:
    out = dict.fromkeys(STATES, 0)
    for pos in found:
        out[pos.state] = out.get(pos.state, 0) + 1
    return out


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class Views:
    client: redis.Redis
    store: PositionStore
    symbols: list[str]

    @property
    def keys(self) -> Keys:
        return self.store.keys

    # --- positions ---

    def positions(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        return inspect.positions(self.store, include_closed=include_closed)

    def position(self, position_id: str) -> dict[str, Any]:
        """The position's fields, its summary row and its whole transition log (times ISO 8601)."""
        data = inspect.show(self.store, position_id)
        for entry in data.get("log", []):
            entry["ts"] = iso(float(entry["ts"]))
            entry["price"] = float(entry["price"] or 0) or None
            entry["version"] = int(entry["version"])
        return data

    def by_state(self) -> dict[str, int]:
        """How many positions are in each lifecycle state (closed: those Redis still holds)."""
        pipe = self.client.pipeline(transaction=False)
        symbols = sorted({*self.symbols, *self.store.symbols()})
        for symbol in symbols:
            for state in STATES:
                pipe.scard(self.keys.state(symbol, state))
        counts = pipe.execute()
        out = dict.fromkeys(STATES, 0)
        for i, n in enumerate(counts):
            out[STATES[i % len(STATES)]] += int(n)
        return out

    def board(self) -> dict[str, Any]:
        """What the dashboard shows, in one read a second: the live positions with their mark, net PnL if
        closed at the mark (before the exit fee) and whether the exchange holds their stop; the latest
        closed trades; the totals; the health strip."""
        health = self.health()
        stored = self._stored()  # every position and ledger row, read once for the whole board
        rows = inspect.rows_of(*stored)
        marks = {s: f["price"] for s, f in health["feeds"].items() if f.get("price")}
        # The engine's clock: the exchange's, or in a replay the data's, which may run ahead of this host's.
        clocks = {s: _epoch(f["last_tick"]) for s, f in health["feeds"].items() if f.get("last_tick")}
        ct = contract_values()
        live = [r for r in rows if r["state"] not in ("closed", "archived")]
        placed = self._placed_stops({r["symbol"] for r in live})
        now = time.time()
        for r in live:
            mark, sign = marks.get(r["symbol"]), 1 if r["side"] == "long" else -1
            value = ct.get(r["symbol"])
            r["mark"] = mark
            r["unrealized_net"] = (round((mark - r["entry"]) * r["size"] * float(value) * sign + r["fees"], 2)
                                   if mark and r["entry"] and value else None)  # fmt: skip
            r["stop_at_exchange"] = f"{r['id']}s1" in placed
            since = r.get("state_since")
            clock = max(now, clocks.get(r["symbol"], 0.0))
            r["in_state_s"] = round(max(0.0, clock - _epoch(since)), 1) if since else None
        closed = [r for r in rows if r["state"] in ("closed", "archived")]
        return {"positions": live, "closed": closed[-20:][::-1], "summary": self.summary(stored=stored),
                "health": health}  # fmt: skip

    def _stored(self) -> Stored:
        """Every stored position and every ledger row: what the board and the totals are made of."""
        found = [p for symbol in self.store.symbols() for p in self.store.load_symbol(symbol)]
        return found, TradeLedger(self.client, self.keys).all()

    def _placed_stops(self, symbols: set[str]) -> set[str]:
        pipe = self.client.pipeline(transaction=False)
        ordered = sorted(symbols)
        for symbol in ordered:
            pipe.hgetall(self.keys.stops(symbol))
        return {_s(k) for raw in pipe.execute() for k, v in raw.items() if _s(v) == "placed"}

    # --- totals ---

    def summary(self, now: float | None = None, stored: Stored | None = None) -> dict[str, Any]:
        """Closed trades today (UTC) and over everything Redis holds: count, net, gross, fees; and what is
        live. Closed positions still stored and ledger rows are the same trades: each counted once.
        `stored`: the positions and ledger rows the caller read already (the board), else read here."""
        now = time.time() if now is None else now
        today = time.strftime("%Y%m%d", time.gmtime(now))
        trades: dict[str, tuple[float, Decimal, Decimal]] = {}  # id -> (close time, gross, fees)
        if stored is None:
            closed = [p for sym in self.store.symbols() for p in self.store.load_symbol(sym, ["closed"])]
            ledger = TradeLedger(self.client, self.keys).all()
        else:
            closed, ledger = [p for p in stored[0] if p.state == "closed"], stored[1]
        for rec in ledger:
            trades[rec.id] = (rec.exit_ts, rec.pnl, rec.fees)
        for pos in closed:
            trades[pos.id] = (pos.state_since, pos.realized_pnl, pos.fees)

        def totals(rows: list[tuple[float, Decimal, Decimal]]) -> dict[str, Any]:
            gross = sum((g for _, g, _ in rows), Decimal(0))
            fees = sum((f for _, _, f in rows), Decimal(0))
            wins = sum(1 for _, g, f in rows if g + f > 0)
            return {"trades": len(rows), "net": float(gross + fees), "gross": float(gross),
                    "fees": float(fees), "wins": wins}  # fmt: skip
        rows = list(trades.values())
        todays = [r for r in rows if time.strftime("%Y%m%d", time.gmtime(r[0])) == today]
        states = self.by_state() if stored is None else _count_states(stored[0])
        return {"time": iso(now), "today": totals(todays), "all": totals(rows),
                "live": sum(n for s, n in states.items() if s != "closed"), "by_state": states}  # fmt: skip

    # --- health ---

    def health(self, now: float | None = None) -> dict[str, Any]:
        """Feed lag per symbol, the engines' leases, the order queue, the reconciler's verdict, Redis memory,
        the panic flag, the quarantined records."""
        now = time.time() if now is None else now
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        for symbol in self.symbols:
            pipe.xrevrange(k.ticks(symbol), count=1)
        pipe.hgetall(k.exchange())
        pipe.exists(k.panic())
        pipe.hgetall(k.quarantined())
        pipe.llen(f"rq:queue:{QUEUE}")
        pipe.zcard(f"rq:wip:{QUEUE}")
        pipe.zcard(f"rq:failed:{QUEUE}")
        replies = pipe.execute()
        feeds = {}
        for symbol, last in zip(self.symbols, replies, strict=False):
            fields = {_s(a): _s(b) for a, b in last[0][1].items()} if last else {}
            ts, px = float(fields.get("ts") or 0), float(fields.get("px") or 0)
            lag = round(now - ts, 3) if ts else None
            feeds[symbol] = {"last_tick": iso(ts) if ts else None, "lag_s": lag, "price": px or None}
        exchange, panic, quarantined, queued, started, failed = replies[len(self.symbols):]
        ex = {_s(a): _s(b) for a, b in exchange.items()}
        leases = {}
        for key in self.client.scan_iter(match=f"{k.prefix}:lease:*"):
            ttl = self.client.pttl(key)
            leases[_s(key).rsplit(":", 1)[1]] = {"owner": _s(self.client.get(key) or b""),
                                                 "expires_in_s": ttl / 1000 if ttl > 0 else None}  # fmt: skip
        memory = self.client.info("memory")
        return {
            "time": iso(now),
            "feeds": feeds,
            "engines": leases,
            "exchange": {"state": ex.get("state", "unknown"), "why": ex.get("why", ""),
                         "since": iso(float(ex["since"])) if ex.get("since") else None},
            "orders": {"queued": int(queued), "running": int(started), "failed": int(failed)},
            "redis": {"used_memory_bytes": int(memory.get("used_memory", 0)),
                      "maxmemory_bytes": int(memory.get("maxmemory", 0))},
            "panic": bool(panic),
            "quarantined": {_s(a): int(b) for a, b in quarantined.items()},
        }

    def ready(self) -> tuple[bool, list[str]]:
        """Ready for an orchestrator: Redis answers, an engine holds a shard's lease, the exchange's state is
        known. The reasons when not."""
        try:
            self.client.ping()
        except redis.RedisError as err:
            return False, [f"redis: {type(err).__name__}"]
        why = []
        if not any(True for _ in self.client.scan_iter(match=f"{self.keys.prefix}:lease:*")):
            why.append("no engine holds a shard's lease")
        state = _s(self.client.hget(self.keys.exchange(), "state") or b"unknown")
        if state != "ok":
            why.append(f"exchange state {state}")
        return not why, why

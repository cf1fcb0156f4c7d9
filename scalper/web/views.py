"""What `scalper web` shows, read from Redis: the positions, the day's and the run's totals, the system's
health. Plain data (numbers as numbers, times ISO 8601 UTC), shared by the JSON API and /metrics. Nothing
here writes a position.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import redis

from reports.fmt import iso
from scalper import inspect
from scalper.run_history import contract_values
from scalper.web.closed import ClosedBook
from statemachines.keys import Keys
from statemachines.ledger import utc_day
from statemachines.lifecycle import STATES
from statemachines.redis_text import as_str
from statemachines.store import PositionStore
from workers.lease import held_leases
from workers.relay import QUEUE


def _epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


class Views:
    """Reads for the API, the dashboard's stream and /metrics. Thread-safe: the server calls it from its
    thread pool; the closed trades are kept between calls (scalper/web/closed.py) under a lock."""

    def __init__(self, client: redis.Redis, store: PositionStore, symbols: list[str]) -> None:
        self.client = client
        self.store = store
        self.symbols = symbols
        self.closed = ClosedBook(client, store)
        self._lock = threading.RLock()
        self._board: tuple[float, dict[str, Any]] | None = None  # (monotonic time, the last board)

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

    def board(self, max_age_s: float = 0.0) -> dict[str, Any]:
        """What the dashboard shows: the live positions with their mark, net PnL if closed at the mark
        (before the exit fee) and whether the exchange holds their stop; the latest closed trades; the
        totals; the health strip. `max_age_s`: a board made that recently by another caller (a second
        dashboard, a scrape) is given as it is, so readers share one read a second."""
        with self._lock:
            if self._board is not None and time.monotonic() - self._board[0] < max_age_s:
                return self._board[1]
            board = self._make_board()
            self._board = (time.monotonic(), board)
            return board

    def _make_board(self) -> dict[str, Any]:
        health = self.health()
        live = self.positions()
        marks = {s: f["price"] for s, f in health["feeds"].items() if f.get("price")}
        # The engine's clock: the exchange's, or in a replay the data's, which may run ahead of this host's.
        clocks = {s: _epoch(f["last_tick"]) for s, f in health["feeds"].items() if f.get("last_tick")}
        ct = contract_values()
        placed = self._placed_stops({r["symbol"] for r in live})
        now = time.time()
        for r in live:
            if r["state"] == "unreadable":
                continue
            mark, sign = marks.get(r["symbol"]), 1 if r["side"] == "long" else -1
            value = ct.get(r["symbol"])
            r["mark"] = mark
            r["unrealized_net"] = (round((mark - r["entry"]) * r["size"] * float(value) * sign + r["fees"], 2)
                                   if mark and r["entry"] and value else None)  # fmt: skip
            r["stop_at_exchange"] = f"{r['id']}s1" in placed
            since = r.get("state_since")
            clock = max(now, clocks.get(r["symbol"], 0.0))
            r["in_state_s"] = round(max(0.0, clock - _epoch(since)), 1) if since else None
        summary = self.summary(now)  # reads the closed trades' changes: the latest rows below are as fresh
        return {"positions": live, "closed": self.closed.latest(20), "summary": summary, "health": health}

    def _placed_stops(self, symbols: set[str]) -> set[str]:
        pipe = self.client.pipeline(transaction=False)
        ordered = sorted(symbols)
        for symbol in ordered:
            pipe.hgetall(self.keys.stops(symbol))
        return {as_str(k) for raw in pipe.execute() for k, v in raw.items() if as_str(v) == "placed"}

    # --- totals ---

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Closed trades today (UTC) and over everything Redis holds: count, net, gross, fees, wins; and what
        is live. Closed positions still stored and ledger rows are the same trades: each counted once."""
        now = time.time() if now is None else now
        with self._lock:
            self.closed.refresh()
            everything, todays = self.closed.tallies(utc_day(now))
        states = self.by_state()
        return {"time": iso(now), "today": todays.as_json(), "all": everything.as_json(),
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
            fields = {as_str(a): as_str(b) for a, b in last[0][1].items()} if last else {}
            ts, px = float(fields.get("ts") or 0), float(fields.get("px") or 0)
            lag = round(now - ts, 3) if ts else None
            feeds[symbol] = {"last_tick": iso(ts) if ts else None, "lag_s": lag, "price": px or None}
        exchange, panic, quarantined, queued, started, failed = replies[len(self.symbols):]
        ex = {as_str(a): as_str(b) for a, b in exchange.items()}
        leases = {shard: {"owner": owner, "expires_in_s": ttl / 1000 if ttl > 0 else None}
                  for shard, (owner, ttl) in held_leases(self.client, k).items()}  # fmt: skip
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
            "quarantined": {as_str(a): int(b) for a, b in quarantined.items()},
        }

    def ready(self) -> tuple[bool, list[str]]:
        """Ready for an orchestrator: Redis answers, an engine holds a shard's lease, the exchange's state is
        known. The reasons when not."""
        try:
            self.client.ping()
        except redis.RedisError as err:
            return False, [f"redis: {type(err).__name__}"]
        why = []
        if not held_leases(self.client, self.keys):
            why.append("no engine holds a shard's lease")
        state = as_str(self.client.hget(self.keys.exchange(), "state") or b"unknown")
        if state != "ok":
            why.append(f"exchange state {state}")
        return not why, why

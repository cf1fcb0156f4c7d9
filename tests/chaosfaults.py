"""Faults the chaos harnesses inject besides kills and the venue's own (issue 10): Redis at its memory limit,
a Redis stall longer than the engine's lease, and poison records of every kind an engine reads. Both
harnesses (tests/chaos.py, tests/chaos_okx.py) use them; what only the OKX harness can inject (the
exchange's REST slowed, its clock off from the host's, Redis coming back empty) lives there.

Each fault is drawn from the harness's seeded RNG. What each must not do is checked with the invariants:
no process exits on its own (crashes), and every poison record is counted as quarantined and decides
nothing; a position whose hash is corrupt stays flagged and untouched, with no entry or adoption on its
symbol.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter
from typing import Any

import redis

from statemachines.keys import Keys
from statemachines.position import new_position_id

# A symbol the harness's settings list but nothing trades: the corrupt position lives there, so that the
# traded symbol keeps its entries (a symbol with an unreadable position takes none).
POISON_SYMBOL = "ETH-USDT-SWAP"
# Kinds of poison record, and the quarantine source each is counted under (`{prefix}:quarantined`).
POISON = {"tick_garbage": "ticks", "tick_absurd": "ticks", "tick_future": "ticks", "control": "control",
          "event": "events", "outbox": "outbox", "history": "history"}  # fmt: skip


class RedisFaults:
    """Redis at maxmemory (writes refused with OOM) for a while, and Redis stalled (DEBUG SLEEP) for longer
    than the engine's lease. The harness calls `due()` every step and `end()` before it settles."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._oom_until = 0.0
        self._stalls: list[threading.Thread] = []

    def _client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket_path, socket_timeout=30)

    def oom(self, seconds: float) -> None:
        """Writes are refused from now for `seconds`: maxmemory set to what is used already."""
        client = self._client()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(max(used - 1024 * 1024, 1024 * 1024)))
        self._oom_until = time.monotonic() + seconds

    def stall(self, seconds: float) -> None:
        """The server does nothing for `seconds` (a slow disk, a fork, a long script): DEBUG SLEEP, sent
        from a thread of its own so that the harness goes on."""

        def sleep() -> None:
            with contextlib.suppress(redis.RedisError):
                self._client().execute_command("DEBUG", "SLEEP", f"{seconds:.2f}")

        t = threading.Thread(target=sleep, daemon=True)
        t.start()
        self._stalls.append(t)

    def due(self) -> None:
        if self._oom_until and time.monotonic() >= self._oom_until:
            self._lift()

    def end(self) -> None:
        for t in self._stalls:
            t.join(timeout=30)
        self._lift()

    def _lift(self) -> None:
        for _ in range(50):  # the server may be restarting (OKX harness): the limit goes with it anyway
            try:
                self._client().config_set("maxmemory", "0")
                break
            except redis.RedisError:
                time.sleep(0.1)
        self._oom_until = 0.0


class Poison:
    """Records no reader should take: the harness writes them where the engine reads, and checks at the end
    that each was quarantined, none moved a position, and the corrupt position stayed flagged."""

    def __init__(self, client: redis.Redis, keys: Keys, rng: random.Random, symbol: str) -> None:
        self.client, self.keys, self.rng, self.symbol = client, keys, rng, symbol
        self.injected: Counter[str] = Counter()  # by quarantine source
        self.injected_at: list[tuple[str, float]] = []  # (source, when)
        self.corrupt_id = ""
        self._corrupt_hash: dict[bytes, bytes] = {}

    def inject(self, last_px: float) -> str:
        """One poison record of a kind drawn from the seed; returns the kind."""
        kind = self.rng.choice(sorted(POISON))
        k, s = self.keys, self.symbol
        if kind == "tick_garbage":
            fields: dict[str, str] = self.rng.choice([
                {"px": "nan", "ts": repr(time.time())}, {"px": "abc"}, {"junk": "\x00"},
                {"px": "1e400", "ts": "1"},
            ])  # fmt: skip
            self.client.xadd(k.ticks(s), fields)
        elif kind == "tick_absurd":  # finite and positive, far from the market: one bad print
            factor = self.rng.choice((1e-4, 0.5, 1.8, 40.0))
            self.client.xadd(k.ticks(s), {"px": repr(last_px * factor), "ts": repr(time.time())})
        elif kind == "tick_future":  # an hour ahead of any clock, through any stop
            self.client.xadd(k.ticks(s), {"px": repr(last_px * 0.9), "ts": repr(time.time() + 3600)})
        elif kind == "control":
            self.client.xadd(k.control(), self.rng.choice([
                {"cmd": "open", "cmd_id": new_position_id(), "symbol": s, "side": "sideways"},
                {"cmd": "open"}, {"cmd": "close", "position_id": "../../etc"}, {"cmd": "launch"},
            ]))  # fmt: skip
        elif kind == "event":
            self.client.xadd(k.events(s), {"kind": "order", "inst_id": s, "cl_ord_id": "x", "side": "up",
                                           "state": "weird", "size": "NaN"})  # fmt: skip
        elif kind == "outbox":
            self.client.xadd(k.outbox(s), {"action": "teleport", "symbol": s})
        else:  # a history candle: read when an engine starts (the harness kills engines often)
            self.client.xadd(k.history(s), {"ts": "abc", "o": "1", "h": "1", "l": "1", "c": "1"})
        self.injected[POISON[kind]] += 1
        self.injected_at.append((POISON[kind], time.time()))
        return kind

    def reset(self) -> None:
        """Redis came back empty: what was injected before is gone with what counted it."""
        self.injected.clear()
        self.injected_at.clear()
        self.corrupt_id, self._corrupt_hash = "", {}

    def corrupt_position(self) -> str:
        """A live position on POISON_SYMBOL whose hash cannot be parsed (a hand edit gone wrong)."""
        sym, pid = POISON_SYMBOL, new_position_id()
        k = self.keys
        self.client.sadd(k.symbols(), sym)
        self.client.hset(k.pos_symbol(), pid, sym)
        self.client.hset(k.pos(sym, pid), mapping={"id": pid, "symbol": sym, "side": "long", "state": "open",
                                                   "version": "garbage", "size": "1", "entry_price": "3000"})
        self.client.sadd(k.state(sym, "open"), pid)
        self.client.sadd(k.positions(sym), pid)
        self.corrupt_id = pid
        self._corrupt_hash = self.client.hgetall(k.pos(sym, pid))
        return pid

    def check(self, lost: list[tuple[float, float]] = ()) -> list[str]:  # type: ignore[assignment]
        """`lost`: windows of time whose writes a rewound Redis lost (the poison record, or the count of
        it, may be gone with them): injections inside one are not counted."""
        problems = []
        counted = {_s(a): int(b) for a, b in self.client.hgetall(self.keys.quarantined()).items()}
        kept = Counter(src for src, t in self.injected_at if not any(a <= t <= b for a, b in lost))
        for source, n in sorted(kept.items()):
            if source == "history":
                continue  # read only when an engine starts; none may have started since the last one
            if counted.get(source, 0) < n:
                problems.append(f"{n} poison {source} records injected, {counted.get(source, 0)} quarantined")
        if self.corrupt_id:
            k = self.keys
            if self.client.hgetall(k.pos(POISON_SYMBOL, self.corrupt_id)) != self._corrupt_hash:
                problems.append(f"the corrupt position {self.corrupt_id} was changed")
            if not self.client.sismember(k.bad_positions(POISON_SYMBOL), self.corrupt_id):
                problems.append(f"the corrupt position {self.corrupt_id} is not flagged")
            others = [i for i in self.client.smembers(k.positions(POISON_SYMBOL)) if _s(i) != self.corrupt_id]
            if others:
                problems.append(f"positions on {POISON_SYMBOL}, the symbol of an unreadable one: {others}")
        return problems


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def poison_settings(symbol: str) -> dict[str, str]:
    """The harness's symbols with POISON_SYMBOL beside the traded one (nothing feeds it)."""
    return {"symbols": json.dumps({symbol: {}, POISON_SYMBOL: {}})}

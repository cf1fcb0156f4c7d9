"""A seeded, repeatable chaos harness (issue 5) on top of tests.system.System.

It runs scalper's real processes (account = the paper venue, engine, workers, feed = a fast replay of the
shipped sample) around a real redis-server and, from `random.Random(seed)`, SIGKILLs a random process at
random moments and starts it again, while injecting paper-venue faults through its hook (the
`scalper:paper:faults` list). Then it stops the chaos, lets the system settle and checks the invariants:

- every paper position is known to the bot with the same side and size, and the bot holds nothing the
  venue does not;
- no client order id ever produced a second order (venue fills and served requests);
- no position is left in opening, harvesting or closing;
- every open/trailing position has a live protective stop at the venue, and no live stop of ours belongs
  to a position that is over (it could close the next one);
- the realized PnL and fees of each position in Redis equal the sums over its fills at the venue (a
  protective stop's fill counting for the position it closed: the one whose entry filled last before it);
- `PositionStore.check_consistency` is clean for every position (every logged edge legal).

The same seed gives the same schedule of kills and faults (the processes' own timing is not seeded, so
the market path through the run differs from one run to the next).

    chaos = Chaos(System(socket, workdir, **Chaos.SETTINGS), seed=7)
    report = chaos.run(kills=60, max_seconds=120)
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from scalper import inspect
from statemachines.position import Position
from tests.chaosfaults import POISON_SYMBOL, Poison, RedisFaults
from tests.system import System

SYMBOL = "BTC-USDT-SWAP"
PAPER = "scalper:paper:{main}"
FAULTS_KEY = "scalper:paper:faults"
SERVED = "scalper:paper:served"
RQ_QUEUE = "rq:queue:orders"
TRANSIENT = ("opening", "harvesting", "closing")
KINDS = ("engine", "worker", "account", "feed")

# Settings for a run that trades a lot in little time: fast reconcile, short order timeouts, quick lease
# takeover, and no risk gate that would stop entries for the rest of the run (cooldowns, loss limits).
SETTINGS: dict[str, str] = {
    # The traded symbol, and one nothing trades where a corrupt position hash is planted (chaosfaults.py).
    "symbols": json.dumps({SYMBOL: {}, POISON_SYMBOL: {}}),
    "engine__reconcile_every_s": "1",
    "engine__lease_ttl_s": "1",
    # A request the harness holds lands within 1 s or not at all (REST timeout 5 s): 7 s, not 15, so that
    # the Redis restarts do not keep entries shut for most of a short run.
    "engine__redis_restart_hold_s": "7",
    "exits__entry_timeout_s": "3",
    "exits__close_timeout_s": "3",
    "risk__loss_streak_limit": "1000",
    "risk__daily_loss_limit": "1000000",
    "risk__min_order_interval_s": "0",
    # The venue's protective stop inside the bot's own stop loss: stops do fire (external closes).
    "risk__protective_stop_pct": "0.4",
    "exits__stop_loss_min_pct": "0.8",
    "exits__stop_loss_max_pct": "2",
}


def _kind(name: str) -> str:
    return "worker" if name.startswith("worker") else name


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class ChaosReport:
    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    operator: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)  # exits we did not cause
    crash_lines: list[str] = field(default_factory=list)
    triggers: Counter[str] = field(default_factory=Counter)  # transitions logged, by trigger
    failed_jobs: int = 0  # RQ jobs that used up their retries
    violations: list[str] = field(default_factory=list)
    chaos_s: float = 0.0
    settle_s: float = 0.0
    positions: int = 0
    closed: int = 0
    fills: int = 0

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    def summary(self) -> str:
        kills = " ".join(f"{k}={self.kills[k]}" for k in KINDS)
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (
            f"seed={self.seed} kills={self.total_kills} ({kills}) faults={sum(self.faults.values())} "
            f"({faults}) operator={dict(self.operator)} positions={self.positions} closed={self.closed} "
            f"fills={self.fills} "
            f"crashes={dict(self.crashes)} failed_jobs={self.failed_jobs} "
            f"violations={len(self.violations)} "
            f"chaos={self.chaos_s:.1f}s settle={self.settle_s:.1f}s"
        )


class Chaos:
    """Kills and faults from one seeded RNG; `run` = start, chaos, settle, check."""

    def __init__(self, system: System, seed: int, *, workers: int = 2, speed: int = 3000,
                 gap: tuple[float, float] = (0.5, 1.5), fault_p: float = 0.6,
                 extra_p: float = 0.35) -> None:  # fmt: skip
        self.system = system
        self.rng = random.Random(seed)
        self.extra_p = extra_p  # chance per step of a fault of chaosfaults.py (Redis, poison records)
        self.redis_faults = RedisFaults(system.env["REDIS_URL"].removeprefix("unix://"))
        self.redis_started_at = 0.0  # the OKX harness restarts Redis
        self.poison = Poison(system.client, system.store.keys, self.rng, SYMBOL)
        self._decks: dict[str, list[str]] = {}
        self.report = ChaosReport(seed)
        self.workers = [f"worker{i}" for i in range(1, workers + 1)]
        self.speed = speed
        self.gap = gap
        self.fault_p = fault_p

    # --- processes ---

    def _args(self, name: str) -> tuple[str, ...]:
        if name == "engine":
            return ("engine", "--clock", "data")
        if name == "feed":
            return ("feed", "--replay", "sample", "--speed", str(self.speed))
        if name == "account":
            return ("account",)
        return ("worker",)

    def names(self) -> list[str]:
        return ["account", "engine", *self.workers, "feed"]

    def ensure(self, *, feed: bool = True) -> None:
        """Start every process that is not running. One that exited by itself (not killed by us) is a
        crash, counted with its log's last line; only the feed may end, with 0, when its replay ends."""
        for name in self.names():
            if (feed or name != "feed") and not self.system.alive(name):
                proc = self.system.procs.pop(name, None)
                if proc is not None:
                    rc = proc.wait(timeout=10)
                    if rc != 0 or name != "feed":
                        self.report.crashes[_kind(name)] += 1
                        self.report.crash_lines.append(f"{name} exit {rc}: {self._last_line(name)}")
                self.system.start(name, *self._args(name))

    def _last_line(self, name: str) -> str:
        log = self.system.workdir / f"{name}.{self.system.started[name]}.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        return lines[-1][:200] if lines else ""

    def kill(self, name: str) -> None:
        if self.system.alive(name):
            self.system.kill(name)
            self.report.kills[_kind(name)] += 1

    # --- faults ---

    def fault(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.choice(("delay", "timeout_executed", "timeout_lost", "reject", "read_fail", "partial",
                           "late_stop"))  # fmt: skip
        spec: dict[str, Any]
        if kind == "late_stop":  # the next protective stop lands seconds after its reply was lost
            spec = {"kind": "late", "op": "place_stop", "seconds": round(rng.uniform(0.5, 4.0), 2)}
        elif kind == "delay":
            spec = {"kind": "delay", "op": "place_order", "seconds": round(rng.uniform(0.2, 3.0), 2)}
        elif kind == "timeout_executed":
            spec = {"kind": "timeout", "op": "place_order", "executed": True}
        elif kind == "timeout_lost":
            spec = {"kind": "timeout", "op": "place_order", "executed": False}
        elif kind == "reject":
            spec = {"kind": "reject", "op": "place_order", "code": "50011", "msg": "Too Many Requests"}
        elif kind == "read_fail":
            spec = {"kind": "read_fail", "op": "positions", "count": rng.randint(1, 3)}
        else:
            spec = {"kind": "partial", "op": "place_order", "fraction": 0.5,
                    "rest": rng.choice(("live", "cancel"))}  # fmt: skip
        self.system.client.rpush(FAULTS_KEY, json.dumps(spec))
        self.report.faults[kind] += 1
        return spec

    # --- operator actions: more trading in less time ---

    def operate(self) -> None:
        """A manual entry on a random side, or a manual close of a random live position."""
        sys_ = self.system
        # The same draws whatever is live: which positions are live depends on the processes' timing, and
        # the seed's schedule of kills and faults must not.
        opening, side, pick = self.rng.random() < 0.5, self.rng.choice(("long", "short")), self.rng.random()
        if opening:
            inspect.request_open(sys_.client, sys_.store.keys, SYMBOL, side)
            self.report.operator["open"] += 1
        else:
            live = sorted(p.id for p in sys_.positions() if p.state in ("open", "trailing"))
            if live:
                inspect.request_close(sys_.client, sys_.store, live[int(pick * len(live))], "chaos")
                self.report.operator["close"] += 1

    # --- the run ---

    def run(self, kills: int, max_seconds: float, settle_timeout: float = 60.0,
            kinds: tuple[str, ...] = KINDS) -> ChaosReport:  # fmt: skip
        """Up to `kills` kills within `max_seconds` of chaos, then settle and check."""
        sys_ = self.system
        self.open_market()
        self.ensure()
        sys_.wait("ticks", lambda: sys_.client.xlen(f"scalper:{{{SYMBOL}}}:ticks") > 5, timeout=30)
        self.poison.corrupt_position()
        t0 = time.monotonic()
        while self.report.total_kills < kills and time.monotonic() - t0 < max_seconds:
            time.sleep(self.rng.uniform(*self.gap))
            self.redis_faults.due()
            with contextlib.suppress(redis.RedisError):  # Redis at its memory limit: the harness's writes too
                self.disturb()
                self.operate()
            self.kill_one(kinds)
            # Restart after a short random down time, so a dead process also misses events.
            time.sleep(self.rng.uniform(0.0, 0.3))
            self.ensure()
        self.report.chaos_s = time.monotonic() - t0
        t1 = time.monotonic()
        self.settle(settle_timeout)
        self.report.settle_s = time.monotonic() - t1
        return self.report

    # --- hooks (the OKX variant in tests/chaos_okx.py overrides them) ---

    def open_market(self) -> None:
        """Start whatever moves the market (the paper venue quotes from the feed's replay)."""

    def close_market(self) -> None:
        """Stop the market for settling: no new ticks, so no new entries."""
        if self.system.alive("feed"):
            self.system.kill("feed")
        self.system.procs.pop("feed", None)

    def disturb(self) -> None:
        if self.rng.random() < self.fault_p:
            self.fault()
        if self.rng.random() < self.extra_p:
            self.extra_fault()

    def extra_fault(self) -> None:
        """Redis at its memory limit, Redis stalled past the lease, or a poison record (chaosfaults.py),
        dealt from a shuffled deck so that a short run has each."""
        self.report.faults[self.inject_extra(self.deal("extra", self.EXTRA_FAULTS))] += 1

    def inject_extra(self, kind: str) -> str:
        """Inject one fault of the deck; returns what the report counts it as."""
        if kind == "redis_oom":
            self.redis_faults.oom(round(self.rng.uniform(0.5, 3.0), 2))
        elif kind == "redis_stall":
            lease = float(self.system.env.get("SCALPER_ENGINE__LEASE_TTL_S", "5"))
            self.redis_faults.stall(round(lease + self.rng.uniform(0.2, 1.5), 2))
        else:
            kind = f"poison_{self.poison.inject(self.market_price())}"
        return kind

    def market_price(self) -> float:
        """The newest believable tick's price (the stream also holds the poison the harness wrote)."""
        for _, f in self.system.client.xrevrange(f"scalper:{{{SYMBOL}}}:ticks", count=50):
            with contextlib.suppress(KeyError, ValueError):
                px = float(f[b"px"])
                if 1_000 < px < 1_000_000:
                    return px
        return 46_000.0

    # Of the deck's cards, poison records come three times as often as each Redis fault.
    EXTRA_FAULTS = ("poison", "poison", "poison", "redis_oom", "redis_stall")

    def deal(self, deck: str, cards: tuple[str, ...]) -> str:
        """The next card of a shuffled deck of `cards` (seeded): every card comes once per round."""
        if not self._decks.get(deck):
            self._decks[deck] = list(cards)
            self.rng.shuffle(self._decks[deck])
        return self._decks[deck].pop()

    def kill_one(self, kinds: tuple[str, ...]) -> None:
        kind = self.deal(f"kill:{','.join(kinds)}", kinds)  # every kind of process as often as the others
        self.kill(self.rng.choice(self.workers) if kind == "worker" else kind)

    def quiet(self) -> bool:
        sys_ = self.system
        # The engine running, and in step since it started: a pass applied after its start that left
        # nothing to look for (the long OKX run, seed 103: the settling ended while the engine that was to
        # restore three lost records was stopping, before its first pass was applied).
        # Since Redis's last restart too: a rewound Redis may keep a `settled_at` from before it, while the
        # engine's pass after the restart (its sweep for records the restart lost) has yet to run.
        settled_at = sys_.client.hget(sys_.store.keys.exchange(), "settled_at")
        since = max(sys_.started_at["engine"], self.redis_started_at)
        if not sys_.alive("engine") or settled_at is None or float(settled_at) < since:
            return False
        if any(p.state in TRANSIENT for p in sys_.positions()):
            return False
        if any(sys_.client.xlen(sys_.store.keys.outbox(s)) for s in sys_.store.symbols()):
            return False
        return sys_.client.llen(RQ_QUEUE) == 0 and sys_.client.llen(FAULTS_KEY) == 0

    def settle(self, timeout: float) -> None:
        """Stop the market (no new entries), keep the rest running, wait until quiet and the invariants
        hold (those about sizes are eventually consistent: the reconciler runs every second). The
        violations left at the deadline are the report's."""
        sys_ = self.system
        self.redis_faults.end()
        self.close_market()
        self.ensure(feed=False)
        deadline = time.monotonic() + timeout
        settled = False
        while time.monotonic() < deadline:
            self.ensure(feed=False)
            if self.quiet():
                time.sleep(1.5)  # at least one reconcile pass over the quiet state
                if self.quiet() and not self.eventual():
                    settled = True
                    break
            time.sleep(0.5)
        violations = self.check()
        if not settled:
            stuck = [f"{p.id} {p.state}" for p in sys_.positions() if p.state in TRANSIENT]
            violations.append(f"not settled after {timeout}s: transient {stuck}, "
                              f"rq {sys_.client.llen(RQ_QUEUE)}")  # fmt: skip
        self.report.violations = violations

    # --- invariants ---

    def eventual(self) -> list[str]:
        """The invariants the reconciler restores in time (sizes, states, stops)."""
        positions = self.system.positions()
        return [*check_positions_match(self.system, positions), *check_no_transient(positions),
                *check_protective_stops(self.system, positions),
                *check_no_orphan_stops(self.system, positions)]  # fmt: skip

    def check(self) -> list[str]:
        sys_ = self.system
        positions = sys_.positions()
        fills = sys_.fills()
        self.report.positions = len(positions)
        self.report.closed = sum(p.state == "closed" for p in positions)
        self.report.fills = len(fills)
        self.report.triggers = Counter(e["trigger"] for p in positions for e in sys_.store.log(p.id))
        self.report.failed_jobs = int(sys_.client.zcard("rq:failed:orders"))
        return [
            *check_positions_match(sys_, positions),
            *check_one_order_per_client_id(sys_, fills),
            *check_no_transient(positions),
            *check_protective_stops(sys_, positions),
            *check_no_orphan_stops(sys_, positions),
            *check_pnl(positions, fills),
            *(f"{p.id}: {problem}" for p in positions for problem in sys_.store.check_consistency(p.id)),
            *self.poison.check(),
        ]


def venue_positions(system: System) -> dict[tuple[str, str], Decimal]:
    """(inst_id, side) -> size of the paper venue's open positions."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for member in system.client.smembers(f"{PAPER}:positions"):
        raw = system.client.hgetall(f"{PAPER}:pos:{_s(member)}")
        data = {_s(k): _s(v) for k, v in raw.items()}
        size = Decimal(data.get("size") or "0")
        if size:
            out[(data.get("inst_id", _s(member).split(":")[0]), data.get("side", "?"))] += size
    return dict(out)


def check_positions_match(system: System, positions: list[Position]) -> list[str]:
    return size_mismatches("venue", venue_positions(system), positions)


def size_mismatches(
    venue_name: str, venue: dict[tuple[str, str], Decimal], positions: list[Position]
) -> list[str]:
    """Per (symbol, side): the venue's size against the sum of the bot's live positions' sizes."""
    bot: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for p in positions:
        if p.state != "closed" and p.size:
            bot[(p.symbol, p.side.value)] += p.size
    zero = Decimal(0)
    return [
        f"{venue_name} {key[0]} {key[1]} size {venue.get(key, zero)} but the bot holds {bot.get(key, zero)}"
        for key in sorted(set(bot) | set(venue))
        if venue.get(key, zero) != bot.get(key, zero)
    ]


def check_one_order_per_client_id(system: System, fills: list[dict[str, str]]) -> list[str]:
    """Each client order id maps to one venue order: in the fills, and in the served order requests
    the venue accepted (a resend of a known id must be refused as a duplicate)."""
    orders: dict[str, set[str]] = defaultdict(set)
    for f in fills:
        if f.get("cl_ord_id"):
            orders[f["cl_ord_id"]].add(f.get("ord_id", ""))
    problems = [f"client id {cid} filled as orders {sorted(i)}" for cid, i in orders.items() if len(i) > 1]
    accepted: Counter[str] = Counter()
    for _id, raw in system.client.xrange(SERVED):
        e = {_s(k): _s(v) for k, v in raw.items()}
        if e.get("op") in ("place_order", "close_position") and e.get("ok") == "1":
            accepted[e.get("cid", "")] += 1
    problems += [f"client id {cid} accepted {n} times" for cid, n in accepted.items() if cid and n > 1]
    return problems


def check_no_transient(positions: list[Position]) -> list[str]:
    return [f"{p.id} left in {p.state}" for p in positions if p.state in TRANSIENT]


def check_protective_stops(system: System, positions: list[Position]) -> list[str]:
    problems = []
    for p in positions:
        if p.state in ("open", "trailing"):
            state = system.client.hget(f"{PAPER}:stop:{p.id}s1", "state")
            if state is None or _s(state) != "live":
                problems.append(f"{p.id} {p.state} without a live protective stop ({state!r})")
    return problems


def stop_fill_owner(stop_id: str, side: str, ts_ms: int, entries: dict[tuple[str, str], int]) -> str:
    """The position a protective stop's fill closed: of the positions on the side it closes, the one whose
    entry filled last at or before it (positions on a symbol and side follow one another); the stop's own
    when none is known. `entries`: (position id, side) -> its first entry fill's time."""
    closes = "long" if side == "sell" else "short"
    before = [(t, pid) for (pid, s), t in entries.items() if s == closes and t <= ts_ms]
    return max(before)[1] if before else stop_id[:12]


def is_stop_id(cid: str) -> bool:
    return len(cid) > 12 and cid[12] == "s"


def check_no_orphan_stops(system: System, positions: list[Position]) -> list[str]:
    """Every live stop of ours at the venue protects a position that is not over."""
    over = {p.id for p in positions if p.state == "closed"}
    live = (_s(m) for m in system.client.smembers(f"{PAPER}:stops"))
    return [f"stop {sid} live, its position closed" for sid in sorted(live) if sid[:12] in over]


def check_pnl(positions: list[Position], fills: list[dict[str, str]]) -> list[str]:
    """Per position, Redis's realized PnL and fees against the venue's fills of its client ids (each id
    starts with the position id: entries, harvests, closes and the protective stop's trigger), a stop's
    fill counting for the position it closed (`stop_fill_owner`). Fills without a client id
    (liquidations) are summed apart and must be none."""
    pnl: dict[str, Decimal] = defaultdict(Decimal)
    fee: dict[str, Decimal] = defaultdict(Decimal)
    seen: dict[str, list[str]] = defaultdict(list)
    problems = []
    entries: dict[tuple[str, str], int] = {}
    for f in fills:
        cid = f.get("cl_ord_id", "")
        if len(cid) > 12 and cid[12] == "o":  # an entry
            key = (cid[:12], "long" if f.get("side") == "buy" else "short")
            entries[key] = min(entries.get(key, int(f["ts_ms"])), int(f["ts_ms"]))
    for f in fills:
        cid = f.get("cl_ord_id", "")
        if not cid:
            problems.append(f"fill without client id (liquidation?) {f}")
            continue
        pid = cid[:12]
        if is_stop_id(cid):
            pid = stop_fill_owner(cid, f.get("side", ""), int(f["ts_ms"]), entries)
        seen[pid].append(
            f"{cid} ord {f.get('ord_id')} sz {f.get('sz')} pnl {f.get('pnl')} fee {f.get('fee')}"
        )
        pnl[pid] += Decimal(f.get("pnl") or "0")
        fee[pid] += Decimal(f.get("fee") or "0")
    known = {p.id for p in positions}
    problems += [f"fills of unknown position {pid}" for pid in sorted(set(pnl) - known)]
    for p in positions:
        if p.state == "opening":
            continue
        if p.realized_pnl != pnl[p.id] or p.fees != fee[p.id]:
            problems.append(f"{p.id} {p.state} ({p.exit_reason}): redis pnl {p.realized_pnl} "
                            f"fees {p.fees}, venue pnl {pnl[p.id]} fees {fee[p.id]}; "
                            f"fills: {seen[p.id]}")  # fmt: skip
    return problems

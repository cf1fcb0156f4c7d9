"""The chaos harness against the local fake OKX (issue 5): the same seeded kills as tests/chaos.py, with the
exchange reached the way production reaches OKX (REST orders, private and public WebSockets, signatures
checked), so that the faults are the network's: dropped WebSockets (private and public), order calls
(place-order and close-position) delayed past the client's timeout (executed or not, or executed late),
50011 rate limits and 50001/503 outages on them, failed position reads, and a 64008 "service upgrade"
notice. Optionally Redis itself is SIGKILLed and restarted (append-only, fsync every second), with the lost
window measured.

The exchange's truth lives in the fake (in this process), not in Redis, so the invariants hold it against
Redis even when Redis loses its last writes. The market is the shipped sample's price path, replayed
into the fake, which pushes it to the feed process on its public WebSocket.

    okx = FakeThread(KEY, SECRET, PASSPHRASE)
    chaos = OkxChaos(System(socket, workdir, **okx_settings(okx)), okx, seed=7, redis=local_redis)
    report = chaos.run(kills=60, max_seconds=120)
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from feeds.data import SAMPLE, Bars, load_market_data
from scalper.embedded import LocalRedis
from statemachines.position import Position
from tests.chaos import (
    SETTINGS,
    SYMBOL,
    Chaos,
    check_no_transient,
    is_stop_id,
    size_mismatches,
    stop_fill_owner,
)
from tests.fakeokx.engine import FAlgo, FOrder, FPos, PosKey
from tests.fakeokx.thread import FakeThread
from tests.system import System

KEY, SECRET, PASSPHRASE = "chaosKey3e1f", "chaosSecret6d2a", "chaosPass9b4c"
ORDER, ALGO = "/api/v5/trade/order", "/api/v5/trade/order-algo"
CLOSE = "/api/v5/trade/close-position"  # full closes; entries and partial closes go to ORDER
ORDER_FAULTS = frozenset({"rate_limit", "unavailable", "timeout_executed", "timeout_lost", "executed_late"})
POSITIONS = "/api/v5/account/positions"
REST_TIMEOUT_S = 5.0  # the adapter's default: a "timeout" fault replies after it
TICK = Decimal("0.1")
BEAT = "chaos:beat"  # the harness's own heartbeat key: what Redis kept of it measures the lost window


def sample_bars() -> Bars:
    bars = load_market_data([SAMPLE], default_symbol=SYMBOL)[SYMBOL]
    assert isinstance(bars, Bars)
    return bars


def chaos_okx() -> FakeThread:
    """The fake OKX a chaos pass trades on: this module's credentials, the market as `okx_market` sets it,
    BTC at 46,000. The caller closes it."""
    okx = FakeThread(KEY, SECRET, PASSPHRASE)
    okx_market(okx)
    okx.price("46000")
    return okx


def okx_market(okx: FakeThread, history_bars: int = 60) -> None:
    """The fake as the bot meets OKX: closed positions may be listed with pos "0", snapshots come every
    half second (each delivered 0.1 s after it was taken, so some arrive after fills they predate), and
    the market has an hour of 1-minute history for the feed's REST warm-up (the sample's first bars)."""
    now_min = int(time.time()) // 60 * 60_000
    bars = sample_bars().candles()[:history_bars]
    history = [(now_min - (len(bars) - i) * 60_000, *(Decimal(repr(v)).quantize(TICK) for v in bar[1:]))
               for i, bar in enumerate(bars)]  # fmt: skip

    def setup() -> None:
        okx.fake.engine.flat_records = True
        okx.fake.snapshot_interval, okx.fake.snapshot_lag = 0.5, 0.1
        okx.fake.engine.candles.seed(SYMBOL, history)

    okx.sync(setup)


def okx_settings(okx: FakeThread) -> dict[str, str]:
    port = okx.fake.port
    return {
        **SETTINGS, "exchange__venue": "okx", "exchange__api_key": KEY, "exchange__api_secret": SECRET,
        "exchange__passphrase": PASSPHRASE, "exchange__demo": "true",
        "exchange__rest_url": f"http://127.0.0.1:{port}", "exchange__ws_url": f"ws://127.0.0.1:{port}/ws/v5",
    }  # fmt: skip


class OkxChaos(Chaos):
    def __init__(self, system: System, okx: FakeThread, seed: int, *, redis: LocalRedis | None = None,
                 redis_p: float = 0.0, drop_p: float = 0.5, ticks_per_s: float = 20.0,
                 **kw: Any) -> None:  # fmt: skip
        super().__init__(system, seed, **kw)
        self.okx = okx
        self.redis = redis
        self.redis_p = redis_p if redis is not None else 0.0
        self.drop_p = drop_p
        self.ticks_per_s = ticks_per_s
        self.lost_windows: list[float] = []  # seconds of writes lost per Redis kill
        self.restart_times: list[float] = []
        self.restored = 0  # positions whose record Redis lost, restored from the exchange's orders
        self.emptied = 0  # Redis restarts with nothing at all
        self.rewound: list[tuple[float, float]] = []  # windows of time a rewound Redis may have lost
        self.clock_skew = 0.0
        self._market = threading.Event()
        self._beat_paused = threading.Event()  # while Redis restarts: read what it kept before new beats
        self._beat_ok = 0.0
        self._threads: list[threading.Thread] = []

    # --- processes: the live feed and the OKX account relay, on the fake's endpoints ---

    def _args(self, name: str) -> tuple[str, ...]:
        if name in ("feed", "account", "engine"):
            return (name,)
        return ("worker",)

    # --- the market: the sample's prices into the fake, which pushes them on its public WebSocket ---

    def open_market(self) -> None:
        # OKX's clock off from this host's, by 5-70 s either way (drawn from the seed): every time the fake
        # gives is on it, and the engine must age prices on OKX's time (issue 10, defect 3).
        self.clock_skew = round(self.rng.choice((-1, 1)) * self.rng.uniform(5.0, 70.0), 1)
        self.okx.fake.clock_offset = self.clock_skew
        self._market.set()
        self._threads = [threading.Thread(target=self._drive, daemon=True)]
        if self.redis is not None:
            self._threads.append(threading.Thread(target=self._beat, daemon=True))
        for t in self._threads:
            t.start()

    def close_market(self) -> None:
        self.okx.sync(self.okx.fake.slow, 0.0, 0.0)  # the exchange answers at its pace again
        self._market.clear()
        for t in self._threads:
            t.join(timeout=10)
        super().close_market()

    def _drive(self) -> None:
        prices = [Decimal(repr(px)).quantize(TICK) for _, px, _, _ in sample_bars().ticks()]
        i = 0
        while self._market.is_set():
            self.okx.price(prices[i % len(prices)], SYMBOL)
            i += 1
            time.sleep(1 / self.ticks_per_s)

    def _beat(self) -> None:
        client = self.system.client
        while self._market.is_set():
            if not self._beat_paused.is_set():
                with contextlib.suppress(redis.RedisError):  # Redis is down (or full, or stalled) on purpose
                    now = time.time()
                    client.set(BEAT, repr(now))
                    self._beat_ok = now  # the newest beat Redis took
            time.sleep(0.01)

    # --- faults ---

    def fault(self) -> dict[str, Any]:
        rng, fake = self.rng, self.okx.fake
        kind = rng.choice(("rate_limit", "unavailable", "timeout_executed", "timeout_lost", "executed_late",
                           "read_fail", "stop_timeout"))  # fmt: skip
        spec: dict[str, Any]
        # An order fault waits for the next place-order, or for the next close-position (a full close).
        order = rng.choice((ORDER, CLOSE)) if kind in ORDER_FAULTS else ""
        if kind == "rate_limit":
            spec = {"path": order, "method": "POST", "code": "50011", "count": rng.randint(1, 3)}
        elif kind == "unavailable":
            spec = {"path": order, "method": "POST", "code": "50001", "http_status": 503}
        elif kind == "timeout_executed":
            spec = {"path": order, "method": "POST", "delay": REST_TIMEOUT_S + 0.5, "execute": True}
        elif kind == "timeout_lost":
            spec = {"path": order, "method": "POST", "delay": REST_TIMEOUT_S + 0.5}
        elif kind == "executed_late":  # no reply in time, and the order arrives while we are asking
            spec = {"path": order, "method": "POST", "delay": REST_TIMEOUT_S + 0.5, "late": 1.0}
        elif kind == "read_fail":
            spec = {"path": POSITIONS, "method": "GET", "code": "50001", "http_status": 503,
                    "count": rng.randint(1, 3)}  # fmt: skip
        else:
            spec = {"path": ALGO, "method": "POST", "delay": REST_TIMEOUT_S + 0.5, "execute": True}
        path = spec.pop("path")
        self.okx.sync(fake.fault, path, **spec)
        self.report.faults[f"{kind}_close" if path == CLOSE else kind] += 1
        return spec

    def disturb(self) -> None:
        super().disturb()
        rng = self.rng
        if rng.random() < self.drop_p:
            kind = rng.choice(("private", "private", "public", "notice"))
            if kind == "notice":  # 64008: the server is about to restart; the client reconnects at once
                self.okx.call(self.okx.fake.notice("private"))
                self.report.faults["ws_notice_64008"] += 1
            else:
                self.report.faults[f"ws_drop_{kind}"] += self.okx.sync(self.okx.fake.drop, kind)

    # Beside the harness's own: every REST answer 10 s late for a while (the client gives up after 5 s).
    EXTRA_FAULTS = (*Chaos.EXTRA_FAULTS, "rest_slow")

    def inject_extra(self, kind: str) -> str:
        if kind != "rest_slow":
            return super().inject_extra(kind)
        self.okx.sync(self.okx.fake.slow, 10.0, round(self.rng.uniform(2.0, 8.0), 1))
        return "rest_slow_10s"

    def kill_one(self, kinds: tuple[str, ...]) -> None:
        # A Redis restart in `redis_p` of the steps, dealt from a deck: a short run has its share.
        n = max(1, min(19, round(self.redis_p * 20)))
        if self.redis_p and self.deal("step", ("redis",) * n + ("process",) * (20 - n)) == "redis":
            self.restart_redis()
        else:
            super().kill_one(kinds)

    def restart_redis(self) -> None:
        """SIGKILL redis-server and start it again on its append-only file, rewound by up to a second: a
        SIGKILL alone loses nothing (each write has reached the OS), but a machine that crashes loses
        what `appendfsync everysec` had not yet synced. So the file is copied, the system runs on for
        0.2-1.0 s, and the copy is what the restarted server loads. The heartbeat that survived measures
        the window lost; the exchange (the fake) is ahead of Redis by whatever happened in it."""
        assert self.redis is not None
        # Not in the middle of a stall or at the memory limit: the window the rewind loses is then measured
        # by the heartbeat, which neither lets through.
        self.redis_faults.end()
        if self.deal("redis", ("rewound",) * 4 + ("empty",)) == "empty":
            self.empty_redis()
            return
        aof = self.redis.data_dir / "appendonly.aof"
        copied_at = time.time()
        shutil.copyfile(aof, self.redis.data_dir / "synced.aof")
        time.sleep(self.rng.uniform(0.2, 1.0))
        self._beat_paused.set()
        time.sleep(0.02)  # a beat being written lands before the kill, not after the restart
        # What Redis last took before the kill: not the kill's time, since at its memory limit or stalled it
        # took no beat for a while, and those were never written to lose.
        killed_at = self._beat_ok
        self.redis.kill()
        shutil.copyfile(self.redis.data_dir / "synced.aof", aof)
        time.sleep(self.rng.uniform(0.1, 0.5))
        t0 = time.monotonic()
        self.redis.start()
        self.redis_started_at = time.time()  # the settling waits for an engine settled since then
        self.restart_times.append(time.monotonic() - t0)
        beat = self.system.client.get(BEAT)
        self._beat_paused.clear()
        self.lost_windows.append(killed_at - float(beat) if beat else float("inf"))
        # What the restart may have lost: from before the copy (everysec may postpone writes up to 2 s) to
        # the kill.
        self.rewound.append((copied_at - 3.0, time.time()))
        self.report.kills["redis"] += 1

    def empty_redis(self) -> None:
        """Redis comes back with nothing (a disk lost, a failover to an empty replica) while OKX keeps every
        position and order: the engine must tell it from a new deployment by OKX's orders, hold entries,
        and restore the day's records (issue 10, defect 8)."""
        assert self.redis is not None
        self._beat_paused.set()
        self.redis.kill()
        for name in ("appendonly.aof", "dump.rdb", "synced.aof"):
            with contextlib.suppress(FileNotFoundError):
                (self.redis.data_dir / name).unlink()
        t0 = time.monotonic()
        self.redis.start()
        self.redis_started_at = time.time()  # the settling waits for an engine settled since then
        self.restart_times.append(time.monotonic() - t0)
        self._beat_paused.clear()
        self.emptied += 1
        self.report.kills["redis"] += 1
        self.poison.reset()  # what it counted and the corrupt hash went with the rest
        self.poison.corrupt_position()

    # --- invariants, against the fake's own records ---

    def venue(self) -> Venue:
        """A consistent copy of the fake's account, taken on its own loop."""

        def snap() -> Venue:
            e = self.okx.fake.engine
            return Venue({k: copy.copy(v) for k, v in e.positions.items()},
                         {k: copy.copy(v) for k, v in e.orders.items()},
                         {k: copy.copy(v) for k, v in e.algos.items()})  # fmt: skip

        return self.okx.sync(snap)

    def eventual(self) -> list[str]:
        positions, venue = self.system.positions(), self.venue()
        return [*check_positions_match(venue, positions), *check_no_transient(positions),
                *check_protective_stops(venue, positions)]  # fmt: skip

    def check(self) -> list[str]:
        sys_ = self.system
        positions, venue = sys_.positions(), self.venue()
        self.report.positions = len(positions)
        self.report.closed = sum(p.state == "closed" for p in positions)
        self.report.fills = sum(1 for o in venue.orders.values() if o.acc_fill_sz > 0)
        logs = {p.id: sys_.store.log(p.id) for p in positions}
        self.report.triggers = Counter(e["trigger"] for log in logs.values() for e in log)
        self.restored = sum(bool(log) and log[0]["reason"].startswith("record lost") for log in logs.values())
        self.report.failed_jobs = int(sys_.client.zcard("rq:failed:orders"))
        return [
            *check_positions_match(venue, positions),
            *check_one_order_per_client_id(venue),
            *check_no_transient(positions),
            *check_protective_stops(venue, positions),
            *check_pnl(venue, positions),
            *(f"{p.id}: {problem}" for p in positions for problem in sys_.store.check_consistency(p.id)),
            *self.poison.check(self.rewound),
        ]

    def figures(self) -> dict[str, Any]:
        fake = self.okx.fake
        return {
            "ws_connects": dict(fake.connects),
            "rest_requests": len(fake.requests),
            "redis_restarts": len(self.lost_windows),
            "redis_lost_s_max": round(max(self.lost_windows), 3) if self.lost_windows else None,
            "redis_start_s_max": round(max(self.restart_times), 3) if self.restart_times else None,
            "records_restored": self.restored,
            "redis_emptied": self.emptied,
            "okx_clock_skew_s": self.clock_skew,
        }


@dataclass(frozen=True)
class Venue:
    positions: dict[PosKey, FPos]
    orders: dict[str, FOrder]
    algos: dict[str, FAlgo]


def _side(pos: Decimal) -> str:
    return "long" if pos > 0 else "short"


def check_positions_match(venue: Venue, positions: list[Position]) -> list[str]:
    held = {(k[0], _side(p.pos)): abs(p.pos) for k, p in venue.positions.items() if p.pos}
    return size_mismatches("OKX", held, positions)


def check_one_order_per_client_id(venue: Venue) -> list[str]:
    orders = Counter(o.cl_ord_id for o in venue.orders.values() if o.cl_ord_id)
    algos = Counter(a.algo_cl_ord_id for a in venue.algos.values() if a.algo_cl_ord_id)
    return [f"client id {cid} produced {n} orders" for cid, n in orders.items() if n > 1] + [
        f"stop id {cid} produced {n} stops" for cid, n in algos.items() if n > 1
    ]


def check_protective_stops(venue: Venue, positions: list[Position]) -> list[str]:
    """Each open or trailing position has a live stop at OKX, for what it holds, in the margin mode OKX
    holds it in (a stop in another mode closes nothing)."""
    live = {a.algo_cl_ord_id: a for a in venue.algos.values() if a.state == "live"}
    problems = []
    for p in positions:
        stop = live.get(f"{p.id}s1")
        if p.state not in ("open", "trailing"):
            continue
        if stop is None:
            problems.append(f"{p.id} {p.state} without a live protective stop at OKX")
            continue
        modes = {k[2] for k, x in venue.positions.items() if k[0] == p.symbol and x.pos and
                 _side(x.pos if k[1] != "short" else -x.pos) == p.side.value}  # fmt: skip
        if stop.sz != p.size or stop.td_mode not in modes:
            problems.append(f"{p.id} {p.state} holds {p.size}; its stop is for {stop.sz} in {stop.td_mode} "
                            f"margin (held in {sorted(modes)})")  # fmt: skip
    return problems


def check_pnl(venue: Venue, positions: list[Position]) -> list[str]:
    """Per position, Redis's realized PnL and fees against OKX's fills of its orders: those with its client
    ids, and those a protective stop placed (they carry the stop's algoClOrdId), which count for the
    position they closed (tests/chaos.py `stop_fill_owner`)."""
    pnl: dict[str, Decimal] = defaultdict(Decimal)
    fee: dict[str, Decimal] = defaultdict(Decimal)
    seen: dict[str, list[str]] = defaultdict(list)
    problems = []
    entries: dict[tuple[str, str], int] = {}
    for o in venue.orders.values():
        if o.acc_fill_sz > 0 and len(o.cl_ord_id) > 12 and o.cl_ord_id[12] == "o":
            key = (o.cl_ord_id[:12], "long" if o.side == "buy" else "short")
            entries[key] = min(entries.get(key, o.u_time), o.u_time)
    for o in venue.orders.values():
        if o.acc_fill_sz <= 0:
            continue
        cid = o.cl_ord_id or o.algo_cl_ord_id
        if not cid:
            problems.append(f"fill of an order without a client id {o.ord_id}")
            continue
        pid = stop_fill_owner(cid, o.side, o.u_time, entries) if is_stop_id(cid) else cid[:12]
        pnl[pid] += o.pnl
        fee[pid] += o.fee
        seen[pid].append(f"{cid} sz {o.acc_fill_sz} pnl {o.pnl} fee {o.fee}")
    known = {p.id for p in positions}
    problems += [f"fills of unknown position {pid}: {seen[pid]}" for pid in sorted(set(pnl) - known)]
    for p in positions:
        if p.state != "opening" and (p.realized_pnl != pnl[p.id] or p.fees != fee[p.id]):
            problems.append(f"{p.id} {p.state} ({p.exit_reason}): redis pnl {p.realized_pnl} fees {p.fees}, "
                            f"OKX pnl {pnl[p.id]} fees {fee[p.id]}; fills: {seen[p.id]}")  # fmt: skip
    return problems


def summary(chaos: OkxChaos) -> str:
    return f"{chaos.report.summary()} {json.dumps(chaos.figures())}"

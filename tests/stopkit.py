"""A bot in one test process, driven step by step as its processes would drive it: for the protective-stop
tests, whose faults are orderings of jobs, reconcile passes and entries.

`Bot` holds a real engine (store, machine, reconciler) on a real redis-server, the entries with their risk
gates, and an order worker's context, all on one exchange: the paper venue in-process or the OKX adapter
against the fake OKX. Intents stay in the outbox (no RQ); `jobs()` runs them as an order worker would, and a
job that raises is run again on RQ's own retry schedule (workers/relay.py RETRY) by `retry()`. Time is wall
time, as in the processes: a "late" request really is late.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis

from config.settings import Settings
from exchanges import sync as exchange_loop
from exchanges.base import Exchange, Order, StopOrder
from statemachines.intents import IntentAction, OrderIntent, client_order_id
from statemachines.position import Position, Side
from statemachines.strategy import Strategy
from workers.engine import Engine
from workers.entries import ManualOnly, StrategyEntries
from workers.events import EventBus
from workers.orders import WorkerContext, execute
from workers.reconciler import Reconciler
from workers.relay import RETRY

BTC = "BTC-USDT-SWAP"


def settings(prefix: str = "stops") -> Settings:
    """One symbol; manual entries; no gate that a quick test's history would trip (interval, cooldown)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis={"prefix": prefix},  # type: ignore[arg-type]
        symbols={BTC: {}},  # type: ignore[dict-item]
        engine={"entries": "manual"},  # type: ignore[arg-type]
        risk={"min_order_interval_s": 0},  # type: ignore[arg-type]
    )


@dataclass
class Job:
    intent: OrderIntent
    runs: int = 0
    due: float = 0.0
    results: list[str] = field(default_factory=list)


@dataclass
class Bot:
    client: redis.Redis
    settings: Settings
    exchange: Exchange
    move_market: Callable[[Decimal], None]  # the venue's price (paper: a quote; OKX: the fake's market)
    engine: Engine = field(init=False)
    entries: StrategyEntries = field(init=False)
    ctx: WorkerContext = field(init=False)
    waiting: list[Job] = field(default_factory=list)  # failed jobs, waiting for RQ's retry
    done: list[Job] = field(default_factory=list)
    gave_up: list[Job] = field(default_factory=list)  # retries used up (RQ's failed registry)

    def __post_init__(self) -> None:
        strategy: Strategy = ManualOnly()  # type: ignore[assignment]
        self.entries = entries = StrategyEntries(self.settings, self.client, strategy=strategy)
        self.engine = Engine(self.settings, self.client, symbols=[BTC], entries=entries,
                             reconciler=Reconciler(self.exchange), clock="wall",
                             hand_off_to_rq=False)  # fmt: skip
        self.engine.io.add("account", 5.0, lambda _: entries.read_account(self.exchange), entries.use_account)
        store = self.engine.store
        instruments = {i.inst_id: i for i in self.run(self.exchange.instruments())}
        self.ctx = WorkerContext(self.settings, self.client, store, self.exchange,
                                 EventBus(self.client, store.keys), exchange_loop.loop(),
                                 instruments)  # fmt: skip

    @staticmethod
    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return exchange_loop.run(coro, timeout=30)

    # --- the market ---

    def price(self, px: Decimal | str) -> None:
        """The venue's market moves there, and the engine sees it as a tick."""
        px = Decimal(px)
        self.move_market(px)
        self.engine.on_tick(BTC, time.time(), float(px))

    def tick(self) -> None:
        """The same price again, fresh (the market goes on)."""
        self.price(Decimal(repr(self.engine.snap[BTC].price)))

    # --- the processes' steps ---

    def start(self) -> None:
        """The engine takes the shard: loads, reconciles (the exchange becomes known)."""
        assert self.engine.lease.keep()
        self.engine.start()

    def jobs(self) -> list[str]:
        """Every intent in the outbox, oldest first, run as an order worker runs its job; a job that raises
        waits for RQ's next retry. Returns what each job returned (or raised)."""
        key = self.engine.keys.outbox(BTC)
        out = []
        for entry_id, raw in self.client.xrange(key):
            self.client.xdel(key, entry_id)
            out.append(self._run(Job(OrderIntent.from_fields(raw))))
        return out

    def retry(self) -> list[str]:
        """The failed jobs whose retry is due, run again (RQ's scheduler)."""
        now = time.monotonic()
        due = [j for j in self.waiting if j.due <= now]
        self.waiting = [j for j in self.waiting if j.due > now]
        return [self._run(j) for j in due]

    def _run(self, job: Job) -> str:
        job.runs += 1
        try:
            result = self.run(execute(self.ctx, job.intent))
        except Exception as err:  # what RQ catches: the job is failed, and retried if it has retries left
            result = f"raised {type(err).__name__}: {err}"
            intervals = list(RETRY.intervals)
            if job.runs <= (RETRY.max or 0):
                job.due = time.monotonic() + intervals[min(job.runs - 1, len(intervals) - 1)]
                self.waiting.append(job)
            else:
                self.gave_up.append(job)
        else:
            self.done.append(job)
        job.results.append(result)
        return f"{job.intent.action.value} {job.intent.cl_ord_id}: {result}"

    def turn(self) -> None:
        """One turn of what runs by itself: due retries and new jobs; the engine's poll of the events they
        reported; a reconcile pass when one is due (as the engine: every `reconcile_every_s`, or at once
        when an event says a position is over or changed); then the jobs that decided."""
        engine = self.engine
        self.retry()
        self.jobs()
        engine._poll(save_cursors=False)
        engine.passes.schedule(engine.wall())  # inline exchange I/O: a pass due runs now
        self.jobs()

    def reconcile(self) -> None:
        """A pass now, as the engine runs one: planned against a copy, then applied."""
        self.engine.io.run_now("reconcile")
        self.engine.passes.last = self.engine.wall()

    def enter(self, side: str = "long") -> Position | None:
        """An operator's `scalper open`, through the risk gates; None when a gate refused it."""
        got = self.entries.enter(self.engine, BTC, Side(side), "manual entry (test)", self.engine.now())
        return got if isinstance(got, Position) else None

    def close(self, pos: Position) -> None:
        """An operator's `scalper close`, as the engine applies it: flagged, and stepped at once."""
        self.engine.book[BTC][pos.id].close_request = "manual"
        self.engine.step_symbol(BTC)

    def until(self, what: str, cond: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Turn until `cond` holds (returns its value); fails with what was waited for."""
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s; jobs {self.history()}")
            time.sleep(0.05)
            self.turn()

    # --- what Redis and the exchange say ---

    def load(self, pos: Position) -> Position:
        return self.engine.store.load(pos.id)

    def stop_of(self, pos: Position) -> StopOrder | None:
        """The position's protective stop at the exchange while it is live, else None."""
        sid = client_order_id(pos.id, IntentAction.PROTECT, 1)
        return next((s for s in self.run(self.exchange.stops()) if s.algo_cl_ord_id == sid), None)

    def stop_fill(self, pos: Position) -> Order | None:
        return self.run(self.exchange.stop_fill(BTC, client_order_id(pos.id, IntentAction.PROTECT, 1)))

    def held(self) -> Decimal:
        return sum((p.size for p in self.run(self.exchange.positions()) if p.inst_id == BTC), Decimal(0))

    def history(self) -> list[str]:
        jobs = self.done + self.waiting + self.gave_up
        return [f"{j.intent.action.value} {j.intent.cl_ord_id}: {j.results}" for j in jobs]

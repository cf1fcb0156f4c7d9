"""The OKX chaos harness (tests/chaos_okx.py) with Redis highly available (issue 14): a primary, a replica and
three sentinels (tests/sentinelkit.py), every process connected through a redis+sentinel:// URL, and the
primary SIGKILLed mid-run several times. Each time the sentinels promote the replica, which may lack the
primary's last writes (replication is asynchronous; every other time the replica is made up to a second
behind first, so that it does), and the dead node comes back as the new replica. The
processes follow the new primary; the engine sees a new server (its run_id) and takes it as a Redis
restart: it starts again from what Redis kept, holds entries, and the reconciler restores what was lost
from the exchange (the fake, whose truth lives outside Redis). Process kills, the network's faults and
poison records go on as in the OKX pass; the Redis faults of a single server (its memory limit, a stall)
are left out, as a stall past the sentinels' patience is a failover of its own, with the old primary
alive, which this pass does not claim to cover.

    kit = SentinelSet(tmp); kit.start()
    chaos = FailoverChaos(System("", workdir, url=kit.url(), **okx_settings(okx)), okx, seed, kit=kit)
    report = chaos.run(kills=24, max_seconds=55)
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis

from scalper import inspect
from tests.chaos import SYMBOL, Chaos
from tests.chaos_okx import OkxChaos
from tests.chaosfaults import RedisFaults
from tests.fakeokx.thread import FakeThread
from tests.sentinelkit import SentinelSet
from tests.system import System


class FailoverChaos(OkxChaos):
    def __init__(self, system: System, okx: FakeThread, seed: int, *, kit: SentinelSet,
                 failover_every: int = 8, **kw: Any) -> None:  # fmt: skip
        super().__init__(system, okx, seed, **kw)
        self.kit = kit
        self.failover_every = failover_every  # one step in this many kills the primary
        self.failover_times: list[float] = []  # seconds from a kill to the new primary taking writes
        self.live_at_failover: list[int] = []  # positions not closed when the primary died
        self.lags: list[float] = []  # how far behind the replica was made at each kill, seconds
        self.redis_faults = _PrimaryFaults(kit)  # none is injected; the settling lifts them on the primary

    # Poison records and a slow exchange; no Redis fault of a single server (see the module doc).
    EXTRA_FAULTS = (*Chaos.EXTRA_FAULTS[:3], "rest_slow")

    def kill_one(self, kinds: tuple[str, ...]) -> None:
        # Dealt from a deck: a run of `failover_every` * k steps has exactly k failovers.
        if self.deal("step", ("failover",) + ("process",) * (self.failover_every - 1)) == "failover":
            self.fail_over()
        else:
            Chaos.kill_one(self, kinds)

    def fail_over(self) -> None:
        """SIGKILL the primary; the run goes on while the sentinels promote the replica and the dead node
        comes back (after 0-1 s) as the new replica."""
        sys_ = self.system
        # An entry asked for just before: its order may be on its way, or its record not yet replicated,
        # when the primary dies (the case the engine's hold and the reconciler are for).
        pause = self.rng.uniform(0.0, 0.5)
        with contextlib.suppress(redis.RedisError):
            inspect.request_open(sys_.client, sys_.store.keys, SYMBOL, "long")
            self.report.operator["open_before_failover"] += 1
            time.sleep(pause)
            self.live_at_failover.append(sum(p.state != "closed" for p in sys_.positions()))
        # Every other failover, the replica is behind by up to 0.8 s (kill_primary's lag_s): the new
        # primary lacks the last writes, as after a Redis restart that lost its last second.
        lag = round(self.rng.uniform(0.3, 0.8), 2) if self.deal("lag", ("lag", "none")) == "lag" else 0.0
        killed_at = time.time()
        self.failover_times.append(self.kit.fail_over(down_s=round(self.rng.uniform(0.0, 1.0), 2), lag_s=lag))
        self.lags.append(lag)
        self.redis_started_at = time.time()  # the settling waits for an engine settled since then
        # What the switch may have lost: what the replica had not received when its primary died.
        self.rewound.append((killed_at - 3.0, time.time()))
        self.report.kills["primary"] += 1

    def figures(self) -> dict[str, Any]:
        times = sorted(self.failover_times)
        return {
            **super().figures(),
            "failovers": len(times),
            "failover_s_p50": round(times[len(times) // 2], 2) if times else None,
            "failover_s_max": round(times[-1], 2) if times else None,
            "live_positions_at_failovers": self.live_at_failover,
            "replica_lag_s": self.lags,
        }


class _PrimaryFaults(RedisFaults):
    def __init__(self, kit: SentinelSet) -> None:
        super().__init__("")
        self.kit = kit

    def _client(self) -> redis.Redis:
        return self.kit.primary().client(socket_timeout=30)

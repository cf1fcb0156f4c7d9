"""`scalper worker --trials`: an RQ worker for the optimisation queue, on any machine that reaches the Redis.

A `SimpleWorker` (no fork per job): it keeps each window's market data loaded between trials
(optimize/trial.py). Several per machine use several cores; start one per core.
"""

from __future__ import annotations

import redis
from rq import Queue, SimpleWorker

from optimize.coordinator import QUEUE


def run_trial_worker(client: redis.Redis, *, burst: bool = False) -> int:
    # A short worker TTL: RQ waits for a job TTL - 15 s at a time, and a stopped worker's registration
    # lapses soon after. A job's liveness is its own heartbeat (optimize/trial.py), not this.
    worker = SimpleWorker([Queue(QUEUE, connection=client)], connection=client, worker_ttl=25)
    worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
    return 0

"""RQ's own floor on this machine: enqueue cost and enqueue → job running, with a trivial job and a worker in
another process, against a real redis-server on a unix socket: RQ's SimpleWorker, and our OrderWorker
(workers/rqworker.py: the same bookkeeping in fewer round trips), each in turn.

    python bench/bench_rq.py [--jobs 200] [--worker simple|order|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rq import Queue  # noqa: E402

from scalper.embedded import LocalRedis  # noqa: E402

WORKER = """
import redis, sys
from rq import Queue, SimpleWorker
from workers.rqworker import OrderWorker
c = redis.Redis(unix_socket_path=sys.argv[1])
cls = OrderWorker if sys.argv[2] == "order" else SimpleWorker
cls([Queue('bench', connection=c)], connection=c).work(logging_level='WARNING')
"""


def run(kind: str, n: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp))
        server.start()
        worker = subprocess.Popen([sys.executable, "-c", WORKER, server.socket_path, kind],
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
        try:
            time.sleep(1.5)
            queue = Queue("bench", connection=server.client())
            enqueue, running = [], []
            for _ in range(n):
                t0 = time.time()
                job = queue.enqueue(time.time)
                enqueue.append(time.time() - t0)
                while job.get_status(refresh=True) != "finished":
                    time.sleep(0.0002)
                running.append(job.return_value() - t0)
        finally:
            worker.terminate()
            worker.wait()
            server.close()
    return enqueue, running


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--worker", choices=["simple", "order", "both"], default="both")
    args = ap.parse_args()
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for kind in ("simple", "order") if args.worker == "both" else (args.worker,):
        enqueue, running = run(kind, args.jobs)
        q = statistics.quantiles(running, n=100)
        name = {"simple": "SimpleWorker", "order": "OrderWorker"}[kind]
        print(
            f"RQ over {args.jobs} jobs, {name}: enqueue p50 {statistics.median(enqueue) * 1e3:.2f} ms; "
            f"enqueue -> job running p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms"
        )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""RQ's own floor on this machine: enqueue cost and enqueue → job running, with a trivial job and a
SimpleWorker in another process, against a real redis-server on a unix socket.

    python bench/bench_rq.py [--jobs 200]
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
c = redis.Redis(unix_socket_path=sys.argv[1])
SimpleWorker([Queue('bench', connection=c)], connection=c).work(logging_level='WARNING')
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    n = ap.parse_args().jobs
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp))
        server.start()
        worker = subprocess.Popen([sys.executable, "-c", WORKER, server.socket_path],
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
    q = statistics.quantiles(running, n=100)
    print(
        f"RQ over {n} jobs: enqueue p50 {statistics.median(enqueue) * 1e3:.2f} ms; enqueue -> job running "
        f"p50 {q[49] * 1e3:.2f} ms, p99 {q[98] * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()

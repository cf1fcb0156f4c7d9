"""What one pass of `scalper run`'s position watch costs, with many closed positions in Redis: wall time and
Redis commands per pass (the server's own count, INFO total_commands_processed).

    python bench/bench_watch.py [--closed 20000] [--live 3] [--passes 20] [--before REV]

A real redis-server (the embedded one) holds `--closed` positions that went through their whole lifecycle
and `--live` that are still moving, all written by the store's own scripts. The watch is built (its
summary of earlier runs: timed apart, it runs once per start), then polled `--passes` times with nothing
changing: the steady state of a long run. `--before REV` measures the watch of git revision REV instead
(the `_Watch` class that lived in scalper/supervisor.py), loaded from `git show`, for the before/after
figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.settings import RedisSettings, Settings  # noqa: E402
from scalper.embedded import LocalRedis  # noqa: E402
from scalper.watch import Watch  # noqa: E402
from statemachines.store import PositionStore  # noqa: E402
from tests.runkit import stored_position  # noqa: E402

SYMBOLS = ("BTC-USDT-SWAP", "ETH-USDT-SWAP")


def legacy_watch(rev: str, url: str) -> Any:
    """The watch of revision `rev`, built as that revision's supervisor built it."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:scalper/supervisor.py"], check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("legacy_supervisor", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    exec(compile(source, f"{rev}:scalper/supervisor.py", "exec"), module.__dict__)
    settings = Settings(_env_file=None, redis=RedisSettings(url=url))  # type: ignore[call-arg, arg-type]
    return module._Watch(url, settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--closed", type=int, default=20_000)
    ap.add_argument("--live", type=int, default=3)
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--before", metavar="REV", help="measure the watch of this git revision")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        server = LocalRedis(Path(tmp), appendfsync="no")
        server.start()
        try:
            client = server.client()
            store = PositionStore(client)
            t0 = time.perf_counter()
            for i in range(args.closed):
                stored_position(store, SYMBOLS[0])
                if (i + 1) % 5000 == 0:
                    print(f"  {i + 1} closed positions stored", file=sys.stderr)
            for i in range(args.live):
                stored_position(store, SYMBOLS[i % 2], steps=i % 3)
            print(f"stored in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

            url = f"unix://{server.socket_path}"
            t_build = time.perf_counter()
            if args.before:
                watch = legacy_watch(args.before, url)
            else:
                watch = Watch(redis.Redis.from_url(url, decode_responses=True), "scalper", every_s=0,
                              say=lambda _line: None)  # fmt: skip
            built_ms = (time.perf_counter() - t_build) * 1000
            times, commands = [], []
            for _ in range(args.passes):
                if args.before:
                    watch._next = 0.0  # its own once-a-second pacing
                before = client.info("stats")["total_commands_processed"]
                t = time.perf_counter()
                watch.poll()
                times.append(time.perf_counter() - t)
                commands.append(client.info("stats")["total_commands_processed"] - before - 1)
        finally:
            server.close()

    which = f"before ({args.before})" if args.before else "after"
    median_ms, max_ms = statistics.median(times) * 1000, max(times) * 1000
    print(f"| {which} | {args.closed:,} | {args.live} | {median_ms:.2f} ms | {max_ms:.2f} ms "
          f"| {statistics.median(commands):.0f} | {built_ms:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()

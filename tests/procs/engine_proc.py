"""An engine process for tests/test_lease.py: takes the shard lease and loops `run_once` until killed.

    python tests/procs/engine_proc.py SOCKET PREFIX TTL_S

Once it holds the lease it RPUSHes its lease token to `{PREFIX}:test:engine-proc` (so the test knows whom
it is killing), then keeps stepping. It gives up by itself after MAX_LIFE_S, so a test that dies without
killing it cannot leave it running forever.
"""

from __future__ import annotations

import sys
import time

import redis

from config.settings import Settings
from workers.engine import Engine

SYMBOL = "BTC-USDT-SWAP"
MAX_LIFE_S = 60.0


def main(socket_path: str, prefix: str, ttl_s: str) -> None:
    client = redis.Redis(unix_socket_path=socket_path)
    settings = Settings(_env_file=None, redis={"prefix": prefix}, symbols={SYMBOL: {}})  # type: ignore[call-arg, arg-type]
    engine = Engine(settings, client, symbols=[SYMBOL], lease_ttl_s=float(ttl_s))
    announced = False
    deadline = time.monotonic() + MAX_LIFE_S
    while time.monotonic() < deadline:
        engine.run_once(block_ms=20)
        if engine.lease.held and not announced:
            client.rpush(f"{prefix}:test:engine-proc", engine.lease.token)
            announced = True
    engine.stop()


if __name__ == "__main__":
    main(*sys.argv[1:4])

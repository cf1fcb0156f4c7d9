"""The Redis of a run, for the commands that only read it (`positions`, `show`, `report`): REDIS_URL, or the
embedded server of a running `scalper run`. With neither, and a data directory that holds a stopped run's
append-only file, the embedded server is started on it for as long as the command reads (holding the
directory's lock, as `scalper run` does, so no run starts meanwhile), and stopped again. Nothing trades
meanwhile: no engine, feed or worker is started, and the next run finds the data as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from config.settings import Settings


class RunDataError(RuntimeError):
    """No run's data can be read; the message is the one line the operator sees."""


@contextmanager
def run_redis(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the run's Redis; for a stopped embedded run, of a server started for the reading."""
    from scalper.connect import redis_client
    from scalper.datalock import DataDirBusy, lock_data_dir
    from scalper.embedded import EmbeddedRedisError, embedded_url, start_embedded

    data_dir = Path(settings.redis.data_dir)
    if settings.redis.url is not None or embedded_url(data_dir) is not None:
        yield redis_client(settings)
        return
    if not any((data_dir / name).exists() for name in ("appendonly.aof", "appendonlydir")):
        raise RunDataError(
            f"no REDIS_URL is set and {data_dir}/ holds no run's data: run `scalper run` first, "
            "or set REDIS_URL"
        )
    try:
        lock = lock_data_dir(data_dir)
    except DataDirBusy as err:
        raise RunDataError(str(err)) from None
    try:
        try:
            server, _ = start_embedded(data_dir)
        except EmbeddedRedisError as err:
            raise RunDataError(str(err)) from None
        try:
            yield server.client()
        finally:
            server.stop()
    finally:
        lock.release()

"""Processes ride out a Redis outage: they start their work again from scratch instead of exiting. (The
real thing, Redis SIGKILLed under the running processes, is in tests/test_chaos_redis.py.)"""

from __future__ import annotations

import threading

import pytest
import redis

from scalper.connect import NoRedis
from scalper.processes import ride_out_redis


def _flaky(errors: list[Exception]) -> tuple[list[int], object]:
    calls: list[int] = []

    def run() -> int:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return 7

    return calls, run


def test_a_dropped_redis_runs_the_work_again_from_scratch() -> None:
    calls, run = _flaky([redis.ConnectionError("closed"), NoRedis("cannot connect"), redis.TimeoutError("t")])
    assert ride_out_redis("t", run, threading.Event(), cap_s=0.01) == 7  # type: ignore[arg-type]
    assert len(calls) == 4


def test_no_redis_at_the_very_first_start_is_an_error_not_a_wait() -> None:
    calls, run = _flaky([NoRedis("Redis at REDIS_URL=...: cannot connect")])
    with pytest.raises(NoRedis, match="REDIS_URL"):
        ride_out_redis("t", run, threading.Event())  # type: ignore[arg-type]
    assert len(calls) == 1


def test_a_stop_during_the_outage_ends_the_process_quietly() -> None:
    stop = threading.Event()
    stop.set()
    calls, run = _flaky([redis.ConnectionError("closed")])
    assert ride_out_redis("t", run, stop) == 0  # type: ignore[arg-type]
    assert len(calls) == 1


def test_other_errors_are_not_swallowed() -> None:
    _calls, run = _flaky([ValueError("a bug")])
    with pytest.raises(ValueError):
        ride_out_redis("t", run, threading.Event())  # type: ignore[arg-type]

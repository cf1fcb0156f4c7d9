"""How `scalper run` restarts its children: a child that keeps failing at its start stops the run with its
last error line; one that had been running fine is started again. The supervisor runs in this process,
against the suite's Redis, with children that are small Python programs."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import RedisSettings, Settings
from scalper import supervisor
from scalper.supervisor import Child
from tests.conftest import RealRedis

BTC = "BTC-USDT-SWAP"


def settings_on(real_redis: RealRedis, tmp_path: Path) -> Settings:
    redis_ = RedisSettings(url=SecretStr(f"unix://{real_redis.socket_path}"), data_dir=tmp_path / "data")
    return Settings(_env_file=None, symbols={BTC: {}}, redis=redis_)  # type: ignore[call-arg, arg-type]


def children(monkeypatch: pytest.MonkeyPatch, *programs: tuple[str, str]) -> None:
    plan = [Child(name, [sys.executable, "-c", code]) for name, code in programs]
    monkeypatch.setattr(supervisor, "plan", lambda *_a, **_k: plan)


def test_a_child_that_keeps_failing_at_its_start_stops_the_run_with_its_last_error_line(
    real_redis: RealRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    children(monkeypatch,
             ("feed", "import sys; print('feed: starting', file=sys.stderr); "
                      "sys.exit('RecordingError: /data/x.csv:7: close is not a number')"),
             ("engine", "import time; time.sleep(60)"))  # fmt: skip
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    t0 = time.monotonic()
    code = supervisor.run(settings_on(real_redis, tmp_path), replay=None, speed=1.0, duration=30)
    elapsed = time.monotonic() - t0

    err = capsys.readouterr().err
    assert code == 1
    assert elapsed < 15  # five quick failures and their back-off, not the whole duration
    last = err.strip().splitlines()[-1]
    assert last.startswith("scalper: feed exited 5 times in a row") and "(exit code 1)" in last
    assert last.endswith("Its last error: RecordingError: /data/x.csv:7: close is not a number")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # handed back


def test_a_child_that_ran_fine_for_a_while_is_restarted_every_time_it_dies(
    real_redis: RealRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    children(monkeypatch, ("engine", "import time; time.sleep(0.4); raise SystemExit(3)"))
    quick = supervisor.RestartPolicy(healthy_after_s=0.3, give_up_after=2, backoff_s=(0.1,))
    settings = settings_on(real_redis, tmp_path)
    code = supervisor.run(settings, replay=None, speed=1.0, duration=3, policy=quick)

    out = capsys.readouterr().out
    assert code == 0  # stopped by the duration, never given up
    restarts = [ln for ln in out.splitlines() if ln.startswith("scalper: engine exited with exit code 3")]
    assert len(restarts) >= 3, out
    assert restarts[-1].endswith(f"restarting in 0.1s ({len(restarts)})")


def test_the_same_child_failing_quickly_is_given_up_on_after_the_policy_s_count(
    real_redis: RealRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    children(monkeypatch, ("worker1", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
    quick = supervisor.RestartPolicy(healthy_after_s=5, give_up_after=2, backoff_s=(0.1,))
    settings = settings_on(real_redis, tmp_path)
    code = supervisor.run(settings, replay=None, speed=1.0, duration=20, policy=quick)

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count("scalper: worker1 exited with signal SIGSEGV") == 1
    assert "worker1 exited 2 times in a row within 5s of its start (signal SIGSEGV)" in captured.err
    assert captured.err.strip().endswith("Its last error: (nothing on stderr)")

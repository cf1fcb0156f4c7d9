"""The Procfile runs under honcho exactly as the README says: from the project directory, with REDIS_URL set
and the virtualenv's bin first on PATH. Every process comes up against that Redis (the engine takes its
shard's lease, the order worker registers with RQ, the paper account writes its account), and SIGTERM stops
them all. The feed has no network here: it keeps retrying, which is what it should do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RealRedis

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv's bin: scalper and honcho are there

pytestmark = pytest.mark.redis


def test_honcho_start_runs_the_procfile_as_the_readme_says(real_redis: RealRedis, tmp_path: Path) -> None:
    assert "PATH=$PWD/.venv/bin:$PATH honcho start" in (ROOT / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")}
    env |= {"REDIS_URL": f"unix://{real_redis.socket_path}", "PATH": f"{BIN}:{env.get('PATH', '')}",
            "SCALPER_ENGINE__ENTRIES": "manual", "SCALPER_WEB__PORT": "0",  # any free port
            "PYTHONUNBUFFERED": "1"}  # fmt: skip
    log = (tmp_path / "honcho.log").open("w+")
    proc = subprocess.Popen(["honcho", "start"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    client = real_redis.client
    try:
        deadline = time.monotonic() + 40
        up: dict[str, bool] = {}
        while time.monotonic() < deadline:
            up = {
                "engine": client.exists("scalper:lease:all") == 1,
                "worker": client.scard("rq:workers") >= 1,
                "account": any(True for _ in client.scan_iter(match="scalper:paper:*", count=1000)),
                "web": client.exists("scalper:web:url") == 1,
            }
            if all(up.values()):
                break
            assert proc.poll() is None, _tail(log)
            time.sleep(0.2)
        assert all(up.values()), (up, _tail(log))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    out = _tail(log)
    for name in ("feed", "account", "engine", "worker", "web", "notify"):
        assert f"{name}.1" in out, out  # honcho started each process of the Procfile
    assert "command not found" not in out and "No such file" not in out, out


def _tail(log: object) -> str:
    log.flush()  # type: ignore[attr-defined]
    log.seek(0)  # type: ignore[attr-defined]
    return log.read()[-4000:]  # type: ignore[attr-defined]

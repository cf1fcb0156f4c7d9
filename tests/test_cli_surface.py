"""The command line as a new user meets it: `--version`, help on every option, and logs as JSON lines when
asked (SCALPER_LOG__FORMAT=json) in the processes `scalper run` starts as in the one you type."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from scalper.cli import build_parser
from scalper.embedded import embedded_url
from tests.conftest import RealRedis

ROOT = Path(__file__).resolve().parents[1]


def _scalper(*args: str, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "scalper", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          cwd=cwd)  # fmt: skip


def test_version_prints_the_installed_version() -> None:
    out = _scalper("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"scalper {version('scalper')}"


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out += _parsers(sub)
    return out


def test_every_option_and_argument_of_every_command_has_help() -> None:
    missing = [
        f"{prog}: {'/'.join(a.option_strings) or a.dest}"
        for prog, parser in _parsers(build_parser())
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not a.help
    ]
    assert missing == []


def test_a_bad_setting_is_one_line_in_either_log_format(tmp_path: Path) -> None:
    out = _scalper("positions", env={"SCALPER_LOG__FORMAT": "xml"}, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "log.format" in out.stderr and "SCALPER_LOG__FORMAT" in out.stderr


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A demo run of 15 s with JSON logs and `-v`, over: its directory and what it printed."""
    where = tmp_path_factory.mktemp("run")
    out = _scalper("-v", "run", "--replay", "sample", "--duration", "15", env={"SCALPER_LOG__FORMAT": "json"},
                   cwd=where)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return where, out


@pytest.mark.redis
def test_logs_are_json_lines_when_asked(stopped_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Every line on stderr is a JSON object with the documented fields, the children's lines (engine,
    feed, worker, account) too."""
    _, out = stopped_run
    records = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert len(records) > 10
    for rec in records:
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
        assert rec["time"].endswith("+00:00") and rec["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
    loggers = {r["logger"] for r in records}
    assert any(name.startswith("scalper.engine") for name in loggers), loggers


@pytest.mark.redis
def test_a_stopped_run_is_inspected_without_trading(
    stopped_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`positions` and `show` on a stopped run's directory read its data (the embedded Redis started for the
    reading, then stopped) and start nothing that trades: the positions are the same before and after, and
    the run's lines name the same positions."""
    where, run = stopped_run
    listed = _scalper("positions", "--all", "--json", cwd=where)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows and all(r["id"] in run.stdout for r in rows)
    closed = [r for r in rows if r["state"] == "closed"]
    assert closed, rows
    for r in closed:  # numbers as numbers, times ISO 8601, net = gross + fees, an exit price
        assert all(isinstance(r[k], float) for k in ("size", "entry", "exit", "net", "gross", "fees"))
        assert r["net"] == pytest.approx(r["gross"] + r["fees"]) and r["fees"] < 0
        assert r["opened"].endswith("Z") and r["closed"] >= r["opened"]
    shown = _scalper("show", closed[0]["id"], cwd=where)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert " UTC" in text and f"net {closed[0]['net']:+,.2f}" in text and "exit price" in text
    floats = [line.split()[1] for line in text.splitlines()
              if line.split()[:1] in (["stop_price"], ["liq_price"], ["margin_ratio"])]  # fmt: skip
    assert len(floats) == 3 and all(len(x.replace(".", "").replace("-", "")) <= 12 for x in floats), floats
    again = _scalper("positions", "--all", "--json", cwd=where)
    assert json.loads(again.stdout) == rows
    assert embedded_url(where / "data") is None  # the server started for the reading is gone


@pytest.mark.redis
def test_reconcile_changes_nothing_while_an_engine_runs(real_redis: RealRedis, tmp_path: Path) -> None:
    """Found by an outside read: `scalper reconcile` ran its own pass beside the running engine, and could
    adopt, under a second id, a position that engine had just opened. It refuses while an engine holds a
    lease (the engines reconcile on their own); `--dry-run` still reports. With no engine running it runs,
    under the lease an engine starting meanwhile waits for, and gives the lease back."""
    env = {"REDIS_URL": f"unix://{real_redis.socket_path}", "SCALPER_REDIS__STARTUP_WAIT_S": "1"}
    # An engine owns a shard (not `all`, whose lease the pass would wait for anyway), and its lease is not
    # in the listing `scalper web` reads (an engine of an older version, or a listing a failover lost).
    real_redis.client.set("scalper:lease:btc", "engine-btc", ex=30)
    refused = _scalper("reconcile", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "an engine is running (scalper:lease:btc)" in refused.stderr
    dry = _scalper("reconcile", "--dry-run", "--json", env=env, cwd=tmp_path)
    assert dry.returncode in (0, 3) and "exchange_known" in json.loads(dry.stdout)
    real_redis.client.delete("scalper:lease:btc")
    ran = _scalper("reconcile", env=env, cwd=tmp_path)
    assert ran.returncode in (0, 3) and "exchange readable" in ran.stdout, ran.stderr
    assert not real_redis.client.exists("scalper:lease:all")

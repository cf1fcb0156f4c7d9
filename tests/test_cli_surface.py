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


@pytest.mark.redis
def test_logs_are_json_lines_when_asked(tmp_path: Path) -> None:
    """A replay run with `-v`: every line on stderr is a JSON object with the documented fields, and the
    children's lines (engine, feed, worker, account) are too."""
    env = {"SCALPER_LOG__FORMAT": "json", "SCALPER_REDIS__DATA_DIR": str(tmp_path / "data")}
    out = _scalper("-v", "run", "--replay", "sample", "--duration", "8", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    assert len(records) > 10
    for rec in records:
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
        assert rec["time"].endswith("+00:00") and rec["level"] in ("DEBUG", "INFO", "WARNING", "ERROR")
    loggers = {r["logger"] for r in records}
    assert any(name.startswith("scalper.engine") for name in loggers), loggers

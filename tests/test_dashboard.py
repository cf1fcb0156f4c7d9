"""The dashboard in a real headless Chromium (Debian's `chromium`, which `.ci/run` installs), against
`scalper run --replay sample`: a position appears, moves through its states and closes; its page shows its
whole transition log; the close button, with the operator token and a confirmation, closes another position.
The screenshots are kept in `test-artifacts/dashboard/` for a person to look at."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.cdp import Browser
from tests.runkit import ScalperRun, kill_leftovers

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
BTC = "BTC-USDT-SWAP"
TOKEN = "dashboard-test-token-1"

# Manual entries only, and exits wide enough that nothing closes a position but the operator.
QUIET_EXITS = {
    "SCALPER_WEB__PORT": "0", "SCALPER_WEB__TOKEN": TOKEN, "SCALPER_ENGINE__ENTRIES": "manual",
    "SCALPER_RISK__ONE_POSITION_PER_SYMBOL": "false", "SCALPER_EXITS__MAX_HOLD_S": "0",
    "SCALPER_SMART_EXIT__ENABLED": "false", "SCALPER_EXITS__TAKE_PROFIT_PCT": "0",
    "SCALPER_EXITS__TRAILING_ACTIVATION_PCT": "0", "SCALPER_EXITS__DRAWDOWN_ACTIVATION_PCT": "0",
    "SCALPER_EXITS__HARVEST_PCT": "0", "SCALPER_EXITS__STOP_LOSS_MIN_PCT": "8",
    "SCALPER_EXITS__STOP_LOSS_MAX_PCT": "8", "SCALPER_RISK__PROTECTIVE_STOP_PCT": "15",
}  # fmt: skip


def _row(browser: Browser, table: str, pid: str) -> list[str] | None:
    return browser.js(f"(() => {{ const r = document.querySelector('#{table} tbody tr[data-id=\"{pid}\"]');"
                      " return r ? [...r.cells].map(c => c.textContent) : null; })()")  # fmt: skip


def _open(run: ScalperRun) -> str:
    done = run.cli("open", BTC, "long", "--wait", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"position ([0-9a-z]{12})", done.stdout).group(1)  # type: ignore[union-attr]


def test_the_dashboard_shows_a_position_s_life_and_its_close_button_closes_one(tmp_path: Path) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    run = ScalperRun(tmp_path, "--replay", "sample", "--speed", "60", env=QUIET_EXITS)
    browser = None
    try:
        run.wait_for("scalper: web API at ", timeout=40)
        base = re.search(r"web API at (\S+)", run.stdout()).group(1)  # type: ignore[union-attr]
        run.wait_engine_started()
        browser = Browser(tmp_path / "chromium")
        browser.goto(f"{base}/")
        browser.wait("the health strip", lambda: browser.js("document.getElementById('health').textContent"))

        first = _open(run)  # a position appears, open
        cells = browser.wait("the new position", lambda: _row(browser, "open", first))
        assert cells[1:3] == [BTC, "long"]
        browser.wait("it open", lambda: (_row(browser, "open", first) or ["", "", "", "", ""])[4] == "open")
        browser.screenshot(ARTIFACTS / "1-open.png")
        assert run.cli("close", first, "--wait", "30").returncode == 0  # it closes
        closed = browser.wait("it closed", lambda: _row(browser, "closed", first))
        assert closed[4] == "manual" and _row(browser, "open", first) is None
        counts = browser.js("Object.fromEntries([...document.querySelectorAll('#lifecycle .state')]"
                            ".map(d => [d.dataset.state, +d.querySelector('.count').textContent]))")
        assert counts["closed"] >= 1
        browser.screenshot(ARTIFACTS / "2-closed.png")

        browser.goto(f"{base}/positions/{first}")  # its own page: the whole log
        log = browser.wait("its log", lambda: browser.js(
            "[...document.querySelectorAll('#log tbody tr')].map(r => r.dataset.to)") or None)
        assert log == ["opening", "open", "closing", "closed"]
        browser.screenshot(ARTIFACTS / "3-position.png")

        browser.goto(f"{base}/")
        browser.wait("the board", lambda: browser.js("document.querySelector('#lifecycle .state') !== null"))
        browser.js(f"(() => {{ const t = document.getElementById('token'); t.value = '{TOKEN}';"
                   " t.dispatchEvent(new Event('change')); })()")  # fmt: skip
        second = _open(run)
        browser.wait("the second position, open",
                     lambda: (_row(browser, "open", second) or ["", "", "", "", ""])[4] == "open")
        browser.js(f"document.querySelector('#open tbody tr[data-id=\"{second}\"] button.close').click()")
        browser.wait("the close asked", lambda: "asked" in browser.js(
            "document.getElementById('action').textContent"), timeout=15)
        shut = browser.wait("the second position closed", lambda: _row(browser, "closed", second))
        assert shut[4] == "manual"
        browser.screenshot(ARTIFACTS / "4-closed-by-the-button.png")
    finally:
        if browser is not None:
            browser.close()
        code = run.stop()
        kill_leftovers(run.seen)
    assert code == 0, run.stderr()[-2000:]
    assert all((ARTIFACTS / name).stat().st_size > 10_000 for name in
               ("1-open.png", "2-closed.png", "3-position.png", "4-closed-by-the-button.png"))  # fmt: skip

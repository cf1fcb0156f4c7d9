"""From a primary's death to orders flowing again (issue 14): scalper's real processes (account, engine, a
worker, the live feed) on the local fake OKX, Redis a primary, a replica and three sentinels
(tests/sentinelkit.py), every process connected through redis+sentinel://. One round: an open position;
the primary is SIGKILLed and, at once, the position's close is asked for (through the sentinels, as the
CLI would: it lands on the new primary); the close order reaching OKX is orders flowing again. Then an entry
is asked for: it waits out the engine's hold after a new primary (engine.redis_restart_hold_s) and goes.
The test (tests/test_failover_orders.py) checks what happens; bench/failover.py measures how long it takes.

    rig = FailoverRig(tmp_path, kit, okx); rig.start()
    timing = rig.round()      # Round(new_primary_s=..., close_s=..., entry_s=...)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from scalper import inspect
from statemachines.position import Position
from tests.fakeokx.thread import FakeThread
from tests.okxkit import okx_system_settings
from tests.sentinelkit import SentinelSet
from tests.system import System
from workers import commands
from workers.redis_trouble import Outage

BTC = "BTC-USDT-SWAP"
ORDER, CLOSE = "/api/v5/trade/order", "/api/v5/trade/close-position"
HOLD_S = 5.0  # engine.redis_restart_hold_s here: REST calls time out after 5 s, so every one has landed


@dataclass(frozen=True)
class Round:
    new_primary_s: float  # kill -> the sentinels' new primary takes writes
    close_s: float  # kill -> the close order (asked for at the kill) reaches OKX
    entry_s: float  # kill -> an entry (asked for again and again from the close) reaches OKX: the hold


def okx_rig_settings(okx: FakeThread) -> dict[str, str]:
    """The processes on the fake OKX, with the engine's lease and hold short and no risk gate in the way of
    an entry asked for again and again."""
    return okx_system_settings(okx, engine__lease_ttl_s="1", engine__redis_restart_hold_s=str(HOLD_S),
                               risk__min_order_interval_s="0", risk__loss_streak_limit="1000",
                               risk__daily_loss_limit="1000000")  # fmt: skip


class FailoverRig:
    def __init__(self, workdir: Path, kit: SentinelSet, okx: FakeThread) -> None:
        self.kit, self.okx = kit, okx
        self.system = System("", workdir, url=kit.url(), **okx_rig_settings(okx))
        self.outage = Outage("rig", logging.getLogger(__name__), max_wait_s=0.2, first_wait_s=0.02)
        self._market = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sys_ = self.system
        self._market.set()
        self._thread = threading.Thread(target=self._drive, daemon=True)
        self._thread.start()
        for name in ("account", "engine", "worker", "feed"):
            sys_.start(name, name)
        sys_.wait("ticks", lambda: sys_.client.xlen(f"scalper:{{{BTC}}}:ticks") > 3, timeout=60)

    def stop(self) -> None:
        self._market.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.system.stop_all()

    def _drive(self) -> None:  # a market that moves a little, as a live one does
        i = 0
        while self._market.is_set():
            self.okx.price(Decimal("50000") + Decimal(i % 7), BTC)
            i += 1
            time.sleep(0.05)

    def ask_entry(self, timeout: float = 60) -> str:
        """Ask for a long entry until the engine takes one (it refuses while it holds entries); its id."""
        sys_, deadline = self.system, time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.outage.ride(lambda: inspect.request_open(sys_.client, sys_.store.keys, BTC, "long"))
            got = self.outage.ride(lambda p=pid: commands.wait_outcome(sys_.client, sys_.store.keys, p, 5.0))
            if got is not None and got.status == "opening":
                return pid
            time.sleep(0.1)
        raise AssertionError(f"no entry taken within {timeout}s\n{sys_.logs()}")

    def open_position(self, timeout: float = 60) -> Position:
        pid = self.ask_entry(timeout)
        return self.system.wait("an open position", lambda: self._state(pid, ("open", "trailing")), timeout)

    def _state(self, pid: str, states: tuple[str, ...]) -> Position | None:
        try:
            pos = self.outage.ride(lambda: self.system.position(pid))
        except KeyError:
            return None
        return pos if pos.state in states else None

    def _sent(self, path: str, cid_prefix: str, after: float) -> float | None:
        """time.monotonic() of the first order request at OKX for `cid_prefix` after `after`."""
        for r in list(self.okx.fake.requests):
            body = r.body if isinstance(r.body, dict) else {}
            if r.path == path and r.t >= after and str(body.get("clOrdId", "")).startswith(cid_prefix):
                return float(r.t)
        return None

    def round(self) -> Round:
        """One failover with a position open; the timings. The old primary is back as a replica after."""
        sys_, kit = self.system, self.kit
        pos = self.open_position()
        old, killed_at = kit.kill_primary()
        self.outage.ride(lambda: inspect.request_close(sys_.client, sys_.store, pos.id, "failover test"))
        new_primary_s = kit.wait_new_primary(old, killed_at)
        closed = sys_.wait("the close order at OKX", lambda: self._sent(CLOSE, pos.id, killed_at) or
                           self._sent(ORDER, pos.id, killed_at), timeout=60)  # fmt: skip
        sys_.wait("the position closed", lambda: self._state(pos.id, ("closed",)), timeout=60)
        pid = self.ask_entry()
        entered = sys_.wait("the entry at OKX", lambda: self._sent(ORDER, pid, killed_at), timeout=60)
        sys_.wait("the entry open", lambda: self._state(pid, ("open", "trailing")), timeout=60)
        self.outage.ride(lambda: inspect.request_close(sys_.client, sys_.store, pid, "failover test"))
        sys_.wait("that one closed", lambda: self._state(pid, ("closed",)), timeout=60)
        kit.recover(old)
        return Round(new_primary_s, closed - killed_at, entered - killed_at)

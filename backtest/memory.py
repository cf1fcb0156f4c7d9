"""The backtest's store and risk memory: what Redis holds live, kept in memory, with the same rules.

`MemoryStore` is a `TransitionStore` (statemachines/machine.py): it checks each transition's state and
version as the Lua script does, keeps every position and its log, and hands each order intent to the
simulated venue, as the live store hands it to RQ in the same script. `MemoryRisk` is the risk memory the
entry gates read (workers/entries.py `RiskMemory`): the day's PnL, loss streaks with their cooldown
(statemachines/risk.py `streak_after_close`, the live rule) and the last order's time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from config.settings import RiskSettings, Settings
from statemachines.ledger import utc_day
from statemachines.lifecycle import AWAITING_ORDER, State
from statemachines.machine import StaleTransition
from statemachines.position import Position
from statemachines.risk import streak_after_close
from workers.riskstate import RiskSnapshot

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def sequential_ids() -> Callable[[float], str]:
    """Position ids for a backtest: 8 characters of the market time (as live ids have) and a 4-character
    counter in place of the random part, so the same run gives the same ids."""
    count = 0

    def new_id(now: float) -> str:
        nonlocal count
        count += 1
        n, stamp = int(now * 1000), ""
        for _ in range(8):
            n, r = divmod(n, 36)
            stamp = _ALPHABET[r] + stamp
        c, tail = count, ""
        for _ in range(4):
            c, r = divmod(c, 36)
            tail = _ALPHABET[r] + tail
        return stamp + tail

    return new_id


@dataclass(frozen=True, slots=True)
class LogEntry:
    position_id: str
    trigger: str
    source: str
    dest: str
    ts: float
    price: float
    reason: str


class MemoryStore:
    """Positions and their logs in memory; every intent goes to `hand_off(intent_fields, ts)`."""

    def __init__(self, hand_off: Callable[[Mapping[str, str], float], None]) -> None:
        self.hand_off = hand_off
        self.positions: dict[str, Position] = {}
        self.log: list[LogEntry] = []
        self.intents_written = 0
        self.awaiting = 0  # positions in a state that waits on an order (lifecycle.AWAITING_ORDER)

    def create(self, pos: Position, *, reason: str = "", price: float = 0.0, ts: float | None = None,
               intent: Mapping[str, str] | None = None) -> None:  # fmt: skip
        if pos.state != State.OPENING:
            raise ValueError(f"a new position starts in {State.OPENING.value!r}, not {pos.state!r}")
        if pos.id in self.positions:
            raise ValueError(f"position {pos.id} already exists")
        now = ts or 0.0
        pos.created_at = pos.created_at or now
        pos.state_since = pos.state_since or pos.created_at
        pos.version = 1
        self.positions[pos.id] = pos
        self.awaiting += 1  # opening
        self.log.append(LogEntry(pos.id, "create", "", State.OPENING.value, now, price, reason))
        if intent:
            self.intents_written += 1
            self.hand_off(intent, now)

    def apply_transition(self, pos: Position, *, source: str, dest: str, trigger: str, reason: str,
                         price: float, ts: float, fields: dict[str, str],
                         intent: Mapping[str, str] | None = None) -> int:  # fmt: skip
        """The live script's compare-and-set: the position must be in `source` at its version."""
        stored = self.positions.get(pos.id)
        if stored is not pos or pos.state != source:
            raise StaleTransition(f"{pos.id}: not {source} at version {pos.version}")
        self.awaiting += (dest in AWAITING_ORDER) - (source in AWAITING_ORDER)
        self.log.append(LogEntry(pos.id, trigger, source, dest, ts, price, reason))
        if intent:
            self.intents_written += 1
            self.hand_off(intent, ts)
        return pos.version + 1


class MemoryRisk:
    """The risk memory of workers/riskstate.py, in memory: each close counted once, by position id."""

    def __init__(self, settings: Settings, stops: Callable[[str], frozenset[str]] | None = None) -> None:
        self._risk: Callable[[str], RiskSettings] = lambda symbol: settings.for_symbol(symbol).risk
        self._stops = stops or (lambda _symbol: frozenset())
        self.daily: dict[str, Decimal] = {}
        self.streak: dict[str, tuple[int, float]] = {}  # symbol -> (loss streak, cooldown until)
        self.counted: set[str] = set()
        self.last_order_ts = 0.0
        self._today = (0.0, 0.0, "")  # the UTC day last asked for: its start, end and utc_day

    def record_close(self, symbol: str, realized_pnl: Decimal, ts: float, *, position_id: str) -> bool:
        if position_id in self.counted:
            return False
        self.counted.add(position_id)
        day = self._day(ts)
        self.daily[day] = self.daily.get(day, Decimal(0)) + realized_pnl
        streak, until = self.streak.get(symbol, (0, 0.0))
        self.streak[symbol] = streak_after_close(streak, until, realized_pnl, ts, self._risk(symbol))
        return True

    def record_order(self, ts: float) -> None:
        self.last_order_ts = max(self.last_order_ts, ts)

    def _day(self, ts: float) -> str:
        """utc_day(ts), remembered for the day it falls in (the gates ask on every entry)."""
        start, end, day = self._today
        if not start <= ts < end:
            day = utc_day(ts)
            start = ts - ts % 86400.0
            self._today = (start, start + 86400.0, day)
        return day

    def snapshot(self, symbol: str, now: float) -> RiskSnapshot:
        streak, until = self.streak.get(symbol, (0, 0.0))
        return RiskSnapshot(daily_pnl=self.daily.get(self._day(now), Decimal(0)), loss_streak=streak,
                            cooldown_until=until, last_order_ts=self.last_order_ts,
                            stops=self._stops(symbol))  # fmt: skip

"""The account's risk memory in Redis: daily realized PnL, loss streaks, cooldowns, the last order's time.

The bot this replaces kept these in memory, so a restart forgot the day's losses and every cooldown (and
its daily-loss stop and loss-streak breaker never ran at all). Here every value lives in Redis as a plain
string, survives a restart of the bot, and feeds the entry gates (statemachines/risk.py) through
`snapshot()`.

    {prefix}:risk:daily:{YYYYMMDD}        HASH    pnl closes wins losses: the UTC day's realized PnL
    {prefix}:risk:daily:{YYYYMMDD}:ids    SET     position ids counted in that day's hash
    {prefix}:{SYMBOL}:risk                HASH    loss_streak cooldown_until last_close_ts last_close_pnl
                                                  last_position
    {prefix}:{SYMBOL}:risk:ids:YYYYMMDD   SET     position ids counted in the symbol's streak that day
    {prefix}:risk:last_order              STRING  time (epoch seconds) of the last order sent, any symbol

The snapshot also reads the symbol's protective stops not yet confirmed gone ({prefix}:{SYMBOL}:stops,
written by workers/protection.py), for the `earlier_stop_live` gate.

The braces are Redis Cluster hash tags, as in statemachines/keys.py: a day's hash and its id set share a
slot, and so do a symbol's keys. Day keys and id sets expire `DAY_TTL_S` after their last write.

    redis-cli HGETALL 'scalper:risk:daily:{20220115}'
    redis-cli HGETALL 'scalper:{BTC-USDT-SWAP}:risk'
    redis-cli GET scalper:risk:last_order

Updates are optimistic transactions (WATCH/MULTI, retried on conflict) rather than Lua, for two reasons:
the PnL sum stays exact Decimal arithmetic done in Python (Lua numbers are doubles), and each transaction
touches one slot only. A close is recorded by two of them, the day's and the symbol's, each idempotent by
its own id set, so recording a position's close again (a retry, a replayed event, a restart in between)
never counts it twice and completes whatever half was missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from config.settings import RiskSettings, Settings
from statemachines.keys import DEFAULT_PREFIX, Keys
from statemachines.ledger import utc_day  # the daily loss limit resets at 00:00 UTC, as the ledger's day
from statemachines.redis_text import as_str
from statemachines.risk import streak_after_close
from workers.protection import StopRecord

DAY_TTL_S = 3 * 86_400  # today, yesterday and one more for a person looking back


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """The values statemachines.risk.EntryContext needs from the risk memory."""

    daily_pnl: Decimal  # today's (UTC, by `now`) realized PnL, net of fees; negative = loss
    loss_streak: int
    cooldown_until: float  # 0 = never set
    last_order_ts: float  # 0 = never
    stops: frozenset[str] = frozenset()  # the symbol's protective stops not yet confirmed gone


@dataclass(frozen=True, slots=True)
class DayStats:
    day: str
    pnl: Decimal
    closes: int
    wins: int
    losses: int


class RiskState:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        risk: RiskSettings | Callable[[str], RiskSettings] | None = None,
    ) -> None:
        """`risk`: the settings (loss_streak_limit, loss_streak_cooldown_s), or a function giving a
        symbol's (e.g. `lambda s: settings.for_symbol(s).risk`); defaults to RiskSettings()."""
        self.client = client
        self.keys = Keys(prefix)  # validates the prefix
        self.prefix = prefix
        if risk is None:
            risk = RiskSettings()
        if isinstance(risk, RiskSettings):
            fixed = risk
            self._risk_for: Callable[[str], RiskSettings] = lambda _symbol: fixed
        else:
            self._risk_for = risk

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> RiskState:
        return cls(client, settings.redis.prefix, lambda symbol: settings.for_symbol(symbol).risk)

    # --- key names ---

    def day_key(self, day: str) -> str:
        return f"{self.prefix}:risk:daily:{{{day}}}"

    def day_ids_key(self, day: str) -> str:
        return f"{self.day_key(day)}:ids"

    def symbol_key(self, symbol: str) -> str:
        return f"{self.keys.slot(symbol)}:risk"

    def symbol_ids_key(self, symbol: str, day: str) -> str:
        return f"{self.symbol_key(symbol)}:ids:{day}"

    def last_order_key(self) -> str:
        return f"{self.prefix}:risk:last_order"

    # --- writes ---

    def record_close(self, symbol: str, realized_pnl: Decimal, ts: float, *, position_id: str) -> bool:
        """Count a closed position's realized PnL (net of fees) in its UTC day and its symbol's streak.

        A loss (< 0) extends the symbol's loss streak; reaching `loss_streak_limit` sets the cooldown to
        `ts + loss_streak_cooldown_s`, and every further loss before a win sets it again from its own
        time. A win (> 0) resets the streak (a running cooldown still runs out); exactly 0 changes
        neither. `ts` must be the close's own time (not "now"), so that recording it again lands in the
        same day. Returns True for the recording that counted the close in the day's PnL, False for a
        repeat (of many concurrent duplicates exactly one gets True); a repeat still completes the
        symbol's half if the first recording was interrupted between the two transactions.
        """
        if not position_id:
            raise ValueError("position_id is required: it makes recording a close idempotent")
        if not isinstance(realized_pnl, Decimal) or not realized_pnl.is_finite():
            raise ValueError(f"realized_pnl must be a finite Decimal, not {realized_pnl!r}")
        day = utc_day(ts)
        counted = self._record_day(day, position_id, realized_pnl)
        self._record_symbol(symbol, day, position_id, realized_pnl, ts)
        return counted

    def _record_day(self, day: str, position_id: str, pnl: Decimal) -> bool:
        key, ids = self.day_key(day), self.day_ids_key(day)

        def apply(pipe: Any) -> bool:
            if pipe.sismember(ids, position_id):
                return False
            total = Decimal(as_str(pipe.hget(key, "pnl") or b"0")) + pnl
            pipe.multi()
            pipe.hset(key, "pnl", format(total, "f"))
            pipe.hincrby(key, "closes", 1)
            if pnl:
                pipe.hincrby(key, "wins" if pnl > 0 else "losses", 1)
            pipe.sadd(ids, position_id)
            pipe.expire(key, DAY_TTL_S)
            pipe.expire(ids, DAY_TTL_S)
            return True

        # WATCH both keys; a concurrent close makes EXEC fail and redis-py runs `apply` again.
        return bool(self.client.transaction(apply, key, ids, value_from_callable=True))

    def _record_symbol(self, symbol: str, day: str, position_id: str, pnl: Decimal, ts: float) -> bool:
        risk = self._risk_for(symbol)
        key, ids = self.symbol_key(symbol), self.symbol_ids_key(symbol, day)

        def apply(pipe: Any) -> bool:
            if pipe.sismember(ids, position_id):
                return False
            streak_raw, until_raw = pipe.hmget(key, "loss_streak", "cooldown_until")
            streak = int(as_str(streak_raw)) if streak_raw is not None else 0
            until = float(as_str(until_raw)) if until_raw is not None else 0.0
            streak, until = streak_after_close(streak, until, pnl, ts, risk)
            pipe.multi()
            pipe.hset(
                key,
                mapping={
                    "loss_streak": str(streak),
                    "cooldown_until": repr(until),
                    "last_close_ts": repr(float(ts)),
                    "last_close_pnl": format(pnl, "f"),
                    "last_position": position_id,
                },
            )
            pipe.sadd(ids, position_id)
            pipe.expire(ids, DAY_TTL_S)
            return True

        return bool(self.client.transaction(apply, key, ids, value_from_callable=True))

    def record_order(self, ts: float) -> None:
        """Note that an order was sent at `ts`; the value only moves forward (processes may race)."""
        key = self.last_order_key()

        def apply(pipe: Any) -> None:
            cur = pipe.get(key)
            if cur is not None and float(as_str(cur)) >= ts:
                return
            pipe.multi()
            pipe.set(key, repr(float(ts)))

        self.client.transaction(apply, key)

    # --- reads ---

    def snapshot(self, symbol: str, now: float) -> RiskSnapshot:
        """What the entry gates need, in one round trip (not atomic across keys: none is needed, each
        value is read whole and the gates only compare with limits)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.day_key(utc_day(now)), "pnl")
        pipe.hmget(self.symbol_key(symbol), "loss_streak", "cooldown_until")
        pipe.get(self.last_order_key())
        StopRecord(self.client, self.keys).queue_ids(pipe, symbol)
        pnl_raw, (streak_raw, until_raw), last_raw, stops_raw = pipe.execute()
        return RiskSnapshot(
            daily_pnl=Decimal(as_str(pnl_raw)) if pnl_raw is not None else Decimal(0),
            loss_streak=int(as_str(streak_raw)) if streak_raw is not None else 0,
            cooldown_until=float(as_str(until_raw)) if until_raw is not None else 0.0,
            last_order_ts=float(as_str(last_raw)) if last_raw is not None else 0.0,
            stops=StopRecord.decode_ids(stops_raw),
        )

    def day(self, ts: float) -> DayStats:
        """The UTC day's totals (for the dashboard and `scalper` commands)."""
        day = utc_day(ts)
        raw = {as_str(k): as_str(v) for k, v in self.client.hgetall(self.day_key(day)).items()}
        return DayStats(
            day=day,
            pnl=Decimal(raw.get("pnl", "0")),
            closes=int(raw.get("closes", "0")),
            wins=int(raw.get("wins", "0")),
            losses=int(raw.get("losses", "0")),
        )

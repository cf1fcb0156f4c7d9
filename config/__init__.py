"""Configuration: pydantic-settings models loaded from the environment and `.env`."""

from config.settings import (
    ConfigError,
    ExitSettings,
    IndicatorSettings,
    RiskSettings,
    Settings,
    SmartExitSettings,
    SymbolConfig,
    load_settings,
)

__all__ = [
    "ConfigError",
    "ExitSettings",
    "IndicatorSettings",
    "RiskSettings",
    "Settings",
    "SmartExitSettings",
    "SymbolConfig",
    "load_settings",
]

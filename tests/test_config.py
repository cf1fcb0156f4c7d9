"""Settings: env and .env loading, per-symbol overrides, errors naming the setting, masked secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings

SECRET = "s3cr3t-VALUE-xyz"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run each test in an empty directory with no SCALPER_/REDIS_URL variables, so nothing leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith("SCALPER_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_valid() -> None:
    s = load_settings()
    assert s.exchange.venue == "paper"
    assert s.indicators.rsi_period == 14 and s.indicators.macd_slow == 26
    assert "BTC-USDT-SWAP" in s.symbols


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_EXITS__TAKE_PROFIT_PCT", "0.9")
    monkeypatch.setenv("SCALPER_SMART_EXIT__ENABLED", "false")
    s = load_settings()
    assert s.exits.take_profit_pct == 0.9
    assert s.smart_exit.enabled is False


def test_dotenv_file(clean_env: Path) -> None:
    (clean_env / ".env").write_text("SCALPER_RISK__LEVERAGE=7\nSCALPER_REDIS__PREFIX=bot1\n")
    s = load_settings()
    assert (s.risk.leverage, s.redis.prefix) == (7, "bot1")


def test_per_symbol_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SCALPER_SYMBOLS",
        json.dumps(
            {
                "BTC-USDT-SWAP": {"exits": {"take_profit_pct": 1.5}, "smart_exit": {"enabled": False}},
                "ETH-USDT-SWAP": {},
            }
        ),
    )
    s = load_settings()
    btc, eth = s.for_symbol("BTC-USDT-SWAP"), s.for_symbol("ETH-USDT-SWAP")
    assert (btc.exits.take_profit_pct, btc.smart_exit.enabled) == (1.5, False)
    assert (eth.exits.take_profit_pct, eth.smart_exit.enabled) == (s.exits.take_profit_pct, True)
    assert btc.exits.stop_loss_max_pct == s.exits.stop_loss_max_pct  # the rest inherited


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        (
            "SCALPER_EXITS__TAKE_PROFIT_PCT",
            "-1",
            "exits.take_profit_pct (env SCALPER_EXITS__TAKE_PROFIT_PCT)",
        ),
        ("SCALPER_RISK__LEVERAGE", "lots", "risk.leverage (env SCALPER_RISK__LEVERAGE)"),
        ("SCALPER_EXCHANGE__VENUE", "binance", "exchange.venue"),
        ("SCALPER_INDICATORS__MACD_FAST", "30", "macd_fast must be below macd_slow"),
        ("SCALPER_EXITS__TAKE_PROFT_PCT", "1", "exits.take_proft_pct"),  # a typo is not silently ignored
        (
            "SCALPER_SYMBOLS",
            '{"BTC-USDT-SWAP": {"exits": {"take_profit_pct": -2}}}',
            "symbols.BTC-USDT-SWAP.exits.take_profit_pct",
        ),
        ("SCALPER_SYMBOLS", '{"BTC-USDT-SWAP": {"exits": {"tp": 2}}}', "unknown setting(s) tp"),
        ("SCALPER_SYMBOLS", '{"btc usdt": {}}', "not an instrument id"),
        # An outside read: at leverage 20 the default 5 % exchange-side stop lay beyond the liquidation
        # (about 4.6 % away) and would never have fired.
        ("SCALPER_RISK__LEVERAGE", "20", "protective_stop_pct 5 lies beyond the liquidation at leverage 20"),
        (
            "SCALPER_SYMBOLS",
            '{"BTC-USDT-SWAP": {"risk": {"leverage": 50, "protective_stop_pct": 2}}}',
            "symbols.BTC-USDT-SWAP.risk",
        ),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert named in str(err.value)


def test_okx_venue_requires_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_EXCHANGE__VENUE", "okx")
    with pytest.raises(ConfigError, match="api_key, api_secret, passphrase"):
        load_settings()


def _with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_EXCHANGE__VENUE", "okx")
    monkeypatch.setenv("SCALPER_EXCHANGE__API_KEY", SECRET + "k")
    monkeypatch.setenv("SCALPER_EXCHANGE__API_SECRET", SECRET + "s")
    monkeypatch.setenv("SCALPER_EXCHANGE__PASSPHRASE", SECRET + "p")
    monkeypatch.setenv("REDIS_URL", f"redis://:{SECRET}@localhost:6379/0")


def test_secrets_are_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_secrets(monkeypatch)
    s = load_settings()
    assert s.exchange.api_secret is not None and s.exchange.api_secret.get_secret_value() == SECRET + "s"
    assert s.redis.url is not None and SECRET in s.redis.url.get_secret_value()  # REDIS_URL is read
    for text in (repr(s), str(s), json.dumps(s.masked())):
        assert SECRET not in text


def test_config_show_prints_effective_config_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_secrets(monkeypatch)
    monkeypatch.setenv("SCALPER_SYMBOLS", '{"BTC-USDT-SWAP": {"exits": {"take_profit_pct": 1.5}}}')
    done = subprocess.run([sys.executable, "-m", "scalper", "config", "show"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["exchange"]["api_key"] == "**********"
    assert shown["effective_symbols"]["BTC-USDT-SWAP"]["exits"]["take_profit_pct"] == 1.5


def test_invalid_config_stops_the_cli_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_RISK__LEVERAGE", "500")
    done = subprocess.run([sys.executable, "-m", "scalper", "config", "show"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "risk.leverage (env SCALPER_RISK__LEVERAGE)" in done.stderr
    assert "Traceback" not in done.stderr


def test_readme_documents_every_setting() -> None:
    from config.settings import Settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for section, info in Settings.model_fields.items():
        assert f"`{section}`" in readme, section
        model = info.annotation
        for name in getattr(model, "model_fields", {}):
            assert f"`{name}`" in readme, f"{section}.{name}"

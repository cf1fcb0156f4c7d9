"""Where settings come from and how a bad one stops start-up (issue 10, defect 11): `REDIS_URL` read from
`.env` as well as the environment; a `SCALPER_` variable that names no section refused like an unknown
field; malformed JSON and a non-ASCII OKX credential refused with one line naming the setting, never the
value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import ConfigError, load_settings
from exchanges.okx.auth import Credentials
from tests.conftest import RealRedis

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-VALUE-xyz"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty directory and no SCALPER_/REDIS_URL variables: only what a test sets is there."""
    for name in list(os.environ):
        if name.upper().startswith("SCALPER_") or name.upper() == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "scalper", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- REDIS_URL in .env ---


def test_redis_url_is_read_from_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("REDIS_URL=redis://:pw@redis.example:6390/2\nOTHER_TOOL=1\n")
    url = load_settings().redis.url
    assert url is not None and url.get_secret_value() == "redis://:pw@redis.example:6390/2"


def test_the_environment_wins_over_dotenv_and_the_scalper_name_over_redis_url(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\n")
    monkeypatch.setenv("REDIS_URL", "redis://from-environment:6379/0")
    assert load_settings().redis.url == SecretStr("redis://from-environment:6379/0")
    (clean_env / ".env").write_text("SCALPER_REDIS__URL=redis://scalper-name:6379/0\n")
    assert load_settings().redis.url == SecretStr("redis://scalper-name:6379/0")


def test_no_env_file_means_no_redis_url_from_it(clean_env: Path) -> None:
    (clean_env / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\n")
    assert load_settings(_env_file=None).redis.url is None


def test_an_operator_command_reaches_the_redis_named_in_dotenv(
    real_redis: RealRedis, clean_env: Path
) -> None:
    """Regression: with REDIS_URL only in .env, commands looked for the embedded Redis (and `scalper run`
    started an empty one) instead of the user's server."""
    real_redis.client.sadd("scalper:symbols", "BTC-USDT-SWAP")
    (clean_env / ".env").write_text(f"REDIS_URL=unix://{real_redis.socket_path}\n")
    done = _cli("positions", "--json", cwd=clean_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- unknown SCALPER_ sections ---


def test_a_misspelt_section_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_RISKK__LEVERAGE", "3")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "SCALPER_RISKK__LEVERAGE (in the environment)" in str(err.value)
    assert "did you mean SCALPER_RISK?" in str(err.value)


def test_a_misspelt_section_in_dotenv_is_refused_by_name_never_by_value(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"OTHER_TOOL=1\nSCALPER_EXCHANGEE__API_SECRET={SECRET}\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "SCALPER_EXCHANGEE__API_SECRET (in .env)" in str(err.value)
    assert SECRET not in str(err.value)


def test_every_known_section_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_RISK", '{"leverage": 4}')  # a whole section as JSON
    monkeypatch.setenv("SCALPER_EXITS__TAKE_PROFIT_PCT", "0.9")
    monkeypatch.setenv("scalper_smart_exit__enabled", "false")  # names are case-insensitive
    s = load_settings()
    assert (s.risk.leverage, s.exits.take_profit_pct, s.smart_exit.enabled) == (4, 0.9, False)


def test_the_cli_names_the_misspelt_variable_in_one_line(clean_env: Path) -> None:
    (clean_env / ".env").write_text("SCALPER_RISKK__LEVERAGE=3\n")
    done = _cli("config", "show", cwd=clean_env)
    assert done.returncode == 2
    assert "SCALPER_RISKK__LEVERAGE" in _one_line(done.stderr)


# --- malformed JSON ---


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_malformed_json_is_one_line_naming_the_setting(
    where: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: pydantic-settings' SettingsError escaped load_settings as a traceback."""
    value = '{"BTC-USDT-SWAP": {"exits": {"take_profit_pct": 0.8}'  # a brace short
    if where == ".env":
        (clean_env / ".env").write_text(f"SCALPER_SYMBOLS='{value}'\n")
    else:
        monkeypatch.setenv("SCALPER_SYMBOLS", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "symbols" in str(err.value) and "SCALPER_SYMBOLS" in str(err.value)
    assert "not valid JSON" in str(err.value) and "\n" not in str(err.value)
    done = _cli("config", "show", cwd=clean_env)
    assert done.returncode == 2
    assert "SCALPER_SYMBOLS): not valid JSON" in _one_line(done.stderr)


def test_malformed_json_holding_a_secret_does_not_show_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPER_EXCHANGE", f'{{"api_secret": "{SECRET}", ')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "exchange (env SCALPER_EXCHANGE): not valid JSON" in str(err.value)
    assert SECRET not in str(err.value) and err.value.__context__ is None


# --- non-ASCII OKX credentials ---


@pytest.mark.parametrize("name", ["api_key", "api_secret", "passphrase"])
def test_a_non_ascii_credential_is_refused_at_load_time(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a passphrase with a non-ASCII letter loaded fine and escaped the signer as a raw
    UnicodeEncodeError (quoting the character) on the first REST call."""
    creds = {"api_key": "key-" + SECRET, "api_secret": "sec-" + SECRET, "passphrase": "pass-" + SECRET}
    creds[name] = "pässwörd-" + SECRET
    monkeypatch.setenv("SCALPER_EXCHANGE__VENUE", "okx")
    for field, value in creds.items():
        monkeypatch.setenv(f"SCALPER_EXCHANGE__{field.upper()}", value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert f"exchange.{name} (env SCALPER_EXCHANGE__{name.upper()}): must be printable ASCII" in message
    assert SECRET not in message and "ä" not in message and "\n" not in message


def test_the_cli_refuses_a_non_ascii_passphrase_in_one_line(clean_env: Path) -> None:
    lines = [
        "SCALPER_EXCHANGE__VENUE=okx",
        "SCALPER_EXCHANGE__API_KEY=k",
        "SCALPER_EXCHANGE__API_SECRET=s",
        "SCALPER_EXCHANGE__PASSPHRASE=pass\u00a0word",
    ]  # the passphrase has a non-breaking space, pasted with it
    (clean_env / ".env").write_text("\n".join(lines) + "\n")
    done = _cli("config", "show", cwd=clean_env)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "exchange.passphrase (env SCALPER_EXCHANGE__PASSPHRASE): must be printable ASCII" in line
    assert "word" not in line


@pytest.mark.parametrize("field", ["api_key", "secret", "passphrase"])
def test_the_signer_refuses_a_non_ascii_credential_by_name(field: str) -> None:
    values = {"api_key": "key", "secret": "secret", "passphrase": "passphrase"}
    values[field] = "\u201csmart-quoted\u201d"
    with pytest.raises(ValueError, match="must be printable ASCII") as err:
        Credentials(values["api_key"], values["secret"], values["passphrase"])
    assert "smart" not in str(err.value)

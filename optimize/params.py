"""`--param SECTION.FIELD=SPEC`: a setting to search, checked against the settings model before any trial.

SPEC is a range `LOW:HIGH` (an int field draws ints, a float field floats), a stepped range `LOW:HIGH:STEP`,
or choices `X|Y|Z` (any field: booleans, literals, numbers). The path is any setting `--set` takes, a
per-symbol override included (`symbols.BTC-USDT-SWAP.exits.take_profit_pct`), and a parameter of the
strategy `engine.strategy` names (`strategy.level`), typed by that strategy's own `Params` model. Every bound
and choice is validated on top of the base settings, as `--set` would be (a strategy parameter by the
strategy's model), so a typo or an out-of-range bound is one line naming the parameter, before anything is
enqueued.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from config.settings import ConfigError, Settings, load_settings
from workers.strategies import check_strategy, strategy_class

# What a trial carries (optimize/trial.py `resolved`): every section but these, which a backtest never reads
# (and which hold the Redis address and the notification URLs); of `exchange`, only the paper venue's figures
# (never the credentials). A new section (a strategy's own settings) is carried without a change here.
NOT_SENT = ("redis", "log", "web", "notify")
EXCHANGE_FIELDS = ("taker_fee", "maker_fee", "paper_balance", "paper_spread_bps", "position_tiers_file")


class ParamError(ValueError):
    """A --param or --set that cannot be searched: one line naming it."""


@dataclass(frozen=True)
class Param:
    path: str  # section.field, or symbols.SYMBOL.section.field
    kind: str  # "int", "float" or "choice"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        if self.kind == "choice":
            return "|".join(json.dumps(c) if not isinstance(c, str) else c for c in self.choices)
        step = f":{self.step:g}" if self.step is not None else ""
        return f"{self.low:g}:{self.high:g}{step}"

    def grid(self) -> list[Any]:
        """Every value of a sweep: the choices, or the range walked by its step (needed for a range)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.step is None:
            raise ParamError(f"--param {self.path}={self.text}: a sweep needs LOW:HIGH:STEP or X|Y|Z")
        n = round((self.high - self.low) / self.step)
        values = [self.low + i * self.step for i in range(n + 1)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 10) for v in values]


def _field_type(path: str, strategy: str | None) -> Any:
    """The annotation of the setting at `path`, or a ParamError naming what is wrong with it. `strategy` is
    the `engine.strategy` the trials run: its `Params` model types the `strategy` section."""
    parts = path.split(".")
    if parts[0] == "symbols":
        if len(parts) != 4:
            raise ParamError(f"{path}: a per-symbol setting is symbols.SYMBOL.SECTION.FIELD")
        parts = parts[2:]
    if len(parts) != 2:
        raise ParamError(f"{path}: expected SECTION.FIELD (e.g. exits.take_profit_pct)")
    section, name = parts
    if section == "strategy" and path.startswith("strategy."):
        return _strategy_field_type(path, name, strategy)
    field = Settings.model_fields.get(section)
    model = field.annotation if field is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        known = ", ".join(Settings.model_fields)
        raise ParamError(f"{path}: no setting section {section!r} (sections: {known})")
    if name not in model.model_fields:
        raise ParamError(f"{path}: {section} has no setting {name!r} ({', '.join(model.model_fields)})")
    return model.model_fields[name].annotation


def _strategy_field_type(path: str, name: str, strategy: str | None) -> Any:
    if strategy is None:
        raise ParamError(f"{path}: a strategy parameter needs the strategy (engine.strategy)")
    try:
        cls = strategy_class(strategy)
    except ConfigError as err:
        raise ParamError(f"{path}: {str(err).removeprefix('invalid configuration: ')}") from None
    model = getattr(cls, "Params", None)
    fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
    if name not in fields:
        known = ", ".join(fields) or "none"
        raise ParamError(f"{path}: the strategy {cls.__name__} has no parameter {name!r} (its parameters: "
                         f"{known})")  # fmt: skip
    return fields[name].annotation


def _numeric(annotation: Any) -> str | None:
    """"int" or "float" for a numeric field (Optional allowed), None otherwise."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for t in (annotation, *args):
        if t is int:
            return "int"
        if t is float or getattr(t, "__name__", "") == "Decimal":
            return "float"
    return None


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse(spec: str, strategy: str | None = None) -> Param:
    """One --param; raises ParamError naming it. `strategy` (engine.strategy) types `strategy.*` params."""
    path, eq, text = spec.partition("=")
    if not eq or not text:
        raise ParamError(f"--param {spec!r}: expected SECTION.FIELD=LOW:HIGH, LOW:HIGH:STEP or X|Y|Z")
    section, _, field = path.partition(".")
    if section in NOT_SENT or (section == "exchange" and field not in EXCHANGE_FIELDS):
        raise ParamError(f"--param {path}: not a setting a backtest reads (credentials, Redis, logs, web and "
                         "notifications are never searched)")  # fmt: skip
    try:
        kind = _numeric(_field_type(path, strategy))
    except ParamError as err:
        raise ParamError(f"--param {err}") from None
    if "|" in text:
        return Param(path, "choice", choices=tuple(_value(c) for c in text.split("|")))
    bounds = text.split(":")
    if len(bounds) not in (2, 3) or kind is None:
        what = "a range needs a number setting; use X|Y|Z" if kind is None else "expected LOW:HIGH[:STEP]"
        raise ParamError(f"--param {spec}: {what}")
    try:
        nums = [float(b) for b in bounds]
    except ValueError:
        raise ParamError(f"--param {spec}: LOW, HIGH and STEP must be numbers") from None
    low, high = nums[0], nums[1]
    step = nums[2] if len(nums) == 3 else None
    if not low < high or (step is not None and step <= 0):
        raise ParamError(f"--param {spec}: need LOW < HIGH and STEP > 0")
    if kind == "int" and not all(n == int(n) for n in nums):
        raise ParamError(f"--param {spec}: {path} is a whole number; give whole bounds")
    return Param(path, kind, low, high, step)


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"exits.take_profit_pct": 1} -> {"exits": {"take_profit_pct": 1}} (what load_settings takes)."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        node = out
        *heads, last = path.split(".") if not path.startswith("symbols.") else _symbol_path(path)
        for key in heads:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def _symbol_path(path: str) -> list[str]:
    _, rest = path.split(".", 1)
    symbol_section, field = rest.rsplit(".", 1)
    symbol, section = symbol_section.rsplit(".", 1)
    return ["symbols", symbol, section, field]


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` deep-merged over `base` (a trial's values over the --set ones)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def check(params: list[Param], base: dict[str, Any]) -> None:
    """Each bound and choice alone over `base` must be a valid setting, and a valid parameter of the
    strategy: a ParamError names the first that is not. (Combinations can still clash, e.g. rsi_mid above
    rsi_overbought: such a trial is reported as invalid, not run.)"""
    for p in params:
        values = list(p.choices) if p.kind == "choice" else [p.low, p.high]
        for v in values:
            v = int(v) if p.kind == "int" else v
            try:
                check_strategy(load_settings(**merged(base, nested({p.path: v}))))
            except ConfigError as err:
                reason = str(err).splitlines()[-1].strip().removeprefix("invalid configuration: ")
                raise ParamError(f"--param {p.path}={p.text}: {v!r} is not a valid value: {reason}") from None


def env_line(path: str, value: Any) -> str:
    """The ready-to-paste environment variable: SCALPER_EXITS__TAKE_PROFIT_PCT=0.9 (config/settings.py:
    prefix SCALPER_, nested by __). A per-symbol value is part of SCALPER_SYMBOLS' JSON instead."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return f"SCALPER_{path.replace('.', '__').upper()}={text}"

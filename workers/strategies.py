"""The strategy named by `engine.strategy`: loaded and its parameters checked at start-up, then run guarded.

Loading lives here, above the pure decisions: statemachines/ defines the interface and never imports a
user's code; the live engine (workers/entries.py) and the backtest (backtest/engine.py, through the same
StrategyEntries) both load the strategy here, from the settings alone.

`engine.strategy` is `package.module:Class` (importable: installed, or on PYTHONPATH) or
`path/to/file.py:Class` (a relative path is taken from the working directory). Its parameters are the
`strategy` settings section, validated by the class's `Params` model. Every problem is one `ConfigError`
line naming the setting, raised when a process starts: `scalper run`, `scalper engine` and
`scalper backtest` check it before anything runs.

A strategy that raises while running is quarantined on that symbol (`GuardedStrategy`): it proposes no more
entries there and gives no more exit hints, the failure is logged once with its reason and counted, and the
engine goes on; the symbol's positions keep every exit. A restart tries the strategy again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from config.settings import ConfigError, Settings
from indicators.symbol import SymbolIndicators
from statemachines.position import Position
from statemachines.snapshot import MarketSnapshot, Signal
from statemachines.strategy import EntrySignal, Strategy

log = logging.getLogger("scalper.strategy")

SETTING = "engine.strategy (env SCALPER_ENGINE__STRATEGY)"


def load_strategy(settings: Settings) -> Strategy:
    """The strategy `settings` name, built with its validated parameters; ConfigError (one line) if not."""
    cls = strategy_class(settings.engine.strategy)
    params = strategy_params(cls, settings.strategy)
    try:
        if hasattr(cls, "from_settings"):
            strategy = cls.from_settings(settings, params)
        else:
            strategy = cls(params) if params is not None else cls()
    except Exception as err:  # the user's constructor: any error is a start-up error, said in one line
        raise ConfigError(_line(f"{SETTING}: {cls.__name__} could not be built: {_why(err)}")) from None
    if not callable(getattr(strategy, "on_tick", None)):
        raise ConfigError(_line(f"{SETTING}: {cls.__name__} has no on_tick(symbol, ind, now) method"))
    return strategy  # type: ignore[no-any-return]


def check_strategy(settings: Settings) -> None:
    """At start-up: the configured strategy loads and takes its parameters (ConfigError, one line, if not).
    Nothing to check when entries are manual only."""
    if settings.engine.entries == "strategy":
        load_strategy(settings)


def strategy_class(spec: str) -> type:
    """The class `module:Class` or `file.py:Class` names."""
    where, _, name = spec.rpartition(":")
    module = _module_from_file(where) if where.endswith(".py") else _module(where)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ConfigError(_line(f"{SETTING}: {where!r} has no class {name!r}"))
    return cls


def absolute_spec(spec: str) -> str:
    """`spec` with a relative file made absolute from the working directory (`my.py:C` -> `/here/my.py:C`):
    what a process elsewhere (an optimisation trial's worker) must be told. A module spec is unchanged."""
    where, _, name = spec.rpartition(":")
    if not where.endswith(".py"):
        return spec
    return f"{Path(where).expanduser().resolve()}:{name}"


def strategy_params(cls: type, values: Mapping[str, Any]) -> BaseModel | None:
    """The `strategy` section checked against the class's `Params` model (None: it takes none)."""
    model = getattr(cls, "Params", None)
    if model is None:
        if values:
            names = ", ".join(sorted(values))
            raise ConfigError(_line(f"strategy.{sorted(values)[0]} (env SCALPER_STRATEGY__…): "
                                    f"{cls.__name__} takes no parameters (given: {names})"))  # fmt: skip
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError(_line(f"{SETTING}: {cls.__name__}.Params must be a pydantic model"))
    # Unknown names are refused whatever the model's own `extra`: a misspelt parameter must not be ignored.
    unknown = sorted(set(values) - set(model.model_fields))
    if unknown:
        known, name = ", ".join(model.model_fields) or "none", unknown[0]
        env = f"SCALPER_STRATEGY__{name.upper()}"
        raise ConfigError(_line(f"strategy.{name} (env {env}): {cls.__name__} has no such parameter "
                                f"(its parameters: {known})"))  # fmt: skip
    try:
        return model.model_validate(dict(values))
    except ValidationError as err:
        first = err.errors(include_url=False, include_input=False)[0]
        loc = [str(p) for p in first["loc"]]
        name = ".".join(loc)
        env = f" (env SCALPER_STRATEGY__{loc[0].upper()})" if loc else ""
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(_line(f"strategy.{name}{env}: {msg}" if loc else f"strategy: {msg}")) from None


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):  # the module itself (or its package) is not there
            raise ConfigError(_line(f"{SETTING}: no module {name!r} (is it installed, or on PYTHONPATH? "
                                    "a file is named path/to/file.py:Class)")) from None  # fmt: skip
        raise ConfigError(_line(f"{SETTING}: importing {name!r} failed: {_why(err)}")) from None
    except Exception as err:
        raise ConfigError(_line(f"{SETTING}: importing {name!r} failed: {_why(err)}")) from None


def _module_from_file(path: str) -> Any:
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError(_line(f"{SETTING}: no file {path!r} (from {Path.cwd()})"))
    # A name of its own per file, so that two strategies' files named alike do not collide.
    name = f"scalper_strategy_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(_line(f"{SETTING}: {path!r} cannot be loaded as Python"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pydantic look their module up
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ConfigError(_line(f"{SETTING}: importing {path!r} failed: {_why(err)}")) from None
    return module


def _why(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".splitlines()[0]


def _line(text: str) -> str:
    return f"invalid configuration: {text}"


class GuardedStrategy:
    """The strategy as the engine runs it: a call that raises quarantines the strategy on that symbol.

    `quarantined` maps symbol → why; `on_quarantine(symbol, why)` is told once per symbol (the live engine
    records it in its dead-letter stream, a backtest in its result). Both the entries and the exit hints
    go through here, so a quarantined symbol gets neither, and its positions keep every other exit."""

    def __init__(self, strategy: Strategy, on_quarantine: Callable[[str, str], None] | None = None) -> None:
        self.strategy = strategy
        self.name = type(strategy).__name__
        self.on_quarantine = on_quarantine
        self.quarantined: dict[str, str] = {}
        # The strategy's own on_tick, bound once: called on every tick of every symbol, unguarded; its one
        # caller, StrategyEntries.on_tick, guards it (skips a quarantined symbol, then `raised`, `checked`).
        self.on_tick: Callable[[str, SymbolIndicators, float], object] = strategy.on_tick
        hint = getattr(strategy, "exit_hint", None)
        self._hint: Callable[[Position, SymbolIndicators, float], Signal | None] | None = (
            hint if callable(hint) else None
        )
        self._indicators: Callable[[str], SymbolIndicators | None] = lambda _symbol: None

    @property
    def gives_hints(self) -> bool:
        return self._hint is not None

    def bind(self, indicators: Callable[[str], SymbolIndicators | None]) -> GuardedStrategy:
        """How to find the engine's indicators of a symbol, which `exit_hint` shows the strategy: asked on
        every hint, as the engine replaces its indicators when it (re)takes its shard."""
        self._indicators = indicators
        return self

    def raised(self, symbol: str, err: Exception) -> None:
        """The strategy's on_tick raised `err` on `symbol`."""
        self.quarantine(symbol, f"on_tick raised {_why(err)}", err)

    def checked(self, symbol: str, signal: object) -> EntrySignal | None:
        """What on_tick returned, if it is an entry signal; else the symbol is quarantined."""
        if type(signal) is EntrySignal:
            return signal
        self.quarantine(symbol, f"on_tick returned {type(signal).__name__}, not an EntrySignal or None")
        return None

    def forget(self, symbol: str) -> None:
        """Tell the strategy its memory of `symbol` is stale (its optional `forget(symbol)`): the engine
        rebuilt the symbol's indicators when it (re)took its shard, and a side remembered from before would
        read as a cross that happened while no engine watched."""
        forget = getattr(self.strategy, "forget", None)
        if symbol in self.quarantined or not callable(forget):
            return
        try:
            forget(symbol)
        except Exception as err:
            self.quarantine(symbol, f"forget raised {_why(err)}", err)

    def exit_hint(self, pos: Position, mkt: MarketSnapshot) -> Signal | None:
        """The strategy's hint for `pos` (statemachines/exits.py asks after the protective exits)."""
        symbol = pos.symbol
        if self._hint is None or symbol in self.quarantined:
            return None
        ind = self._indicators(symbol)
        if ind is None:
            return None
        try:
            hint = self._hint(pos, ind, mkt.now)
            if hint is not None and not isinstance(hint, Signal):
                raise TypeError(f"exit_hint returned {type(hint).__name__}, not a Signal or None")
        except Exception as err:
            self.quarantine(symbol, f"exit_hint raised {_why(err)}", err)
            return None
        return hint

    def quarantine(self, symbol: str, why: str, err: BaseException | None = None) -> None:
        if symbol in self.quarantined:
            return
        self.quarantined[symbol] = why
        # Once per symbol, with the traceback: what the strategy's author needs to fix it.
        log.error("strategy %s quarantined on %s: %s; no more entries or exit hints from it there until a "
                  "restart; its positions keep every other exit", self.name, symbol, why,
                  exc_info=err)  # fmt: skip
        if self.on_quarantine is not None:
            self.on_quarantine(symbol, why)

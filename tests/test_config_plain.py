"""config/plain.py: the tick path's plain copy of a symbol's settings holds every field of the validated
model, under the same names, nested sections included, and cannot be changed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

from config.plain import plain
from config.settings import Settings, SymbolConfig

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


def _same_fields(model: BaseModel, copy: object) -> int:
    """Every field of `model` (recursively) is on `copy` with an equal value; the number compared."""
    compared = 0
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            assert not isinstance(getattr(copy, name), BaseModel), name
            compared += _same_fields(value, getattr(copy, name))
        else:
            assert getattr(copy, name) == value and type(getattr(copy, name)) is type(value), name
            compared += 1
    return compared


def test_a_symbols_plain_settings_hold_every_field_of_its_overridden_model() -> None:
    settings = Settings(symbols={BTC: {"risk": {"leverage": 3}, "exits": {"take_profit_pct": 0.9}}, ETH: {}})
    for symbol in (BTC, ETH):
        model = settings.for_symbol(symbol)
        copy = plain(model)
        n = _same_fields(model, copy)
        sections = ("exits", "smart_exit", "risk")
        assert n == 1 + sum(len(type(getattr(model, s)).model_fields) for s in sections)
    assert plain(settings.for_symbol(BTC)).risk.leverage == 3
    assert plain(settings.for_symbol(ETH)).risk.leverage == settings.risk.leverage
    assert plain(settings.for_symbol(BTC)).exits.take_profit_pct == 0.9


def test_plain_settings_are_read_only_and_say_what_they_are() -> None:
    copy = plain(Settings(symbols={BTC: {}}).for_symbol(BTC))
    with pytest.raises(AttributeError, match="read-only"):
        copy.risk.leverage = 50  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        del copy.exits  # type: ignore[misc]
    assert copy.risk.leverage == 5
    assert repr(copy).startswith(f"SymbolConfig(symbol='{BTC}', exits=ExitSettings(")


def test_the_tick_path_reads_plain_copies_of_each_symbols_settings() -> None:
    from backtest.engine import BacktestEngine
    from backtest.venue import SimVenue
    from exchanges.paper import DEFAULT_INSTRUMENTS

    settings = Settings(symbols={BTC: {"risk": {"leverage": 3}}})
    inst = {BTC: DEFAULT_INSTRUMENTS[0]}
    ex = settings.exchange
    venue = SimVenue(instruments=inst, balance=ex.paper_balance, taker_fee=ex.taker_fee, latency_s=0.0,
                     spread_bps=Decimal(0), leverage=Decimal(3))  # fmt: skip
    engine = BacktestEngine(settings, [BTC], venue, inst)
    cfg = engine.cfg[BTC]
    assert not isinstance(cfg, SymbolConfig) and not isinstance(cfg.risk, BaseModel)
    assert _same_fields(settings.for_symbol(BTC), cfg) > 30 and cfg.risk.leverage == 3

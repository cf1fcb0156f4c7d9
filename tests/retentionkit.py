"""Closed positions made through the real store, machine and stepper, and a search for everything Redis
still holds about one: for tests/test_retention.py and bench/bench_retention.py."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal as D

import redis

from config.settings import Settings
from statemachines import stepper
from statemachines.intents import close_intent
from statemachines.machine import PositionMachine
from statemachines.position import Position, Side, new_position_id
from statemachines.store import PositionStore
from tests.clock import Clock

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


def settings(prefix: str, **engine: object) -> Settings:
    return Settings(_env_file=None, redis={"prefix": prefix}, symbols={BTC: {}, ETH: {}},  # type: ignore[call-arg, arg-type]
                    engine=engine)  # fmt: skip


def open_position(store: PositionStore, pm: PositionMachine, clock: Clock, symbol: str = BTC,
                  side: Side = Side.LONG) -> Position:  # fmt: skip
    """A position created and filled at `clock()`, as the engine makes one (entry fee charged). The clock
    moves on by a millisecond, so that ids (time + 4 random characters) made in a loop cannot collide."""
    now = clock()
    clock.advance(0.001)
    pos = Position(id=new_position_id(now), symbol=symbol, side=side, leverage=5, state_since=now,
                   wall_since=now, entry_size=D("0.5"), entry_attempt=1)  # fmt: skip
    store.create(pos, reason="macd 12.3 crossed above signal 8.1, rsi 56.2", price=50000.0, ts=now)
    cfg = Settings(_env_file=None).for_symbol(symbol)  # type: ignore[call-arg]
    stepper.entry_filled(pm, pos, price=D("50000.1"), size=D("0.5"), atr=42.0, cfg=cfg, now=now,
                         fee=D("-0.1250025"))  # fmt: skip
    return pos


def close_position(
    pm: PositionMachine, pos: Position, *, pnl: D, fee: D, reason: str = "take_profit"
) -> None:
    """Through `closing`, as every bot-side exit goes, to `closed` with the exchange's PnL and fees."""
    pm.fire(pos, "close", reason=reason, price=50100.0, fields={"exit_reason": reason, "close_attempt": 1},
            intent=close_intent(pos, 1, reason).to_fields())  # fmt: skip
    stepper.settle_closed(pm, pos, trigger="close_filled", reason="close order filled",
                          realized_pnl=pos.realized_pnl + pnl, fees=pos.fees + fee)  # fmt: skip


def closed_position(store: PositionStore, pm: PositionMachine, clock: Clock, *, pnl: D = D("0.5"),
                    fee: D = D("-0.125"), symbol: str = BTC) -> Position:  # fmt: skip
    pos = open_position(store, pm, clock, symbol)
    close_position(pm, pos, pnl=pnl, fee=fee)
    return pos


def mentions(client: redis.Redis, pid: str, *, skip: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Every key whose name holds `pid`, and every set, sorted set, hash or stream that holds it in a
    member, field or value, except keys for which `skip` is true."""
    return sorted(where for where, text in holdings(client, skip) if pid in text)


def holdings(client: redis.Redis, skip: Callable[[str], bool] = lambda key: False) -> list[tuple[str, str]]:
    """(where, text) for every key name and every member, field and value Redis holds (one scan)."""
    out = []
    for raw in client.scan_iter(count=1000):
        key = raw.decode()
        if skip(key):
            continue
        out.append((key, key))
        kind = client.type(raw).decode()
        if kind == "set":
            out += [(f"{key} (member)", m.decode()) for m in client.smembers(raw)]
        elif kind == "zset":
            out += [(f"{key} (member)", m.decode()) for m in client.zrange(raw, 0, -1)]
        elif kind == "hash":
            out += [(f"{key} (field)", f.decode()) for f in client.hkeys(raw)]
        elif kind == "stream":
            out += [(f"{key} (entry)", v.decode()) for _, f in client.xrange(raw) for v in f.values()]
    return out

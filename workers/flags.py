"""Positions the engine cannot manage: their hash cannot be parsed, or stepping them failed (a field edited
by hand). Each is left out of the engine's book with its exchange-side stop, quarantined (its hash copied to
the dead-letter stream), listed in `{prefix}:{SYMBOL}:quarantined` and logged once as an error; its symbol
takes no entry and no adoption until it is readable again and the engine starts again."""

from __future__ import annotations

import logging
from typing import Any

import redis

from statemachines.keys import Keys
from statemachines.redis_text import as_str
from workers.quarantine import Quarantine

log = logging.getLogger("scalper.engine")


class FlaggedPositions:
    def __init__(self, client: redis.Redis, keys: Keys, quarantine: Quarantine) -> None:
        self.client, self.keys, self.quarantine = client, keys, quarantine
        self.ids: dict[str, str] = {}  # position id -> symbol

    def flag(self, symbol: str, position_id: str, raw: Any, why: str) -> None:
        if position_id not in self.ids:
            log.error("position %s (%s) is left to its exchange-side stop: %s. Fix the field in its hash "
                      "(docs/operations.md: a position is flagged); the engine takes it back when it starts "
                      "again", position_id, symbol, why)  # fmt: skip
        self.ids[position_id] = symbol
        self.quarantine.put(f"positions:{symbol}", why, raw, ref=position_id)
        self.client.sadd(self.keys.bad_positions(symbol), position_id)

    def has(self, symbol: str) -> bool:
        return symbol in self.ids.values()

    def clear(self) -> None:
        """Before the engine loads its shard again: what is still unreadable is flagged again."""
        self.ids.clear()

    def unflag_readable(self, symbols: list[str]) -> None:
        """Drop the Redis flags of positions that are readable again (fixed by the operator) or gone."""
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.smembers(self.keys.bad_positions(symbol))
        for symbol, ids in zip(symbols, pipe.execute(), strict=True):
            fixed = [i for i in (as_str(x) for x in ids) if i not in self.ids]
            if fixed:
                self.client.srem(self.keys.bad_positions(symbol), *fixed)

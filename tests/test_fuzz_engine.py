"""100,000 fuzzed messages through the engine's real input path (its tick streams and its exchange-event
streams on a real redis-server): nothing escapes the loop, every bad message is counted, quarantined and
dropped (and acknowledged), and every good tick among them is processed. Good ticks walk like a market; bad
ones include finite prices far outside the tick band. Seeded, so a failure can be replayed."""

from __future__ import annotations

import json
import math
import random

import redis

from config.settings import Settings
from tests.conftest import RealRedis
from workers.engine import Engine

BTC = "BTC-USDT-SWAP"
SEED = 20261121
TICKS = 80_000
EVENTS = 20_000

BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "-0.0", "", "abc", "1,5", "0x10", "None",
               "[]", "{}", "--1", "1e-400", "\x00", "9" * 500 + "x"]  # fmt: skip


def _bad_tick(rng: random.Random) -> dict[str, str]:
    good = {"px": repr(rng.uniform(1, 1e5)), "ts": repr(1.7e9 + rng.uniform(0, 1e6))}
    kind = rng.randrange(4)
    if kind == 0:
        good.pop(rng.choice(["px", "ts"]))  # a field missing
    elif kind == 1:
        good[rng.choice(["px", "ts"])] = rng.choice(BAD_NUMBERS)  # not a positive finite number
    elif kind == 2:
        good = {"junk": "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 20)))}
    else:
        good["px"] = json.dumps({"px": good["px"]})  # a nested structure instead of a number
    return good


def _bad_event(rng: random.Random) -> dict[str, str]:
    base = {
        "kind": rng.choice(["order", "position", "account", "", "??"]),
        "inst_id": BTC,
        "cl_ord_id": "".join(rng.choice("abcxyz0189") for _ in range(rng.randrange(0, 40))),
        "side": rng.choice(["buy", "sell", "long", "short", "", "up"]),
        "state": rng.choice(["live", "filled", "canceled", "partially_filled", "weird", ""]),
        "size": rng.choice([*BAD_NUMBERS, "1", "0.5"]),
        "filled": rng.choice(BAD_NUMBERS),
        "avg_px": rng.choice(BAD_NUMBERS),
        "fee": rng.choice(BAD_NUMBERS),
        "ts_ms": rng.choice(BAD_NUMBERS),
    }
    for key in rng.sample(sorted(base), rng.randrange(0, len(base))):
        base.pop(key)
    return base or {"x": "y"}


def test_hundred_thousand_fuzzed_messages_through_the_engine_input_path(real_redis: RealRedis) -> None:
    client: redis.Redis = real_redis.client
    settings = Settings(_env_file=None, symbols={BTC: {}})  # type: ignore[call-arg, arg-type]
    engine = Engine(settings, client, symbols=[BTC])
    engine.start()
    rng = random.Random(SEED)
    ticks_key, events_key = engine.keys.ticks(BTC), engine.keys.events(BTC)
    good_ticks = 0
    pipe = client.pipeline(transaction=False)
    ts = 1.7e9
    px = 50_000.0
    absurd = False  # the last tick the guard saw was an absurd print: the next one it sees is good
    for i in range(TICKS):
        roll = rng.random()
        if roll < 0.5 or (absurd and roll < 0.55):  # a market's path: a random walk
            ts += rng.uniform(0, 5)
            px *= 1 + rng.uniform(-0.002, 0.002)
            pipe.xadd(ticks_key, {"px": repr(px), "ts": repr(ts)})
            good_ticks += 1
            absurd = False
        elif roll < 0.55:
            # Finite and positive, but absurd: a single print far outside the band. (Prints in a row that
            # agree are a move the guard accepts once confirmed: tests/test_tickguard.py.)
            pipe.xadd(ticks_key, {"px": repr(px * rng.choice([1e-4, 0.5, 1.6, 40.0])), "ts": repr(ts)})
            absurd = True
        else:
            pipe.xadd(ticks_key, _bad_tick(rng))
        if i % 2_000 == 0:
            pipe.execute()
    surely_bad = 0  # orders that cannot be read: a required field missing, or an impossible side/state
    for i in range(EVENTS):
        event = _bad_event(rng)
        surely_bad += event.get("kind") == "order" and (
            any(k not in event for k in ("cl_ord_id", "side", "state", "size", "inst_id"))
            or event["side"] not in ("buy", "sell")
            or event["state"] not in ("live", "filled", "canceled", "partially_filled")
        )
        pipe.xadd(events_key, event)
        if i % 2_000 == 0:
            pipe.execute()
    pipe.execute()

    while engine.ticks_seen + engine.dropped_ticks < TICKS:
        engine.run_once(block_ms=0)
    for _ in range(EVENTS // 200 + 10):  # events are read 200 at a time
        engine.run_once(block_ms=0)

    assert engine.ticks_seen + engine.dropped_ticks == TICKS
    assert engine.ticks_seen == good_ticks  # every good tick was processed, every bad one dropped
    assert engine.dropped_ticks == TICKS - good_ticks
    # and every dropped one was quarantined: counted in Redis, the newest kept in the dead-letter stream
    assert int(client.hget(engine.keys.quarantined(), "ticks")) == engine.dropped_ticks
    assert client.xlen(engine.keys.dead_letter()) >= 10_000
    assert client.xpending(events_key, "engine")["pending"] == 0  # every event acknowledged
    # every unreadable order counted (other events are readable no-ops: unknown kinds, unknown positions)
    assert surely_bad > 1_000 and engine.dropped_events >= surely_bad
    ind = engine.ind[BTC]
    assert ind.price is not None and math.isfinite(ind.price) and ind.price > 0

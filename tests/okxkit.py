"""The local fake OKX that a test's real processes (tests/system.py) trade on, and the settings that point
them at it. One set of credentials serves both, so the fake and the processes agree by construction.

    with fake_okx({"BTC-USDT-SWAP": "50000"}) as okx:
        system = System(socket, workdir, **okx_system_settings(okx, risk__leverage="3"))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from tests.fakeokx.thread import FakeThread

KEY, SECRET, PASSPHRASE = "okxKey4d1c", "okxSecret8a7b", "okxPass2f6e"
BTC = "BTC-USDT-SWAP"


@contextmanager
def fake_okx(prices: Mapping[str, str] | None = None) -> Iterator[FakeThread]:
    """The fake OKX on its own thread, expecting this module's credentials and quoting `prices` (instrument
    -> price; BTC at 50,000 when not given); closed on leaving."""
    fake = FakeThread(KEY, SECRET, PASSPHRASE)
    try:
        for inst, px in (prices or {BTC: "50000"}).items():
            fake.price(px, inst)
        yield fake
    finally:
        fake.close()


def okx_system_settings(okx: FakeThread, symbols: Iterable[str] = (BTC,), **overrides: str) -> dict[str, str]:
    """Settings for scalper's processes on `okx`, trading `symbols`: entries only by operator command, a
    reconcile pass a second, and none of the exits that fire by themselves (take-profit, harvest, max hold,
    drawdown, smart exit, trailing), so that what a position does is what the test does to it. `overrides`
    add settings or replace these."""
    port = okx.fake.port
    return {
        "symbols": json.dumps({symbol: {} for symbol in symbols}), "engine__entries": "manual",
        "engine__reconcile_every_s": "1", "exchange__venue": "okx", "exchange__api_key": KEY,
        "exchange__api_secret": SECRET, "exchange__passphrase": PASSPHRASE, "exchange__demo": "true",
        "exchange__rest_url": f"http://127.0.0.1:{port}", "exchange__ws_url": f"ws://127.0.0.1:{port}/ws/v5",
        "exits__take_profit_pct": "0", "exits__harvest_pct": "0", "exits__max_hold_s": "0",
        "exits__drawdown_activation_pct": "0", "smart_exit__enabled": "false",
        "exits__trailing_activation_pct": "0", **overrides,
    }  # fmt: skip

"""The paper venue: base.Exchange filled against the feed's quotes, its account kept in Redis.

    from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=Decimal("0.0005"), maker_fee=Decimal("0.0002"))
    await ex.on_quote("BTC-USDT-SWAP", bid, ask, ts)

Modules: ledger (OKX linear-swap formulas and order rules, pure), state (the account in Redis),
exchange (PaperExchange: the Exchange API), matching (its fills, triggers, liquidations and marks), stops
(its protective stops), faults (the test fault plan), events (the events() stream); the venue as a process:
venue (PaperVenue, the account's one writer), client (PaperClient, the Exchange the other processes use),
wire (their protocol).
This file holds the default instruments.
"""

from __future__ import annotations

from decimal import Decimal

from exchanges.base import Instrument
from exchanges.paper.exchange import PaperExchange
from exchanges.paper.faults import READ_OPS, Fault, FaultPlan

# OKX GET /api/v5/public/instruments records as recorded in CCXT's static test markets (ccxt/ccxt
# ts/src/test/static/markets/okx.json @ 3802e1a2; a copy is in
# ../shared/data/okx/ccxt/markets_swap_instruments.json): ctVal, lotSz, minSz, tickSz and lever verbatim.
# OKX changes lotSz/minSz over time (newer fixtures show 0.01 for BTC): the live adapter reads them at
# runtime; these are for paper trading and tests only.
DEFAULT_INSTRUMENTS: list[Instrument] = [
    Instrument(
        inst_id="BTC-USDT-SWAP",
        ct_val=Decimal("0.01"),
        lot_sz=Decimal("0.1"),
        min_sz=Decimal("0.1"),
        tick_sz=Decimal("0.1"),
        max_lever=100,
    ),
    Instrument(
        inst_id="ETH-USDT-SWAP",
        ct_val=Decimal("0.1"),
        lot_sz=Decimal("0.1"),
        min_sz=Decimal("0.1"),
        tick_sz=Decimal("0.01"),
        max_lever=100,
    ),
]

__all__ = ["DEFAULT_INSTRUMENTS", "READ_OPS", "Fault", "FaultPlan", "PaperExchange"]

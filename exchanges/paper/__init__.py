"""The paper venue: base.Exchange filled against the feed's quotes, its account kept in Redis.

    from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
    ex = PaperExchange(client, DEFAULT_INSTRUMENTS, taker_fee=Decimal("0.0005"), maker_fee=Decimal("0.0002"))
    await ex.on_quote("BTC-USDT-SWAP", bid, ask, ts)

Modules: ledger (OKX linear-swap formulas and order rules, pure), state (the account in Redis),
exchange (PaperExchange). This file holds the default instruments and the test fault plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exchanges.base import Instrument

# OKX GET /api/v5/public/instruments records as recorded in CCXT's static test markets (ccxt/ccxt
# ts/src/test/static/markets/okx.json @ 3802e1a2; a copy is in
# ../shared/data/okx/ccxt/markets_swap_instruments.json): ctVal, lotSz, minSz, tickSz and lever verbatim.
# OKX changes lotSz/minSz over time (newer fixtures show 0.01 for BTC): the live adapter reads them at
# runtime; these are for paper trading and tests only.
DEFAULT_INSTRUMENTS: list[Instrument] = [
    Instrument(
        inst_id="BTC-USDT-SWAP", ct_val=Decimal("0.01"), lot_sz=Decimal("0.1"), min_sz=Decimal("0.1"),
        tick_sz=Decimal("0.1"), max_lever=100,
    ),
    Instrument(
        inst_id="ETH-USDT-SWAP", ct_val=Decimal("0.1"), lot_sz=Decimal("0.1"), min_sz=Decimal("0.1"),
        tick_sz=Decimal("0.01"), max_lever=100,
    ),
]

READ_OPS = ("positions", "balance", "pending_orders", "stops", "get_order")


@dataclass
class Fault:
    """An injected misbehaviour of the next `count` calls of the methods in `ops`.

    kind "partial"   (place_order) the order's first fill takes only `fraction` (default 0.5) of its size,
                     rounded down to the lot; then the rest stays live (`rest="live"`) or is cancelled
                     (`rest="cancel"`)
         "reject"    raise the venue error for `code` (default "51000"), `msg`; nothing is done
         "timeout"   `executed=True` (default): the request IS carried out, then OutcomeUnknown is raised
                     (the unknown-outcome case: query by client id before any retry); `executed=False`:
                     the request is lost, then OutcomeUnknown. On a read: ExchangeUnavailable
         "delay"     await asyncio.sleep(`seconds`, default 0.05) before the call is served
         "read_fail" raise ExchangeUnavailable (default ops: every read)
    """

    kind: str
    ops: tuple[str, ...]
    count: int = 1
    params: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    KINDS = ("partial", "reject", "timeout", "delay", "read_fail")

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, kind: str, count: int = 1, op: str | tuple[str, ...] | None = None, **params: Any) -> Fault:
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {self.KINDS}")
        if count < 1:
            raise ValueError("count must be at least 1")
        ops = (op,) if isinstance(op, str) else op or (READ_OPS if kind == "read_fail" else ("place_order",))
        fault = Fault(kind, tuple(ops), count, params)
        self.faults.append(fault)
        return fault

    def take(self, op: str) -> list[Fault]:
        """The faults hitting this call of `op`, each used up by one."""
        hit = [f for f in self.faults if op in f.ops]
        for f in hit:
            f.count -= 1
        self.faults = [f for f in self.faults if f.count > 0]
        return hit

    def clear(self) -> None:
        self.faults.clear()


# Last: exchange.py imports the names above from this package.
from exchanges.paper.exchange import PaperExchange  # noqa: E402

__all__ = ["DEFAULT_INSTRUMENTS", "READ_OPS", "Fault", "FaultPlan", "PaperExchange"]

"""The one exchange interface the rest of scalper uses, with its types and the errors we act on.

Money is `Decimal` everywhere here: sizes are in contracts, prices in quote currency, exactly as the venue
states them. A venue that cannot be read raises `ExchangeUnavailable`; it never answers "no positions".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Protocol


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class OrderState(StrEnum):
    LIVE = "live"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    MMP_CANCELED = "mmp_canceled"

    @property
    def terminal(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELED, OrderState.MMP_CANCELED)


@dataclass(frozen=True, slots=True)
class Instrument:
    inst_id: str
    ct_val: Decimal  # contract value (base currency for linear swaps)
    lot_sz: Decimal
    min_sz: Decimal
    tick_sz: Decimal
    max_lever: int
    settle_ccy: str = "USDT"
    ct_type: str = "linear"

    def round_size(self, contracts: Decimal) -> Decimal:
        """Down to a multiple of lotSz; 0 when below minSz (the caller must not send it)."""
        lots = (contracts / self.lot_sz).to_integral_value(rounding=ROUND_DOWN)
        size = lots * self.lot_sz
        return size if size >= self.min_sz else Decimal(0)

    def round_price(self, price: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
        return (price / self.tick_sz).to_integral_value(rounding=rounding) * self.tick_sz


@dataclass(frozen=True, slots=True)
class Balance:
    ccy: str
    equity: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    inst_id: str
    pos_side: str  # "net", "long" or "short" (the account's position mode)
    side: str  # "long" or "short": the direction, whatever the mode
    size: Decimal  # contracts, always positive
    avg_px: Decimal
    mgn_mode: str = "isolated"
    lever: Decimal = Decimal(1)
    mark_px: Decimal | None = None
    liq_px: Decimal | None = None  # None: not applicable / not reported
    margin_ratio: Decimal | None = None
    upl: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    u_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class OrderRequest:
    inst_id: str
    cl_ord_id: str  # deterministic, letters and digits, at most 32
    side: OrderSide
    size: Decimal  # contracts, already rounded to the lot
    ord_type: OrderType = OrderType.MARKET
    price: Decimal | None = None  # limit orders only, rounded to the tick
    reduce_only: bool = False
    pos_side: str | None = None  # required in long/short mode: "long" or "short"
    td_mode: str = "isolated"


@dataclass(frozen=True, slots=True)
class Order:
    inst_id: str
    cl_ord_id: str
    ord_id: str
    side: OrderSide
    state: OrderState
    size: Decimal
    filled: Decimal = Decimal(0)
    avg_px: Decimal | None = None
    ord_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    reduce_only: bool = False
    pos_side: str = "net"
    fee: Decimal = Decimal(0)  # negative = charged (OKX convention)
    pnl: Decimal = Decimal(0)
    u_time_ms: int = 0
    algo_cl_ord_id: str = ""  # on an order a stop placed when it triggered: the stop's id (OKX algoClOrdId)


@dataclass(frozen=True, slots=True)
class StopOrder:
    """An exchange-side protective stop (OKX: a conditional algo order), reduce-only, market on trigger."""

    inst_id: str
    algo_cl_ord_id: str
    algo_id: str
    side: OrderSide
    trigger_px: Decimal
    size: Decimal
    pos_side: str = "net"
    state: str = "live"
    order_ids: tuple[str, ...] = ()  # the orders it placed when it triggered (OKX ordIdList)


class EventKind(StrEnum):
    ORDER = "order"
    POSITION = "position"
    ACCOUNT = "account"
    RECONNECTED = "reconnected"  # the private stream came back: reconcile now


@dataclass(frozen=True, slots=True)
class ExchangeEvent:
    kind: EventKind
    orders: tuple[Order, ...] = ()
    positions: tuple[ExchangePosition, ...] = ()
    balances: tuple[Balance, ...] = ()
    snapshot: bool = False  # a full snapshot (positions absent from it are flat) vs an update
    ts_ms: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class Exchange(Protocol):
    """Both venues (paper, OKX) implement this; everything else codes against it."""

    async def instruments(self) -> list[Instrument]: ...
    async def balance(self) -> list[Balance]: ...
    async def positions(self) -> list[ExchangePosition]: ...
    async def pending_orders(self) -> list[Order]: ...
    async def place_order(self, req: OrderRequest) -> Order: ...
    async def close_position(
        self, inst_id: str, cl_ord_id: str, side: OrderSide, td_mode: str, pos_side: str | None = None
    ) -> Order:
        """Close the whole position at market, sized by the venue as it executes (OKX close-position):
        nothing can change the position between a read and the send, and the order can only reduce.
        `side` is the closing order's side (sell closes a long); `pos_side` is "long"/"short" in long/short
        mode and None in net mode, where the venue closes the net position. `td_mode` is the margin mode to
        close in; where a position is per margin mode (OKX) and none is held in it, the venue closes the
        position in the mode it reports for it, so a settings change cannot strand one. The answer may be
        a bare acknowledgement (LIVE, nothing filled, no size or venue id yet): query `get_order` for more.
        Raises NothingToClose when nothing is held; otherwise the rules of `place_order` hold (one order
        per client id, DuplicateClientId while it is pending, OutcomeUnknown: query before any retry)."""
        ...

    async def get_order(self, inst_id: str, cl_ord_id: str) -> Order | None:
        """The order with this client id, or None when the exchange positively says there is none."""
        ...

    async def recent_orders(self, inst_id: str, since_ms: int | None = None) -> list[Order]:
        """Completed orders on the instrument, newest first, as far back as the venue keeps them (at least a
        day): where a record Redis lost can be found again by its client order ids. `since_ms`: every one
        updated since then, however many (paged); None: the latest page (100 at OKX)."""
        ...

    async def stop_fill(self, inst_id: str, algo_cl_ord_id: str) -> Order | None:
        """What our protective stop executed when it triggered (filled size, PnL, fee under the stop's
        client id), or None when it has placed no order."""
        ...

    async def cancel_order(self, inst_id: str, cl_ord_id: str) -> None: ...
    async def set_leverage(
        self, inst_id: str, lever: int, mgn_mode: str, pos_side: str | None = None
    ) -> None: ...
    async def place_stop(
        self,
        inst_id: str,
        algo_cl_ord_id: str,
        side: OrderSide,
        trigger_px: Decimal,
        size: Decimal,
        pos_side: str | None = None,
    ) -> StopOrder:
        """A reduce-only stop for `size` contracts, in the margin mode the venue reports for the position
        it protects (a stop in another mode would close nothing)."""
        ...

    async def move_stop(self, inst_id: str, algo_cl_ord_id: str, trigger_px: Decimal) -> StopOrder: ...
    async def resize_stop(self, inst_id: str, algo_cl_ord_id: str, size: Decimal) -> StopOrder:
        """The same live stop (same client id) for a new size: after a partial close it covers exactly what
        is held. OrderNotFound when it is not live. Resizing to the size it has changes nothing."""
        ...

    async def cancel_stop(self, inst_id: str, algo_cl_ord_id: str) -> None: ...
    async def stops(self) -> list[StopOrder]: ...
    async def find_stop(self, inst_id: str, algo_cl_ord_id: str) -> StopOrder | None:
        """The stop with this client id in any state (live, triggered, cancelled), or None when the venue
        positively says there is none: a stop id is placed at most once, so one found gone is not sent
        again."""
        ...
    def events(self) -> AsyncIterator[ExchangeEvent]: ...
    async def close(self) -> None: ...


# --- errors we act on ---


class ExchangeError(Exception):
    """A reply from the venue that refused the request. `code` is the venue's code (OKX sCode/code)."""

    def __init__(self, code: str, msg: str = ""):
        super().__init__(f"[{code}] {msg}" if msg else f"[{code}]")
        self.code = code
        self.msg = msg


class RateLimited(ExchangeError):
    """50011/50061: back off before the next request of that kind."""


class NothingToClose(ExchangeError):
    """51169: the position is already flat (a close may be reported as done)."""


class LotSizeError(ExchangeError):
    """51121/51020/51120: size not a multiple of lotSz or below minSz."""


class InsufficientMargin(ExchangeError):
    """51008: not enough margin."""


class DuplicateClientId(ExchangeError):
    """51016/50071: an order with this client id is already pending: query it, do not resend."""


class OrderNotFound(ExchangeError):
    """51603: no such order."""


class OutcomeUnknown(Exception):
    """Timeout, dropped connection, 50004/51054/51149: the request may or may not have been executed.
    The order must be queried by its client order id before any retry."""


class ExchangeUnavailable(Exception):
    """The venue could not be read. Callers must treat the state as unknown, never as flat."""

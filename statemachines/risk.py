"""Entry risk: position sizing and the entry gates, as small pure functions on Decimal.

Sizing (`position_size`): contracts = available balance × balance_share × leverage / (price × ctVal),
capped by `max_notional_per_position`, then rounded DOWN to a multiple of lotSz. A result below minSz is 0
and the entry is refused: sizing never rounds up to the minimum, which would risk more than configured.

The gates (`check_entry`) run in this fixed order and the FIRST refusal is returned (codes are stable):

     1. exchange_unknown      the exchange's positions could not be read: fail closed, no entry
     2. panic                 the operator's "close everything" is on
     3. stale_price           no price, or one older than `max_price_age_s` (age ≤ limit passes)
     4. max_positions         open positions (all non-closed states, this symbol's included) ≥ the limit
     5. one_per_symbol        the symbol already has a position (when `one_position_per_symbol`)
     6. earlier_stop_live     a protective stop of an earlier position on the symbol is not yet confirmed
                              gone at the exchange: it could close the new position
     7. size_below_min        size ≤ 0 or below minSz (what `position_size` returns as 0)
     8. size_not_lot          size is not a multiple of lotSz (the exchange would reject it: 51121)
     9. max_notional          size × ctVal × price > `max_notional_per_position`
    10. max_total_notional    open notional + this entry's > `max_total_notional`
    11. margin                notional / leverage + round-trip fees > available balance
    12. liq_too_close         the estimated liquidation price is less than `liq_distance_k` × the stop
                              distance away from the entry price
    13. daily_loss            today's (UTC) realized PnL ≤ −`daily_loss_limit`
    14. loss_streak_cooldown  the symbol's consecutive-loss cooldown has not expired (now < until)
    15. order_interval        less than `min_order_interval_s` since the last order sent

Fail-closed and operator gates come first, then data quality, then limits on what we hold, the sizing of
this entry, and the account's risk state; the order only decides which reason is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from config.settings import ExitSettings, RiskSettings
from exchanges.base import Instrument
from statemachines.guards import initial_stop
from statemachines.position import Side

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)

# Maintenance margin rate of OKX's lowest tier for BTC/ETH USDT swaps; larger positions have higher tiers.
DEFAULT_MMR = Decimal("0.004")
# OKX's regular taker fee: market entries take liquidity.
DEFAULT_FEE_RATE = Decimal("0.0005")


def dec(x: float | int | Decimal) -> Decimal:
    """A float setting as the Decimal a person reads in the config (0.1 -> 0.1, not 0.1000000000000000055)."""
    if isinstance(x, Decimal):
        return x
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


# --- sizing ---


def position_size(
    balance_available: Decimal, price: Decimal, inst: Instrument, risk: RiskSettings
) -> Decimal:
    """Contracts for a new entry: 0 when the entry must be refused (below minSz, no balance, no price)."""
    if balance_available <= 0 or price <= 0:
        return ZERO
    contract_value = price * inst.ct_val  # quote currency per contract
    contracts = balance_available * dec(risk.balance_share) * risk.leverage / contract_value
    # The cap is applied before rounding, so rounding down can only keep the size under it.
    contracts = min(contracts, risk.max_notional_per_position / contract_value)
    return inst.round_size(contracts)


def notional(size: Decimal, price: Decimal, inst: Instrument) -> Decimal:
    """Position value in the settlement currency (linear swap): contracts × ctVal × price."""
    return size * inst.ct_val * price


def estimate_liq_price(
    side: Side | str,
    price: Decimal,
    leverage: int | Decimal,
    mmr: Decimal = DEFAULT_MMR,
    fee_rate: Decimal = DEFAULT_FEE_RATE,
) -> Decimal:
    """Estimated liquidation price of a fresh isolated linear position entered at `price`.

    OKX's single-tier formula with the initial margin = notional / leverage (the paper venue's, see
    exchanges/paper/ledger.py), which reduces to a function of the entry price alone:

        long  ≈ price × (1 − 1/leverage) / (1 − mmr − fee)
        short ≈ price × (1 + 1/leverage) / (1 + mmr + fee)

    e.g. 5× long at 50000: 50000 × 0.8 / 0.9955 = 40180.8 (19.6 % away). An estimate: OKX raises mmr for
    large positions (higher tiers), which moves the real price closer.
    """
    lev = Decimal(leverage)
    if Side(side) is Side.LONG:
        return price * (ONE - ONE / lev) / (ONE - mmr - fee_rate)
    return price * (ONE + ONE / lev) / (ONE + mmr + fee_rate)


def stop_distance_pct(side: Side | str, price: float, atr: float | None, exits: ExitSettings) -> float:
    """Distance in percent from entry of the stop loss the position will get (guards.initial_stop)."""
    sign = 1 if Side(side) is Side.LONG else -1
    stop = initial_stop(sign, price, atr, exits)
    return abs(price - stop) / price * 100.0


# --- the entry gates ---


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # stable, for logs, metrics and tests
    message: str  # for a person

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class EntryContext:
    """Everything the gates look at for one candidate entry; built by the engine, then judged purely."""

    now: float
    symbol: str
    side: Side
    price: Decimal
    price_ts: float  # when the exchange produced the price (seconds)
    size: Decimal  # contracts, from position_size
    instrument: Instrument
    balance_available: Decimal
    open_positions: int  # every non-closed position (opening included), all symbols
    open_positions_symbol: int  # the same, this symbol only
    open_notional: Decimal  # notional of those positions, settlement currency
    daily_pnl: Decimal  # today's (UTC) realized PnL net of fees; negative = loss
    loss_streak: int  # consecutive losing closes of this symbol
    cooldown_until: float  # this symbol's loss-streak cooldown end (0 = none)
    last_order_ts: float  # last order sent, any symbol (0 = never)
    exchange_state_known: bool  # False when the last read of the exchange failed: fail closed
    panic: bool
    stop_distance_pct: float  # from stop_distance_pct() / guards.initial_stop
    liq_price: Decimal  # from estimate_liq_price(); 0 for a 1× long (never liquidated)
    fee_rate: Decimal = DEFAULT_FEE_RATE  # taker fee rate, fraction of notional per side
    # Protective stops of the symbol's earlier (now closed) positions not yet confirmed gone at the exchange
    # (workers/protection.py): known without asking the exchange.
    earlier_stops: tuple[str, ...] = ()

    @property
    def notional(self) -> Decimal:
        return notional(self.size, self.price, self.instrument)


Gate = Callable[[EntryContext, RiskSettings], Refusal | None]


def _exchange_unknown(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if not ctx.exchange_state_known:
        return Refusal("exchange_unknown", "exchange state unknown (last read failed): fail closed")
    return None


def _panic(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.panic:
        return Refusal("panic", "panic is on")
    return None


def _stale_price(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.price <= 0:
        return Refusal("stale_price", f"no valid price ({ctx.price})")
    age = ctx.now - ctx.price_ts
    if age > risk.max_price_age_s:
        return Refusal("stale_price", f"price is {age:.1f}s old (max {risk.max_price_age_s}s)")
    return None


def _max_positions(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.open_positions >= risk.max_positions:
        return Refusal("max_positions", f"{ctx.open_positions} positions open (max {risk.max_positions})")
    return None


def _one_per_symbol(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if risk.one_position_per_symbol and ctx.open_positions_symbol > 0:
        return Refusal("one_per_symbol", f"{ctx.symbol} already has a position")
    return None


def _earlier_stop_live(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.earlier_stops:
        return Refusal(
            "earlier_stop_live",
            f"{ctx.symbol}: protective stop(s) of earlier positions not yet confirmed gone "
            f"({', '.join(ctx.earlier_stops)})",
        )
    return None


def _size(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    inst = ctx.instrument
    if ctx.size <= 0 or ctx.size < inst.min_sz:
        return Refusal("size_below_min", f"size {ctx.size} is below minSz {inst.min_sz}")
    if ctx.size % inst.lot_sz != 0:
        return Refusal("size_not_lot", f"size {ctx.size} is not a multiple of lotSz {inst.lot_sz}")
    return None


def _max_notional(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    value = ctx.notional
    if value > risk.max_notional_per_position:
        return Refusal("max_notional", f"notional {value} > max {risk.max_notional_per_position}")
    return None


def _max_total_notional(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    total = ctx.open_notional + ctx.notional
    if total > risk.max_total_notional:
        return Refusal("max_total_notional", f"total notional {total} > max {risk.max_total_notional}")
    return None


def _margin(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    value = ctx.notional
    # Round-trip fees: the closing fee also comes out of this isolated margin.
    needed = value / risk.leverage + 2 * value * ctx.fee_rate
    if needed > ctx.balance_available:
        return Refusal("margin", f"needs {needed:.4f} margin+fees, {ctx.balance_available} available")
    return None


def _liq_too_close(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.price <= 0:  # refused as stale_price already; here only so all_refusals cannot divide by 0
        return Refusal("liq_too_close", "no valid price")
    # A 1× long's liquidation price is 0: 100 % away, which passes.
    liq_dist = abs(ctx.price - ctx.liq_price) / ctx.price * HUNDRED
    needed = dec(risk.liq_distance_k) * dec(ctx.stop_distance_pct)
    # No stop distance means the stop is unknown: fail closed.
    if ctx.stop_distance_pct <= 0 or liq_dist < needed:
        return Refusal(
            "liq_too_close",
            f"liquidation {liq_dist:.3f}% away, needs {needed:.3f}% "
            f"({risk.liq_distance_k} × stop {ctx.stop_distance_pct:.3f}%)",
        )
    return None


def _daily_loss(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.daily_pnl <= -risk.daily_loss_limit:
        return Refusal("daily_loss", f"realized {ctx.daily_pnl} today, limit −{risk.daily_loss_limit}")
    return None


def _loss_streak_cooldown(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    if ctx.now < ctx.cooldown_until:
        return Refusal(
            "loss_streak_cooldown",
            f"{ctx.symbol}: {ctx.loss_streak} losses in a row, cooling down "
            f"{ctx.cooldown_until - ctx.now:.0f}s more",
        )
    return None


def _order_interval(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    since = ctx.now - ctx.last_order_ts
    if ctx.last_order_ts and since < risk.min_order_interval_s:
        return Refusal("order_interval", f"last order {since:.2f}s ago (min {risk.min_order_interval_s}s)")
    return None


# The order of the module docstring; a test checks the two agree.
GATES: tuple[tuple[str, Gate], ...] = (
    ("exchange_unknown", _exchange_unknown),
    ("panic", _panic),
    ("stale_price", _stale_price),
    ("max_positions", _max_positions),
    ("one_per_symbol", _one_per_symbol),
    ("earlier_stop_live", _earlier_stop_live),
    ("size", _size),  # size_below_min, size_not_lot
    ("max_notional", _max_notional),
    ("max_total_notional", _max_total_notional),
    ("margin", _margin),
    ("liq_too_close", _liq_too_close),
    ("daily_loss", _daily_loss),
    ("loss_streak_cooldown", _loss_streak_cooldown),
    ("order_interval", _order_interval),
)

REFUSAL_CODES: tuple[str, ...] = (
    "exchange_unknown",
    "panic",
    "stale_price",
    "max_positions",
    "one_per_symbol",
    "earlier_stop_live",
    "size_below_min",
    "size_not_lot",
    "max_notional",
    "max_total_notional",
    "margin",
    "liq_too_close",
    "daily_loss",
    "loss_streak_cooldown",
    "order_interval",
)


def check_entry(ctx: EntryContext, risk: RiskSettings) -> Refusal | None:
    """None when every gate passes, else the first refusal in the documented order."""
    for _, gate in GATES:
        refusal = gate(ctx, risk)
        if refusal is not None:
            return refusal
    return None


def all_refusals(ctx: EntryContext, risk: RiskSettings) -> list[Refusal]:
    """Every gate's refusal, in order (for the dashboard and logs: why, all of it)."""
    return [r for _, gate in GATES if (r := gate(ctx, risk)) is not None]


def streak_after_close(
    streak: int, cooldown_until: float, net_pnl: Decimal, ts: float, risk: RiskSettings
) -> tuple[int, float]:
    """A symbol's loss streak and cooldown after a close of `net_pnl` at `ts`. A loss extends the streak;
    reaching `loss_streak_limit` sets the cooldown to `ts + loss_streak_cooldown_s` (each further loss before
    a win sets it again from its own time). A win resets the streak (a running cooldown still runs out);
    exactly 0 changes neither. The live risk memory (Redis) and the backtest's (memory) both use this."""
    if net_pnl < 0:
        streak += 1
        if streak >= risk.loss_streak_limit:
            cooldown_until = max(cooldown_until, ts + risk.loss_streak_cooldown_s)
    elif net_pnl > 0:
        streak = 0
    return streak, cooldown_until

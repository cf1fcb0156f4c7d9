"""OKX arithmetic for linear (USDT-margined) swaps in isolated margin: pure functions on Decimal, no I/O.

Notation: `sz` contracts of `ctVal` base currency each, so q = sz·ctVal is the position in base currency
(BTC) and every amount of money is in the settlement currency (USDT); dir = +1 long, −1 short.

    notional            = q · px
    initial margin      = q · px / lever               isolated: fixed at the fill price, not re-marked
    fee                 = −(q · px · rate)             negative = charged, positive = rebate (OKX sign);
                                                       taker rate when the order takes, maker when it rests
    realized PnL        = (exit − avgPx) · q · dir     on the closed part only
    unrealized PnL      = (mark − avgPx) · q · dir     (OKX `upl`)
    margin ratio        = (margin + upl) / (q · mark · (mmr + f))
                          OKX's isolated-margin `mgnRatio` for USDT-margined contracts ("Tiered maintenance
                          margin ratio rules", help center): forced liquidation when it falls to 1 (100 %).
                          mmr = the position tier's maintenance margin rate, f = the taker fee rate (the
                          liquidation fee OKX reserves).

Liquidation price: the mark P at which the margin ratio reaches exactly 1, E = avgPx.

    long:   margin + (P − E)·q = q·P·(mmr + f)
            margin − q·E       = q·P·(mmr + f − 1)
            P = (margin − q·E) / (q·(mmr + f − 1))
    short:  margin + (E − P)·q = q·P·(mmr + f)
            margin + q·E       = q·P·(mmr + f + 1)
            P = (margin + q·E) / (q·(mmr + f + 1))

i.e. OKX's estimated liquidation price for isolated linear swaps, long
"(margin − ctVal·sz·avgPx) / (ctVal·sz·(mmr + feeRate − 1))", short
"(margin + ctVal·sz·avgPx) / (ctVal·sz·(mmr + feeRate + 1))". The caller passes the mmr of the position's
tier (exchanges/tiers.py: OKX raises it as the position grows, so a larger position is liquidated sooner).

On liquidation the whole isolated margin is lost: the PnL at the liquidation mark plus a liquidation
penalty (OKX `liqPenalty`) that takes what the margin had left; a gap beyond the bankruptcy price is
absorbed by the insurance fund, so the loss never exceeds the margin.

The second half holds OKX's order rules as pure checks that raise the venue's error codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal

from exchanges.base import (
    DuplicateClientId,
    ExchangeError,
    InsufficientMargin,
    LotSizeError,
    NothingToClose,
    OrderNotFound,
    RateLimited,
)

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10000)
MONEY = Decimal("1E-12")  # margins are kept to 12 decimals, so free cash + margins add up without drift


@dataclass(frozen=True, slots=True)
class Pos:
    """One isolated position's money state. `realized_pnl` = Σ pnl + Σ fee over its life (OKX realizedPnl)."""

    side: str  # "long" | "short"
    size: Decimal  # contracts, > 0
    avg_px: Decimal
    margin: Decimal
    lever: Decimal
    realized_pnl: Decimal = ZERO
    fee: Decimal = ZERO

    @property
    def dir(self) -> int:
        return 1 if self.side == "long" else -1


@dataclass(frozen=True, slots=True)
class Fill:
    """What one fill did: the position after it and the money that moved."""

    pos: Pos | None  # None: flat after the fill
    closed: Decimal  # contracts of the old position closed
    opened: Decimal  # contracts opened (increase, new position or the far side of a flip)
    pnl: Decimal  # realized PnL of the closed part, before fees
    fee: Decimal  # negative = charged
    margin_released: Decimal
    margin_added: Decimal

    @property
    def cash_delta(self) -> Decimal:
        """Change of the account's free cash: margin comes back with the PnL, new margin and fees leave."""
        return self.margin_released + self.pnl + self.fee - self.margin_added


def notional(sz: Decimal, ct_val: Decimal, px: Decimal) -> Decimal:
    return sz * ct_val * px


def money(x: Decimal) -> Decimal:
    """`x` cut to 12 decimals when it has more (a division by the leverage or a pro-rata share)."""
    return x.quantize(MONEY) if x.as_tuple().exponent < -12 else x  # type: ignore[operator]


def initial_margin(sz: Decimal, ct_val: Decimal, px: Decimal, lever: Decimal) -> Decimal:
    return money(notional(sz, ct_val, px) / lever)


def fee(sz: Decimal, ct_val: Decimal, px: Decimal, rate: Decimal) -> Decimal:
    """Negative when charged (OKX sign); a negative maker rate gives a positive rebate."""
    return -(notional(sz, ct_val, px) * rate)


def pnl(side: str, entry: Decimal, exit_px: Decimal, sz: Decimal, ct_val: Decimal) -> Decimal:
    return (exit_px - entry) * sz * ct_val * (1 if side == "long" else -1)


def upl(pos: Pos, mark: Decimal, ct_val: Decimal) -> Decimal:
    return pnl(pos.side, pos.avg_px, mark, pos.size, ct_val)


def liq_px(pos: Pos, ct_val: Decimal, mmr: Decimal, fee_rate: Decimal) -> Decimal | None:
    """Estimated liquidation mark price (see the module docstring); None when it would not be positive."""
    q = pos.size * ct_val
    if pos.side == "long":
        px = (pos.margin - q * pos.avg_px) / (q * (mmr + fee_rate - ONE))
    else:
        px = (pos.margin + q * pos.avg_px) / (q * (mmr + fee_rate + ONE))
    return px if px > 0 else None


def margin_ratio(pos: Pos, mark: Decimal, ct_val: Decimal, mmr: Decimal, fee_rate: Decimal) -> Decimal | None:
    """OKX isolated mgnRatio: liquidation at or below 1 (None when no maintenance is required at all)."""
    required = pos.size * ct_val * mark * (mmr + fee_rate)
    return (pos.margin + upl(pos, mark, ct_val)) / required if required else None


def liquidated(pos: Pos, mark: Decimal, ct_val: Decimal, mmr: Decimal, fee_rate: Decimal) -> bool:
    px = liq_px(pos, ct_val, mmr, fee_rate)
    if px is None:
        return False
    return mark <= px if pos.side == "long" else mark >= px


def liquidation(pos: Pos, mark: Decimal, ct_val: Decimal) -> tuple[Decimal, Decimal]:
    """(pnl, penalty) of a full liquidation at `mark`: together exactly −margin (the margin is lost)."""
    loss = max(upl(pos, mark, ct_val), -pos.margin)  # beyond bankruptcy: the insurance fund's share
    return loss, -(pos.margin + loss)


def slipped(px: Decimal, buy: bool, bps: Decimal) -> Decimal:
    """A taker's price after slippage: worse by `bps` basis points (higher for a buy, lower for a sell)."""
    return px * (ONE + bps / BPS) if buy else px * (ONE - bps / BPS)


def quote_around(px: Decimal, spread_bps: Decimal) -> tuple[Decimal, Decimal]:
    """(bid, ask) for a price that came without them (a bar, a trade): `spread_bps` wide, centred on it."""
    half = px * spread_bps / (2 * BPS)
    return px - half, px + half


def closable(pos: Pos | None, buy: bool) -> Decimal:
    """Contracts a buy (sell) can close: the size of an opposite position, else 0."""
    if pos is None or (pos.side == "long") == buy:
        return ZERO
    return pos.size


def apply_fill(
    pos: Pos | None,
    *,
    buy: bool,
    sz: Decimal,
    px: Decimal,
    ct_val: Decimal,
    lever: Decimal,
    fee_rate: Decimal,
    may_open: bool = True,
) -> Fill:
    """Apply a fill of `sz` contracts at `px` to `pos` (one position key: net, or one side of long/short).

    A fill against the position closes first (released margin pro rata, PnL at avgPx); the rest opens or
    increases at `px` with margin q·px/lever. With `may_open` False (reduce-only, or a long/short closing
    order) the caller has capped `sz` at what can be closed, so a reduce-only fill never opens or flips.
    The fee is split between the closed and the opened part so each position's realizedPnl carries its own.
    """
    total_fee = fee(sz, ct_val, px, fee_rate)
    close_sz = min(sz, closable(pos, buy))
    open_sz = sz - close_sz
    if open_sz and not may_open:
        raise ValueError(f"fill of {sz} would open {open_sz} on a closing-only order")
    fee_close = total_fee * close_sz / sz
    fee_open = total_fee - fee_close
    realized = ZERO
    released = ZERO
    after = pos
    if pos is not None and close_sz:
        realized = pnl(pos.side, pos.avg_px, px, close_sz, ct_val)
        left = pos.size - close_sz
        # Remaining margin computed directly, so released + remaining is exactly the old margin.
        kept = money(pos.margin * left / pos.size)
        released = pos.margin - kept
        after = None
        if left:
            after = replace(
                pos,
                size=left,
                margin=kept,
                realized_pnl=pos.realized_pnl + realized + fee_close,
                fee=pos.fee + fee_close,
            )
    added = ZERO
    if open_sz:
        added = initial_margin(open_sz, ct_val, px, lever)
        if after is None:
            after = Pos(
                side="long" if buy else "short",
                size=open_sz,
                avg_px=px,
                margin=added,
                lever=lever,
                realized_pnl=fee_open,
                fee=fee_open,
            )
        else:
            size = after.size + open_sz
            after = replace(
                after,
                size=size,
                avg_px=(after.avg_px * after.size + px * open_sz) / size,
                margin=after.margin + added,
                realized_pnl=after.realized_pnl + fee_open,
                fee=after.fee + fee_open,
            )
    return Fill(
        pos=after,
        closed=close_sz,
        opened=open_sz,
        pnl=realized,
        fee=total_fee,
        margin_released=released,
        margin_added=added,
    )


def relever(pos: Pos, ct_val: Decimal, lever: Decimal) -> Pos:
    """The position with its isolated margin re-set for a new leverage (q·avgPx/lever)."""
    return replace(pos, lever=lever, margin=initial_margin(pos.size, ct_val, pos.avg_px, lever))


def fmt(x: Decimal) -> str:
    """Plain notation without trailing zeros for Redis and events: "10" and "2.5", never "1E+1" or "2.500"."""
    return format(x.normalize(), "f")


# --- OKX order rules: pure checks raising the venue's codes ---

_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")  # clOrdId / algoClOrdId
_ERRORS: dict[str, type[ExchangeError]] = {
    "51008": InsufficientMargin,
    "51121": LotSizeError,
    "51020": LotSizeError,
    "51120": LotSizeError,
    "51016": DuplicateClientId,
    "50071": DuplicateClientId,
    "51169": NothingToClose,
    "51603": OrderNotFound,
    "50011": RateLimited,
    "50061": RateLimited,
}


def venue_error(code: str, msg: str = "") -> ExchangeError:
    """The base error class a venue reply with this code maps to."""
    return _ERRORS.get(code, ExchangeError)(code, msg)


def check_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not _ID.match(value):
        raise ExchangeError("51000", f"Parameter {name} error: 1-32 letters and digits")


def check_px(px: Decimal, tick_sz: Decimal, name: str) -> None:
    if px <= 0 or px % tick_sz:
        raise ExchangeError("51000", f"Parameter {name} error: a positive multiple of tickSz {tick_sz}")


def check_size(size: Decimal, lot_sz: Decimal, min_sz: Decimal) -> None:
    if size <= 0 or size % lot_sz:
        raise LotSizeError("51121", f"Order quantity must be a multiple of the lot size {lot_sz}.")
    if size < min_sz:
        raise LotSizeError("51020", f"Your order should meet or exceed the minimum order amount {min_sz}.")


def resolve_pos_side(pos_mode: str, pos_side: str | None) -> str:
    """Net mode: "net" (posSide omitted or "net"); long/short mode: posSide is required."""
    if pos_mode == "net":
        if pos_side not in (None, "", "net"):
            raise ExchangeError("51000", "Parameter posSide error: net mode takes 'net' or nothing")
        return "net"
    if pos_side not in ("long", "short"):
        raise ExchangeError("51000", "Parameter posSide error: long/short mode needs 'long' or 'short'")
    return pos_side


def closing_only(buy: bool, reduce_only: bool, pos_side: str) -> bool:
    """Can the order only close? Net mode: when reduce-only; long/short: sell-long and buy-short
    (reduceOnly itself only applies in net mode)."""
    return reduce_only if pos_side == "net" else (pos_side == "long") != buy


def check_stop_trigger(sell: bool, trigger_px: Decimal, last: Decimal | None) -> None:
    """A stop-loss trigger must lie beyond the last price (below it for a sell), or it would fire at once."""
    if last is None:
        return
    if sell and trigger_px >= last:
        raise ExchangeError("51280", "SL trigger price cannot be higher than the last price.")
    if not sell and trigger_px <= last:
        raise ExchangeError("51278", "SL trigger price cannot be lower than the last price.")

"""ledger.py against hand-computed OKX linear-swap numbers (the arithmetic is written out in comments)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchanges.base import ExchangeError, LotSizeError, NothingToClose
from exchanges.paper import ledger as L
from exchanges.paper.ledger import Pos

CT_BTC = D("0.01")  # BTC-USDT-SWAP: one contract is 0.01 BTC
TAKER = D("0.0005")
MAKER = D("0.0002")
MMR = D("0.004")
CENT = D("0.01")


def opened(buy: bool, sz: str = "10", px: str = "50000", lever: str = "10") -> Pos:
    fill = L.apply_fill(None, buy=buy, sz=D(sz), px=D(px), ct_val=CT_BTC, lever=D(lever), fee_rate=TAKER)
    assert fill.pos is not None
    return fill.pos


# --- fees, margin, PnL ---


def test_long_open_and_close_by_hand() -> None:
    # Buy 10 contracts at 50,000: q = 10 × 0.01 = 0.1 BTC, notional = 0.1 × 50,000 = 5,000 USDT.
    # Margin at 10x = 5,000 / 10 = 500. Taker fee = 5,000 × 0.0005 = 2.5, reported as -2.5.
    fill = L.apply_fill(None, buy=True, sz=D(10), px=D(50000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER)
    assert fill.pos == Pos("long", D(10), D(50000), D(500), D(10), realized_pnl=D("-2.5"), fee=D("-2.5"))
    assert (fill.fee, fill.margin_added, fill.pnl) == (D("-2.5"), D(500), 0)
    assert fill.cash_delta == D("-502.5")  # margin and fee leave free cash
    # Sell them at 51,000: PnL = (51,000 − 50,000) × 0.1 × (+1) = +100.
    # Fee = 0.1 × 51,000 × 0.0005 = 2.55 → -2.55. Margin 500 comes back: cash +500 +100 −2.55 = +597.45.
    close = L.apply_fill(fill.pos, buy=False, sz=D(10), px=D(51000), ct_val=CT_BTC, lever=D(10),
                         fee_rate=TAKER)
    assert close.pos is None
    assert (close.pnl, close.fee, close.margin_released) == (D(100), D("-2.55"), D(500))
    assert close.cash_delta == D("597.45")
    # Round trip net: 100 − 2.5 − 2.55 = 94.95.
    assert fill.cash_delta + close.cash_delta == D("94.95")


def test_short_open_and_close_by_hand() -> None:
    # Sell 10 at 50,000: same 500 margin and -2.5 fee as the long.
    pos = opened(buy=False)
    assert (pos.side, pos.margin, pos.fee) == ("short", D(500), D("-2.5"))
    # Buy back at 49,000: PnL = (49,000 − 50,000) × 0.1 × (−1) = +100; fee = 0.1 × 49,000 × 0.0005 = 2.45.
    close = L.apply_fill(pos, buy=True, sz=D(10), px=D(49000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER)
    assert (close.pos, close.pnl, close.fee) == (None, D(100), D("-2.45"))
    # A short loses when the price rises: back at 50,500 → (50,500 − 50,000) × 0.1 × (−1) = −50.
    assert L.pnl("short", D(50000), D(50500), D(10), CT_BTC) == D(-50)


def test_maker_fee_and_rebate() -> None:
    # ETH-USDT-SWAP, ctVal 0.1: 5 contracts at 3,000 = 0.5 ETH = 1,500 USDT; maker 0.02 % → -0.30.
    assert L.fee(D(5), D("0.1"), D(3000), MAKER) == D("-0.3")
    # A negative maker rate is a rebate: reported positive.
    assert L.fee(D(5), D("0.1"), D(3000), D("-0.0001")) == D("0.15")


def test_partial_close_releases_margin_pro_rata() -> None:
    # Long 10 @ 50,000 with 500 margin; close 4 at 52,000: PnL = 2,000 × 0.04 BTC = 80,
    # released margin = 500 × 4/10 = 200, leaving 6 contracts with 300 margin at the same avgPx.
    pos = opened(buy=True)
    fill = L.apply_fill(pos, buy=False, sz=D(4), px=D(52000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER)
    assert fill.pos is not None
    assert (fill.pos.size, fill.pos.margin, fill.pos.avg_px) == (D(6), D(300), D(50000))
    assert (fill.pnl, fill.margin_released) == (D(80), D(200))
    # Close fee = 0.04 × 52,000 × 0.0005 = 1.04; realizedPnl = −2.5 (open fee) + 80 − 1.04 = 76.46.
    assert fill.pos.realized_pnl == D("76.46")


def test_increase_averages_the_entry() -> None:
    # 10 @ 50,000 plus 10 @ 51,000: avgPx = (10×50,000 + 10×51,000)/20 = 50,500; margin 500 + 510 = 1,010.
    pos = opened(buy=True)
    fill = L.apply_fill(pos, buy=True, sz=D(10), px=D(51000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER)
    assert fill.pos is not None
    assert (fill.pos.size, fill.pos.avg_px, fill.pos.margin) == (D(20), D(50500), D(1010))


def test_net_mode_flip_splits_close_and_open() -> None:
    # Long 10 @ 50,000; a plain (not reduce-only) sell of 15 @ 49,000 closes 10 and opens a 5 short.
    # Closed: PnL = −1,000 × 0.1 = −100, margin 500 back. Opened: 5 × 0.01 × 49,000 / 10 = 245 margin.
    # Fee = 15 × 0.01 × 49,000 × 0.0005 = 3.675, split 10:5 → −2.45 on the close, −1.225 on the new short.
    pos = opened(buy=True)
    fill = L.apply_fill(pos, buy=False, sz=D(15), px=D(49000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER)
    assert (fill.closed, fill.opened, fill.pnl, fill.fee) == (D(10), D(5), D(-100), D("-3.675"))
    assert fill.pos == Pos("short", D(5), D(49000), D(245), D(10), realized_pnl=D("-1.225"), fee=D("-1.225"))
    # cash: +500 − 100 − 3.675 − 245 = 151.325
    assert fill.cash_delta == D("151.325")


def test_closing_only_fill_cannot_open() -> None:
    pos = opened(buy=True)
    with pytest.raises(ValueError):
        L.apply_fill(pos, buy=False, sz=D(11), px=D(50000), ct_val=CT_BTC, lever=D(10), fee_rate=TAKER,
                     may_open=False)


def test_slippage() -> None:
    # 10 bps on a 50,000 ask: 50,000 × 1.001 = 50,050; on a 49,990 bid: 49,990 × 0.999 = 49,940.01.
    assert L.slipped(D(50000), True, D(10)) == D(50050)
    assert L.slipped(D(49990), False, D(10)) == D("49940.01")


# --- liquidation price ---


def test_long_liquidation_price_by_hand() -> None:
    # Long 10 @ 50,000, 10x: margin 500, q = 0.1, mmr 0.4 %, taker 0.05 %.
    # liqPx = (margin − q·E) / (q·(mmr + f − 1)) = (500 − 5,000) / (0.1 × (0.004 + 0.0005 − 1))
    #       = −4,500 / (0.1 × −0.9955) = −4,500 / −0.09955 = 45,203.4153…
    pos = opened(buy=True)
    px = L.liq_px(pos, CT_BTC, MMR, TAKER)
    assert px is not None and px.quantize(CENT) == D("45203.42")
    # Check: at that mark the margin ratio is exactly 1:
    # upl = (45,203.4154 − 50,000) × 0.1 = −479.6585 → margin + upl = 20.3415;
    # maintenance + fee = 0.1 × 45,203.4154 × 0.0045 = 20.3415.
    ratio = L.margin_ratio(pos, px, CT_BTC, MMR, TAKER)
    assert ratio is not None and ratio.quantize(D("1E-20")) == 1
    assert L.liquidated(pos, px, CT_BTC, MMR, TAKER)
    assert not L.liquidated(pos, D("45203.5"), CT_BTC, MMR, TAKER)
    assert L.liquidated(pos, D("45203.4"), CT_BTC, MMR, TAKER)


def test_short_liquidation_price_by_hand() -> None:
    # Short 10 @ 50,000, 10x: liqPx = (margin + q·E) / (q·(mmr + f + 1)) = (500 + 5,000) / (0.1 × 1.0045)
    #       = 5,500 / 0.10045 = 54,753.6088…
    pos = opened(buy=False)
    px = L.liq_px(pos, CT_BTC, MMR, TAKER)
    assert px is not None and px.quantize(CENT) == D("54753.61")
    # Check: upl = (50,000 − 54,753.6088) × 0.1 = −475.3609 → margin + upl = 24.6391;
    # 0.1 × 54,753.6088 × 0.0045 = 24.6391.
    ratio = L.margin_ratio(pos, px, CT_BTC, MMR, TAKER)
    assert ratio is not None and ratio.quantize(D("1E-20")) == 1
    assert not L.liquidated(pos, D("54753.6"), CT_BTC, MMR, TAKER)
    assert L.liquidated(pos, D("54753.7"), CT_BTC, MMR, TAKER)


def test_one_x_long_has_no_liquidation_price() -> None:
    # 1x long: margin = q·E, so the numerator is 0: the mark would have to reach 0.
    assert L.liq_px(opened(buy=True, lever="1"), CT_BTC, MMR, TAKER) is None
    assert L.margin_ratio(opened(buy=True), D(50000), CT_BTC, D(0), D(0)) is None


def test_liquidation_loses_exactly_the_margin() -> None:
    pos = opened(buy=True)
    px = L.liq_px(pos, CT_BTC, MMR, TAKER)
    assert px is not None
    loss, penalty = L.liquidation(pos, px, CT_BTC)
    # At 45,203.4154: PnL −479.6585, penalty −20.3415; together −500.
    assert loss.quantize(D("0.0001")) == D("-479.6585")
    assert penalty.quantize(D("0.0001")) == D("-20.3415")
    assert loss + penalty == -pos.margin
    # A gap far past bankruptcy: the loss is capped at the margin, the penalty is 0.
    assert L.liquidation(pos, D(40000), CT_BTC) == (D(-500), 0)


# --- order rules ---


def test_order_rules() -> None:
    L.check_id("a1B2" * 8, "clOrdId")
    for bad in ("", "a" * 33, "has-dash", "under_score", "sp ace"):
        with pytest.raises(ExchangeError) as err:
            L.check_id(bad, "clOrdId")
        assert err.value.code == "51000"
    with pytest.raises(LotSizeError) as lot:
        L.check_size(D("0.15"), D("0.1"), D("0.1"))
    assert lot.value.code == "51121"
    with pytest.raises(LotSizeError) as small:
        L.check_size(D("0.5"), D("0.1"), D(1))
    assert small.value.code == "51020"
    assert L.resolve_pos_side("net", None) == "net"
    assert L.resolve_pos_side("long_short", "short") == "short"
    for mode, side in (("long_short", None), ("net", "long")):
        with pytest.raises(ExchangeError):
            L.resolve_pos_side(mode, side)
    assert isinstance(L.venue_error("51169"), NothingToClose)
    assert type(L.venue_error("12345")) is ExchangeError
    assert L.fmt(D("1E+1")) == "10"


# --- properties ---

sizes = st.integers(min_value=1, max_value=500).map(lambda n: D(n) / 10)
prices = st.integers(min_value=1_000_0, max_value=100_000_0).map(lambda n: D(n) / 10)


@given(
    first=st.tuples(st.booleans(), sizes, prices),
    second=st.tuples(st.booleans(), sizes, prices),
    lever=st.integers(min_value=1, max_value=100),
)
def test_money_is_conserved(first: tuple[bool, D, D], second: tuple[bool, D, D], lever: int) -> None:
    """Whatever two fills do, free cash + margin moves by PnL + fees (to Decimal's 28 digits)."""
    pos = None
    for buy, sz, px in (first, second):
        before = pos.margin if pos else D(0)
        fill = L.apply_fill(pos, buy=buy, sz=sz, px=px, ct_val=CT_BTC, lever=D(lever), fee_rate=TAKER)
        after = fill.pos.margin if fill.pos else D(0)
        assert abs(fill.cash_delta + (after - before) - (fill.pnl + fill.fee)) < D("1E-15")
        assert fill.closed + fill.opened == sz
        pos = fill.pos


@given(buy_first=st.booleans(), size=sizes, close=sizes, px=prices)
def test_closing_only_never_flips(buy_first: bool, size: D, close: D, px: D) -> None:
    pos = opened(buy=buy_first, sz=str(size))
    sz = min(close, L.closable(pos, not buy_first))
    fill = L.apply_fill(pos, buy=not buy_first, sz=sz, px=px, ct_val=CT_BTC, lever=D(10), fee_rate=TAKER,
                        may_open=False)
    assert fill.opened == 0
    assert fill.pos is None or fill.pos.side == pos.side

"""Entry sizing and the entry gates: hand-computed sizes, every gate at its boundary, the order of gates."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from config.settings import ExitSettings, RiskSettings
from exchanges.base import Instrument
from exchanges.paper import ledger
from statemachines import guards, risk
from statemachines.position import Side
from statemachines.risk import EntryContext, check_entry, estimate_liq_price, position_size

D = Decimal
NOW = 1_700_000_000.0
BTC = Instrument(
    inst_id="BTC-USDT-SWAP", ct_val=D("0.01"), lot_sz=D("0.01"), min_sz=D("0.01"), tick_sz=D("0.1"),
    max_lever=100,
)  # fmt: skip
# ETH as some OKX records have it: whole contracts only.
ETH = Instrument(
    inst_id="ETH-USDT-SWAP", ct_val=D("0.1"), lot_sz=D("1"), min_sz=D("1"), tick_sz=D("0.01"), max_lever=100
)
RISK = RiskSettings()  # leverage 5, balance share 0.1, 5000 per position, 20000 in total, limit 200 a day


# --- sizing ---


@pytest.mark.parametrize(
    ("balance", "price", "expected"),
    [
        # 1000 × 0.1 × 5 = 500 USDT of notional; a contract is 0.01 BTC = 500 USDT -> 1 contract
        ("1000", "50000", "1.00"),
        # 617.28 / 432.105 = 1.42854… -> down to the lot: 1.42 (never up to 1.43)
        ("1234.56", "43210.5", "1.42"),
        # 0.5 / 500 = 0.001 contracts: below minSz 0.01 -> 0, never rounded up to the minimum
        ("1", "50000", "0"),
        # exactly the minimum: 5 / 500 = 0.01
        ("10", "50000", "0.01"),
        # just under it: 9.99 × 0.5 / 500 = 0.00999
        ("9.99", "50000", "0"),
    ],
)
def test_position_size_btc_hand_computed(balance: str, price: str, expected: str) -> None:
    size = position_size(D(balance), D(price), BTC, RISK)
    assert size == D(expected)
    assert size % BTC.lot_sz == 0


def test_position_size_whole_contracts() -> None:
    # a contract is 0.1 ETH × 3000 = 300 USDT; 500 / 300 = 1.67 -> 1
    assert position_size(D("1000"), D("3000"), ETH, RISK) == D(1)
    # 2999.99 × 0.5 = 1499.995 / 300 = 4.9999… -> 4, not 5
    assert position_size(D("2999.99"), D("3000"), ETH, RISK) == D(4)
    # 250 / 300 = 0.83 contracts: below minSz 1 -> 0 (refused), not rounded up to 1
    assert position_size(D("500"), D("3000"), ETH, RISK) == 0


def test_position_size_capped_by_max_notional() -> None:
    # 200000 × 0.5 = 100000 USDT wanted, capped at 5000 -> 10 contracts of 500
    assert position_size(D("200000"), D("50000"), BTC, RISK) == D("10.00")
    # the cap at an awkward price: 5000 / 432.105 = 11.5712… -> 11.57, whose notional stays under the cap
    size = position_size(D("200000"), D("43210.5"), BTC, RISK)
    assert size == D("11.57")
    assert risk.notional(size, D("43210.5"), BTC) == D("4999.45485") <= RISK.max_notional_per_position
    assert position_size(D("200000"), D("3000"), ETH, RISK) == D(16)  # 5000 / 300 = 16.67


def test_position_size_uses_leverage_and_share_exactly() -> None:
    r = RiskSettings(leverage=20, balance_share=0.3, protective_stop_pct=3)
    # 1000 × 0.3 × 20 = 6000 wanted, capped at 5000 -> 10; with a higher cap 12 contracts
    assert position_size(D("1000"), D("50000"), BTC, r) == D("10.00")
    r2 = RiskSettings(leverage=20, balance_share=0.3, max_notional_per_position=D("100000"),
                      protective_stop_pct=3)  # fmt: skip
    assert position_size(D("1000"), D("50000"), BTC, r2) == D("12.00")


@pytest.mark.parametrize(("balance", "price"), [("0", "50000"), ("-5", "50000"), ("1000", "0")])
def test_position_size_zero_without_balance_or_price(balance: str, price: str) -> None:
    assert position_size(D(balance), D(price), BTC, RISK) == 0


# --- liquidation estimate and stop distance ---


def test_liq_estimate_hand_computed() -> None:
    # long 5×: 50000 × 0.8 / (1 − 0.004 − 0.0005); short 5×: 50000 × 1.2 / (1 + 0.004 + 0.0005)
    assert estimate_liq_price(Side.LONG, D(50000), 5) == D(40000) / D("0.9955")
    assert estimate_liq_price(Side.SHORT, D(50000), 5) == D(60000) / D("1.0045")
    # with no maintenance margin and no fee it is the textbook price ± 1/leverage
    assert estimate_liq_price("long", D(50000), 10, mmr=D(0), fee_rate=D(0)) == D(45000)
    assert estimate_liq_price("short", D(50000), 10, mmr=D(0), fee_rate=D(0)) == D(55000)
    assert estimate_liq_price("long", D(50000), 1) == 0  # a 1× long cannot be liquidated


@pytest.mark.parametrize(("side", "lever"), [("long", 5), ("short", 5), ("long", 50), ("short", 100)])
def test_liq_estimate_matches_the_paper_venue(side: str, lever: int) -> None:
    """The same formula as exchanges/paper/ledger.py, for a fresh position with margin = notional / lever."""
    px, size = D("43210.5"), D("1.42")
    margin = ledger.initial_margin(size, BTC.ct_val, px, D(lever))
    venue = ledger.liq_px(ledger.Pos(side, size, px, margin, D(lever)), BTC.ct_val, D("0.004"), D("0.0005"))
    assert venue is not None
    assert abs(estimate_liq_price(side, px, lever) - venue) < D("1e-6")


def test_stop_distance_is_the_guards_initial_stop() -> None:
    ex = ExitSettings(stop_loss_atr_mult=1.5, stop_loss_min_pct=0.3, stop_loss_max_pct=2.0)
    assert risk.stop_distance_pct("long", 50000.0, 200.0, ex) == pytest.approx(0.6)  # 1.5 × 200 / 50000
    assert risk.stop_distance_pct("short", 50000.0, 200.0, ex) == pytest.approx(0.6)
    assert risk.stop_distance_pct("long", 50000.0, 10.0, ex) == pytest.approx(0.3)  # clamped up
    assert risk.stop_distance_pct("short", 50000.0, None, ex) == pytest.approx(2.0)  # no ATR: widest
    stop = guards.initial_stop(-1, 50000.0, 200.0, ex)
    assert risk.stop_distance_pct("short", 50000.0, 200.0, ex) == pytest.approx((stop - 50000.0) / 500.0)


# --- the gates ---


def ctx(**kw: Any) -> EntryContext:
    """An entry every gate accepts: 1 BTC contract (500 USDT) long at 50000, 5×."""
    base: dict[str, Any] = dict(
        now=NOW,
        symbol="BTC-USDT-SWAP",
        side=Side.LONG,
        price=D(50000),
        price_ts=NOW - 1.0,
        size=D("1.00"),
        instrument=BTC,
        balance_available=D(1000),
        open_positions=1,  # another symbol's
        open_positions_symbol=0,
        open_notional=D(1000),
        daily_pnl=D(0),
        loss_streak=0,
        cooldown_until=0.0,
        last_order_ts=NOW - 10.0,
        exchange_state_known=True,
        panic=False,
        stop_distance_pct=0.3,
        liq_price=estimate_liq_price(Side.LONG, D(50000), 5),
    )
    base.update(kw)
    return EntryContext(**base)


def code(c: EntryContext, r: RiskSettings = RISK) -> str | None:
    refusal = check_entry(c, r)
    return None if refusal is None else refusal.code


def test_base_context_passes() -> None:
    assert check_entry(ctx(), RISK) is None
    assert risk.all_refusals(ctx(), RISK) == []


def test_exchange_unknown_fails_closed() -> None:
    assert code(ctx(exchange_state_known=False)) == "exchange_unknown"


def test_panic() -> None:
    assert code(ctx(panic=True)) == "panic"


def test_stale_price_boundary() -> None:
    assert code(ctx(price_ts=NOW - 5.0)) is None  # age == max_price_age_s: still fresh
    assert code(ctx(price_ts=NOW - 5.001)) == "stale_price"
    assert code(ctx(price=D(0))) == "stale_price"
    assert code(ctx(price_ts=NOW - 30.0), RiskSettings(max_price_age_s=30.0)) is None


def test_max_positions_boundary() -> None:
    assert code(ctx(open_positions=4)) is None
    assert code(ctx(open_positions=5)) == "max_positions"
    assert code(ctx(open_positions=1), RiskSettings(max_positions=1)) == "max_positions"


def test_one_position_per_symbol() -> None:
    assert code(ctx(open_positions=2, open_positions_symbol=1)) == "one_per_symbol"
    allowed = RiskSettings(one_position_per_symbol=False)
    assert code(ctx(open_positions=2, open_positions_symbol=1), allowed) is None


def test_earlier_stop_live() -> None:
    """A stop of an earlier position on the symbol, not yet confirmed gone, holds the entry: it could close
    the new position. It is not a position, so allowing several positions per symbol does not lift it."""
    stop = "mxd50wbekd0rs1"
    assert code(ctx(earlier_stops=(stop,))) == "earlier_stop_live"
    assert code(ctx(earlier_stops=())) is None
    several = RiskSettings(one_position_per_symbol=False)
    assert code(ctx(earlier_stops=(stop,)), several) == "earlier_stop_live"
    refusal = check_entry(ctx(earlier_stops=(stop, "mxd50x4s7wzds1")), RISK)
    assert refusal is not None and stop in refusal.message and "mxd50x4s7wzds1" in refusal.message


def test_size_boundary() -> None:
    assert code(ctx(size=D("0.01"))) is None  # exactly minSz
    assert code(ctx(size=D("0.009"))) == "size_below_min"
    assert code(ctx(size=D(0))) == "size_below_min"
    assert code(ctx(size=D("1.005"))) == "size_not_lot"
    eth = dict(instrument=ETH, price=D(3000), liq_price=estimate_liq_price("long", D(3000), 5))
    assert code(ctx(size=D(1), **eth)) is None
    assert code(ctx(size=D("0.9"), **eth)) == "size_below_min"
    assert code(ctx(size=D("1.5"), **eth)) == "size_not_lot"


def test_below_min_size_refuses_the_entry() -> None:
    """position_size's 0 goes into the context as is; the entry is refused, never sent at minSz."""
    size = position_size(D("5"), D("50000"), BTC, RISK)
    assert size == 0
    assert code(ctx(size=size, balance_available=D("5"))) == "size_below_min"


def test_max_notional_per_position_boundary() -> None:
    rich = dict(balance_available=D(5000), open_notional=D(0))
    assert code(ctx(size=D("10.00"), **rich)) is None  # 10 × 0.01 × 50000 = 5000: at the cap
    assert code(ctx(size=D("10.01"), **rich)) == "max_notional"


def test_max_total_notional_boundary() -> None:
    assert code(ctx(open_notional=D(19500))) is None  # 19500 + 500 = 20000
    assert code(ctx(open_notional=D("19500.01"))) == "max_total_notional"


def test_margin_boundary() -> None:
    # 500 / 5 = 100 initial margin + 2 × 500 × 0.0005 = 0.5 round-trip fees
    assert code(ctx(balance_available=D("100.5"))) is None
    assert code(ctx(balance_available=D("100.49"))) == "margin"
    assert code(ctx(balance_available=D("100.5"), fee_rate=D("0.0006"))) == "margin"


def test_liquidation_distance_boundary() -> None:
    # liquidation exactly 20 % away; k = 2 -> a stop up to 10 % away is accepted
    long_liq = dict(liq_price=D(40000))
    assert code(ctx(stop_distance_pct=10.0, **long_liq)) is None
    assert code(ctx(stop_distance_pct=10.001, **long_liq)) == "liq_too_close"
    short_liq = dict(side=Side.SHORT, liq_price=D(60000))
    assert code(ctx(stop_distance_pct=10.0, **short_liq)) is None
    assert code(ctx(stop_distance_pct=10.001, **short_liq)) == "liq_too_close"
    assert code(ctx(stop_distance_pct=8.0, **long_liq), RiskSettings(liq_distance_k=2.5)) is None
    assert code(ctx(stop_distance_pct=8.1, **long_liq), RiskSettings(liq_distance_k=2.5)) == "liq_too_close"
    assert code(ctx(stop_distance_pct=0.0)) == "liq_too_close"  # no stop known: fail closed


def test_high_leverage_is_refused_by_the_liquidation_gate() -> None:
    """50×: liquidation ~1.56 % away, so a 2 % stop (the widest) would never be reached before it."""
    r = RiskSettings(leverage=50, protective_stop_pct=1)
    liq = estimate_liq_price(Side.LONG, D(50000), 50)
    c = ctx(liq_price=liq, stop_distance_pct=2.0)
    assert code(c, r) == "liq_too_close"
    assert code(replace(c, stop_distance_pct=0.3), r) is None  # 2 × 0.3 = 0.6 % < 1.56 %
    five = ctx(stop_distance_pct=2.0)  # 5×: ~19.6 % away
    assert code(five) is None


def test_daily_loss_boundary() -> None:
    assert code(ctx(daily_pnl=D("-199.99"))) is None
    assert code(ctx(daily_pnl=D("-200"))) == "daily_loss"
    assert code(ctx(daily_pnl=D("-250"))) == "daily_loss"
    assert code(ctx(daily_pnl=D("150"))) is None


def test_loss_streak_cooldown_boundary() -> None:
    assert code(ctx(loss_streak=3, cooldown_until=NOW + 0.001)) == "loss_streak_cooldown"
    assert code(ctx(loss_streak=3, cooldown_until=NOW)) is None  # expired at this very moment
    assert code(ctx(loss_streak=5, cooldown_until=0.0)) is None  # the cooldown, not the count, decides


def test_order_interval_boundary() -> None:
    assert code(ctx(last_order_ts=NOW - 1.0)) is None
    assert code(ctx(last_order_ts=NOW - 0.999)) == "order_interval"
    assert code(ctx(last_order_ts=0.0)) is None  # never ordered
    assert code(ctx(last_order_ts=NOW - 0.5), RiskSettings(min_order_interval_s=0)) is None


# One change per gate that makes that gate, and only it, refuse the base context.
BREAKERS: list[tuple[str, dict[str, Any]]] = [
    ("exchange_unknown", {"exchange_state_known": False}),
    ("panic", {"panic": True}),
    ("stale_price", {"price_ts": NOW - 60.0}),
    ("max_positions", {"open_positions": 5}),
    ("one_per_symbol", {"open_positions_symbol": 1}),
    ("earlier_stop_live", {"earlier_stops": ("mxd50wbekd0rs1",)}),
    ("size_below_min", {"size": D("0.001")}),
    ("size_not_lot", {"size": D("1.005")}),
    ("max_notional", {"size": D("10.01")}),
    ("max_total_notional", {"open_notional": D(19900)}),
    ("margin", {"balance_available": D(50)}),
    ("liq_too_close", {"stop_distance_pct": 15.0}),
    ("daily_loss", {"daily_pnl": D(-500)}),
    ("loss_streak_cooldown", {"loss_streak": 3, "cooldown_until": NOW + 600}),
    ("order_interval", {"last_order_ts": NOW - 0.1}),
]


def test_every_code_has_a_breaker_in_gate_order() -> None:
    assert [c for c, _ in BREAKERS] == list(risk.REFUSAL_CODES)


@pytest.mark.parametrize(("expected", "change"), BREAKERS, ids=[c for c, _ in BREAKERS])
def test_each_breaker_trips_its_gate(expected: str, change: dict[str, Any]) -> None:
    assert code(ctx(**change)) == expected


def test_first_refusal_wins_for_every_pair_of_gates() -> None:
    checked = 0
    for (first, a), (_, b) in itertools.combinations(BREAKERS, 2):
        if a.keys() & b.keys():  # both change the same field (the size): not combinable
            continue
        assert code(ctx(**a, **b)) == first, (a, b)
        checked += 1
    assert checked >= 80


def test_all_refusals_lists_every_failing_gate_in_order() -> None:
    everything: dict[str, Any] = {}
    for c, change in BREAKERS:
        if c not in ("size_below_min", "size_not_lot"):  # the size can be only one thing
            everything.update(change)
    codes = [r.code for r in risk.all_refusals(ctx(**everything), RISK)]
    assert codes == [c for c in risk.REFUSAL_CODES if c not in ("size_below_min", "size_not_lot")]
    assert check_entry(ctx(**everything), RISK).code == "exchange_unknown"  # type: ignore[union-attr]


def test_docstring_lists_the_gates_in_code_order() -> None:
    doc = risk.__doc__ or ""
    listed = re.findall(r"^\s+\d+\. (\w+)", doc, flags=re.M)
    assert listed == list(risk.REFUSAL_CODES)


def test_refusal_messages_are_human() -> None:
    r = check_entry(ctx(daily_pnl=D("-250")), RISK)
    assert r is not None
    assert "250" in r.message and "200" in r.message
    assert str(r).startswith("daily_loss: ")


def test_context_is_frozen() -> None:
    c = ctx()
    with pytest.raises(AttributeError):
        c.panic = True  # type: ignore[misc]
    assert c.notional == D("500.0000")

"""OKX position tiers: the lookup at the tier bounds, OKX's REST response read as it comes, and the paper
venue liquidating a large position by its tier (hand-computed with exchanges/paper/ledger.py's formula)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from exchanges.base import OrderRequest, OrderSide, OrderType
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from exchanges.tiers import (
    OKX_ISOLATED_SWAP_TIERS,
    PositionTiers,
    TierDataError,
    load_position_tiers,
    maintenance_rate,
    max_leverage,
    parse_position_tiers,
)

DATA = Path(__file__).parent / "fixtures" / "venue"
BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"
T0 = 1_700_000_000.0


def okx_row(
    family: str, tier: int, min_sz: str, max_sz: str, mmr: str, imr: str, lever: str
) -> dict[str, str]:
    """A row in the shape of OKX's position-tiers response (SWAP: instId empty, instFamily and uly set)."""
    return {"baseMaxLoan": "", "imr": imr, "instFamily": family, "instId": "", "maxLever": lever,
            "maxSz": max_sz, "minSz": min_sz, "mmr": mmr, "optMgnFactor": "0", "quoteMaxLoan": "",
            "tier": str(tier), "uly": family}  # fmt: skip


def btc_rows(*rows: tuple[str, str, str], tiers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """A response with BTC-USDT rows of (minSz, maxSz, mmr)."""
    data = [
        okx_row("BTC-USDT", t, lo, hi, mmr, "0.01", "100")
        for t, (lo, hi, mmr) in zip(tiers, rows, strict=True)
    ]
    return {"code": "0", "msg": "", "data": data}


# ETH-USDT's tiers 1-3 as OKX (then OKEx) announced them for 2021-06-11 (tests/fixtures/venue/PROVENANCE.md),
# sent in OKX's response shape, the highest tier first to show the order of the rows does not matter.
ETH_2021 = {
    "code": "0",
    "msg": "",
    "data": [
        okx_row("ETH-USDT", 3, "6001", "12000", "0.01", "0.015", "66.66"),
        okx_row("ETH-USDT", 2, "3001", "6000", "0.005", "0.01", "100"),
        okx_row("ETH-USDT", 1, "0", "3000", "0.004", "0.008", "125"),
    ],
}

# The shipped tiers with ETH-USDT's replaced by those three: what a venue given a tiers file holds.
ETH_TIERED = OKX_ISOLATED_SWAP_TIERS.updated(parse_position_tiers(ETH_2021))


# --- the lookup at the bounds ---


@pytest.mark.parametrize(
    ("size", "tier", "mmr", "lever"),
    [
        ("0", 1, "0.004", "125"),  # flat: the first tier
        ("0.1", 1, "0.004", "125"),
        ("3000", 1, "0.004", "125"),  # maxSz is inclusive
        ("3000.1", 2, "0.005", "100"),  # between 3,000 and minSz 3,001: the higher, stricter tier
        ("3001", 2, "0.005", "100"),  # minSz is inclusive
        ("6000", 2, "0.005", "100"),
        ("6001", 3, "0.01", "66.66"),
        ("12000", 3, "0.01", "66.66"),
        ("50000", 3, "0.01", "66.66"),  # above the last row the table has: its last row
        ("-3001", 2, "0.005", "100"),  # a short's signed size counts by its absolute value
    ],
)
def test_tier_lookup_at_the_bounds(size: str, tier: int, mmr: str, lever: str) -> None:
    tiers = parse_position_tiers(ETH_2021)
    found = tiers.tier(ETH, D(size))
    assert (found.tier, found.mmr, found.max_lever) == (tier, D(mmr), D(lever))
    assert maintenance_rate(ETH, D(size), tiers) == D(mmr)
    assert max_leverage(ETH, D(size), tiers) == D(lever)


def test_shipped_table_is_okx_tier_one_for_the_default_instruments() -> None:
    assert set(OKX_ISOLATED_SWAP_TIERS.inst_ids) == {i.inst_id for i in DEFAULT_INSTRUMENTS}
    # BTC-USDT up to 1,000 contracts (10 BTC), ETH-USDT up to 5,000 (500 ETH): 0.4 %, 100x.
    for inst, top in ((BTC, D(1000)), (ETH, D(5000))):
        for size in (D("0.1"), top):
            assert (maintenance_rate(inst, size), max_leverage(inst, size)) == (D("0.004"), D(100))
    # The shipped rows are the recorded ones, verbatim.
    recorded = load_position_tiers(DATA / "position_tiers_swap_recorded_2026.json")
    assert all(recorded[i] == OKX_ISOLATED_SWAP_TIERS[i] for i in (BTC, ETH))


def test_an_instrument_without_tiers_is_named() -> None:
    with pytest.raises(KeyError, match="no position tiers for DOGE-USDT-SWAP"):
        maintenance_rate("DOGE-USDT-SWAP", D(1))


# --- OKX's response, as it comes ---


def test_parser_reads_an_older_response_with_uly_only() -> None:
    # OKX's own rows of 2022 (ccxt PR #11938): BTC-USDT tier 1 and tier 100, `uly` without `instFamily`.
    tiers = load_position_tiers(DATA / "position_tiers_btc_usdt_2022.json")
    [first, last] = tiers[BTC].rows
    assert (first.tier, first.min_sz, first.max_sz, first.mmr, first.imr, first.max_lever) == (
        1, D(0), D(500), D("0.004"), D("0.008"), D(125)
    )  # fmt: skip
    assert (last.tier, last.min_sz, last.max_sz, last.mmr, last.max_lever) == (
        100, D(972001), D(982000), D("0.495"), D(2)
    )  # fmt: skip
    assert tiers.maintenance_rate(BTC, D(500)) == D("0.004")
    assert tiers.maintenance_rate(BTC, D(972001)) == D("0.495")


def test_fresher_tiers_replace_the_shipped_ones_instrument_by_instrument() -> None:
    fresher = OKX_ISOLATED_SWAP_TIERS.updated(parse_position_tiers(ETH_2021))
    assert fresher.maintenance_rate(ETH, D(4000)) == D("0.005")
    assert fresher[BTC] == OKX_ISOLATED_SWAP_TIERS[BTC]


def test_a_margin_response_is_refused() -> None:
    # OKX's docs example is a MARGIN row: its sizes are borrowings, not contracts.
    with pytest.raises(TierDataError) as err:
        load_position_tiers(DATA / "position_tiers_margin_docs_example.json")
    assert str(err.value).startswith(str(DATA / "position_tiers_margin_docs_example.json") + ": data[0]")
    assert "SWAP row with instFamily" in str(err.value)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"code": "51000", "msg": "Parameter instFamily error", "data": []}, "OKX answered code '51000'"),
        ({"code": "0", "msg": "", "data": []}, "non-empty 'data'"),
        ([1, 2], "expected OKX's position-tiers response"),
        ({"code": "0", "data": [{**okx_row("BTC-USDT", 1, "0", "10", "0.004", "0.01", "100"), "mmr": "x"}]},
         "data[0] (BTC-USDT): expected numbers"),
        ({"code": "0", "data": [okx_row("BTC-USDT", 1, "0", "10", "1.5", "0.01", "100")]}, "0 < mmr < 1"),
        (btc_rows(("0", "10", "0.004"), ("11", "5", "0.005")), "0 ≤ minSz ≤ maxSz"),
        (btc_rows(("0", "10", "0.004"), ("0", "10", "0.005")), "maxSz to grow"),
        (btc_rows(("0", "10", "0.004"), ("11", "20", "0.005"), tiers=(1, 1)), "each tier once"),
    ],
)  # fmt: skip
def test_a_bad_response_says_what_and_where(payload: Any, expected: str) -> None:
    with pytest.raises(TierDataError) as err:
        parse_position_tiers(payload, "tiers.json")
    message = str(err.value)
    assert message.startswith("tiers.json: ") and expected in message and "\n" not in message


def test_a_file_that_is_not_json_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "tiers.json"
    bad.write_text('{"code": "0",\n "data": [\n oops]}\n')
    with pytest.raises(TierDataError, match=rf"^{bad}: line 3: expected OKX's position-tiers JSON"):
        load_position_tiers(bad)
    with pytest.raises(TierDataError, match="cannot read the position tiers file"):
        load_position_tiers(tmp_path / "missing.json")


# --- the paper venue by tier ---


def venue(client: Any, **kw: Any) -> PaperExchange:
    opts: dict[str, Any] = {"taker_fee": D("0.0005"), "maker_fee": D("0.0002"), "clock": lambda: T0,
                            "starting_balance": D(200_000)}  # fmt: skip
    return PaperExchange(client, DEFAULT_INSTRUMENTS, **(opts | kw))


def buy(cl_ord_id: str, size: str) -> OrderRequest:
    return OrderRequest(
        inst_id=ETH, cl_ord_id=cl_ord_id, side=OrderSide.BUY, ord_type=OrderType.MARKET, size=D(size)
    )


@pytest.fixture
async def tiered(fake_redis: fakeredis.FakeRedis) -> AsyncIterator[PaperExchange]:
    ex = venue(fake_redis, tiers=ETH_TIERED)
    await ex.set_leverage(ETH, 10, "isolated")
    await ex.on_quote(ETH, D(3000), D(3000), T0)
    yield ex
    await ex.close()


async def test_liquidation_price_moves_when_the_position_reaches_the_next_tier(tiered: PaperExchange) -> None:
    # Long 3,000 ETH contracts (q = 300 ETH) at 3,000, 10x: margin 90,000. Tier 1, mmr 0.4 %, taker 0.05 %:
    # liqPx = (margin − q·E) / (q·(mmr + f − 1)) = (90,000 − 900,000) / (300 × (0.004 + 0.0005 − 1))
    #       = 810,000 / 298.65 = 2,712.2049…
    await tiered.place_order(buy("e1", "3000"))
    [pos] = await tiered.positions()
    assert pos.liq_px is not None and pos.liq_px.quantize(D("0.01")) == D("2712.20")
    # One more contract: 3,001 (q = 300.1), margin 90,030, tier 2 (mmr 0.5 %):
    # liqPx = (90,030 − 900,300) / (300.1 × (0.005 + 0.0005 − 1)) = 810,270 / 298.44945 = 2,714.9321…
    # At tier 1's rate the same position would still be liquidated at 2,712.2049… (margin grew in step).
    await tiered.place_order(buy("e2", "1"))
    [pos] = await tiered.positions()
    assert pos.size == D(3001)
    assert pos.liq_px is not None and pos.liq_px.quantize(D("0.01")) == D("2714.93")
    # mgnRatio at the 3,000 mark: (margin + upl) / (q·mark·(mmr + f)) = 90,030 / (300.1 × 3,000 × 0.0055)
    assert pos.margin_ratio is not None and pos.margin_ratio.quantize(D("0.0001")) == D("18.1818")


async def test_a_large_position_is_liquidated_by_its_tier_not_by_the_flat_rate(
    tiered: PaperExchange, fake_redis: fakeredis.FakeRedis
) -> None:
    flat = venue(fake_redis, prefix="flat", tiers=ETH_TIERED, mmr=D("0.004"))
    await flat.set_leverage(ETH, 10, "isolated")
    await flat.on_quote(ETH, D(3000), D(3000), T0)
    for ex in (tiered, flat):
        await ex.place_order(buy("e1", "3001"))
    # Tier 2's liquidation price is 2,714.9321…; the flat 0.4 % one 2,712.2049….
    for ex in (tiered, flat):
        await ex.on_quote(ETH, D("2715.00"), D("2715.00"), T0 + 1)
    assert len(await tiered.positions()) == 1 and len(await flat.positions()) == 1
    for ex in (tiered, flat):
        await ex.on_quote(ETH, D("2714.90"), D("2714.90"), T0 + 2)
    assert await tiered.positions() == []
    assert tiered.fills()[-1]["liq"] == "1"
    assert len(await flat.positions()) == 1  # the old single rate would have kept it open
    await flat.close()


def test_a_venue_for_an_instrument_without_tiers_refuses_to_start(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match="no position tiers for ETH-USDT-SWAP"):
        venue(fake_redis, tiers=PositionTiers({BTC: OKX_ISOLATED_SWAP_TIERS[BTC]}))
    # A flat rate for it is enough (tests that want one).
    venue(fake_redis, tiers=PositionTiers({BTC: OKX_ISOLATED_SWAP_TIERS[BTC]}), mmr={ETH: D("0.004")})


def test_the_recorded_file_round_trips_through_json(tmp_path: Path) -> None:
    # A table saved from OKX (e.g. with curl) loads to the same tiers as the parsed response.
    path = tmp_path / "eth.json"
    path.write_text(json.dumps(ETH_2021))
    assert load_position_tiers(path)[ETH] == parse_position_tiers(ETH_2021)[ETH]


def test_the_account_process_reads_the_tiers_file_or_stops_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config.settings import ExchangeSettings, Settings
    from workers.account import position_tiers

    monkeypatch.chdir(tmp_path)  # no .env here
    assert position_tiers(Settings()) is OKX_ISOLATED_SWAP_TIERS
    good = tmp_path / "tiers.json"
    good.write_text(json.dumps(ETH_2021))
    tiers = position_tiers(Settings(exchange=ExchangeSettings(position_tiers_file=good)))
    assert tiers[ETH] == ETH_TIERED[ETH] and tiers[BTC] == OKX_ISOLATED_SWAP_TIERS[BTC]
    bad = tmp_path / "margin.json"
    bad.write_text((DATA / "position_tiers_margin_docs_example.json").read_text())
    with pytest.raises(SystemExit) as stop:
        position_tiers(Settings(exchange=ExchangeSettings(position_tiers_file=bad)))
    line = str(stop.value)
    assert line.startswith(f"scalper: exchange.position_tiers_file: {bad}: data[0]") and "\n" not in line

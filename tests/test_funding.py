"""Funding: the payment's sign and size, funding data told apart by content (OKX's response, CSV, Freqtrade's
candles) with one-line errors, and the schedule handing out the funding times a simulation's clock passes."""

from __future__ import annotations

import gzip
import json
import random
import sys
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from exchanges.funding import (
    FundingDataError,
    FundingRate,
    FundingSchedule,
    funding_payment,
    load_funding,
    parse_okx_funding_history,
)

DATA = Path(__file__).parent / "fixtures" / "venue"
OKX_DOCS = DATA / "funding_rate_history_docs_example.json"
FREQTRADE = DATA / "freqtrade_XRP_USDT-8h-funding_rate.json"
# OKX's docs example: BTC-USD-SWAP, newest first; the realizedRate is what was charged.
DOCS_RATES = [
    FundingRate(1703030400.0, D("0.0002279755647389")),  # 2023-12-20 00:00 UTC
    FundingRate(1703059200.0, D("0.0000746572360545")),  # 2023-12-20 08:00 UTC
]


# --- the payment ---


@pytest.mark.parametrize(
    ("side", "rate", "paid"),
    [
        ("long", "0.0001", "-0.5"),  # a positive rate: longs pay shorts
        ("short", "0.0001", "0.5"),
        ("long", "-0.0001", "0.5"),  # a negative rate: shorts pay longs
        ("short", "-0.0001", "-0.5"),
        ("long", "0", "0"),
    ],
)
def test_payment_sign_follows_okx(side: str, rate: str, paid: str) -> None:
    # 10 BTC-USDT-SWAP contracts (ctVal 0.01) at a 50,000 mark: position value 5,000; 5,000 × 0.01 % = 0.5.
    assert funding_payment(side, D(10), D("0.01"), D(50000), D(rate)) == D(paid)


def test_payment_at_a_real_rate_is_exact() -> None:
    # 3 ETH-USDT-SWAP contracts (ctVal 0.1) at 2,250.5, OKX's realized 0.0000746572360545:
    # value 675.15; a short receives 675.15 × 0.0000746572360545, exactly.
    rate = DOCS_RATES[1].rate
    assert funding_payment("short", D(3), D("0.1"), D("2250.5"), rate) == D("675.15") * rate
    assert funding_payment("long", D(3), D("0.1"), D("2250.5"), rate) == -(D("675.15") * rate)
    with pytest.raises(ValueError, match="side must be 'long' or 'short'"):
        funding_payment("buy", D(3), D("0.1"), D("2250.5"), rate)


# --- funding data, by content ---


def test_okx_history_response_reads_oldest_first_at_the_realized_rate() -> None:
    assert load_funding(OKX_DOCS) == {"BTC-USD-SWAP": DOCS_RATES}
    # The data list alone reads the same; an empty realizedRate falls back to OKX's fundingRate.
    data = json.loads(OKX_DOCS.read_text())["data"]
    assert parse_okx_funding_history(data) == {"BTC-USD-SWAP": DOCS_RATES}
    data[0]["realizedRate"] = ""
    assert parse_okx_funding_history(data)["BTC-USD-SWAP"][1].rate == D("0.0000746604960499")


def test_the_name_of_a_file_does_not_matter(tmp_path: Path) -> None:
    disguised = tmp_path / "rates.csv"  # OKX JSON whatever the name says
    disguised.write_bytes(OKX_DOCS.read_bytes())
    assert load_funding(disguised) == {"BTC-USD-SWAP": DOCS_RATES}


def test_freqtrade_funding_candles_json_and_gzip(tmp_path: Path) -> None:
    rates = load_funding(FREQTRADE, "XRP-USDT-SWAP")["XRP-USDT-SWAP"]
    assert len(rates) == 91
    assert rates[0] == FundingRate(1637193600.017, D("0.0001"))
    assert FundingRate(1638604800.004, D("-0.00219334")) in rates
    zipped = tmp_path / "XRP_USDT_USDT-8h-funding_rate.json.gz"
    zipped.write_bytes(gzip.compress(FREQTRADE.read_bytes()))
    assert load_funding(zipped, "XRP-USDT-SWAP")["XRP-USDT-SWAP"] == rates
    with pytest.raises(FundingDataError, match=rf"^{FREQTRADE}: a Freqtrade funding file does not name"):
        load_funding(FREQTRADE)


def test_freqtrade_funding_candles_feather(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.feather as feather

    # Freqtrade's layout, built from its real JSON rates: date (UTC ms timestamps), open = rate, h/l/c/v.
    candles = json.loads(FREQTRADE.read_text())
    table = pa.table(
        {
            "date": pa.array([c[0] for c in candles], pa.timestamp("ms", tz="UTC")),
            **{k: pa.array([c[i] for c in candles], pa.float64()) for i, k in enumerate(
                ("open", "high", "low", "close", "volume"), start=1)},
        }
    )  # fmt: skip
    path = tmp_path / "XRP_USDT_USDT-8h-funding_rate.feather"
    feather.write_feather(table, str(path))
    assert load_funding(path, "XRP-USDT-SWAP") == load_funding(FREQTRADE, "XRP-USDT-SWAP")


def test_feather_without_pyarrow_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.feather"
    path.write_bytes(b"ARROW1\x00\x00rest")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(FundingDataError, match=r"needs pyarrow \(pip install 'scalper\[feather\]'\)"):
        load_funding(path, "XRP-USDT-SWAP")


@pytest.mark.parametrize(
    "times",
    [
        ("1703059200", "1703030400"),  # epoch seconds, newest first like OKX
        ("1703059200000", "1703030400000"),  # milliseconds
        ("2023-12-20T08:00:00Z", "2023-12-20T00:00:00+00:00"),  # ISO 8601
        ("2023-12-20 08:00:00", "2023-12-20 00:00:00"),  # no zone: UTC
    ],
)
def test_csv_of_timestamps_and_rates(tmp_path: Path, times: tuple[str, str]) -> None:
    path = tmp_path / "funding.txt"
    path.write_text(
        f"timestamp,funding_rate\n{times[0]},0.0000746572360545\n\n{times[1]},0.0002279755647389\n"
    )
    assert load_funding(path, "BTC-USD-SWAP") == {"BTC-USD-SWAP": DOCS_RATES}


def test_csv_with_a_symbol_column_holds_several_instruments(tmp_path: Path) -> None:
    path = tmp_path / "funding.csv"
    path.write_text(
        "instId,fundingTime,realizedRate\n"
        "BTC-USD-SWAP,1703059200000,0.0000746572360545\n"
        "ETH-USDT-SWAP,1703059200000,-0.00005\n"
        "BTC-USD-SWAP,1703030400000,0.0002279755647389\n"
        "BTC-USD-SWAP,1703030400000,0.0002279755647389\n"  # the same rate twice (overlapping downloads)
    )
    assert load_funding(path) == {
        "BTC-USD-SWAP": DOCS_RATES,
        "ETH-USDT-SWAP": [FundingRate(1703059200.0, D("-0.00005"))],
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("timestamp,funding_rate\n1703059200,0.0001\nyesterday,0.0001\n",
         "line 3: expected a time (epoch s or ms, or ISO 8601), got 'yesterday'"),
        ("timestamp,funding_rate\n1703059200,0.01%\n",
         "line 2: expected a funding rate like 0.0001, got '0.01%'"),
        ("timestamp,funding_rate\n1703059200\n", "line 2: expected 2 columns like the header"),
        ("time,open,high,low,close\n1703059200,42000,42100,41900,42050\n",
         "line 1: expected a header with a time column (timestamp) and a rate column (funding_rate)"),
        ("", "the file is empty; expected funding rates"),
        ("timestamp,funding_rate\n", "expected funding rates, found none"),
        ("timestamp,funding_rate\n1703059200,0.0001\n1703059200000,0.0002\n",
         "has two funding rates for 2023-12-20T08:00:00+00:00 (line 2 and line 3)"),
        ("[[1703059200000, 42000.5, 42100, 41900, 42050, 12.5]]",
         "candle 0: expected a funding rate as a fraction (|rate| < 1), got '42000.5'"),
        ('{"code":"50011","msg":"Too Many Requests","data":[]}',
         "OKX answered code '50011': Too Many Requests"),
        ('{"code":"0","data":[{"instId":"BTC-USDT-SWAP"}]}',
         "data[0]: expected an object with instId, fundingTime"),
        ('{"code":"0",\n"data": [}', "line 2: expected JSON funding data"),
    ],
)  # fmt: skip
def test_bad_funding_data_is_one_line_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "rates.dat"
    path.write_text(content)
    with pytest.raises(FundingDataError) as err:
        load_funding(path, "BTC-USDT-SWAP")
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_unreadable_funding_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FundingDataError, match="cannot read the funding file"):
        load_funding(tmp_path / "missing.json")
    binary = tmp_path / "rates.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(
        FundingDataError, match=rf"^{binary}: expected funding rates as text, JSON or feather"
    ):
        load_funding(binary)


# --- the schedule ---

T1, T2, T3 = 1703030400.0, 1703059200.0, 1703088000.0  # 00:00, 08:00, 16:00 UTC


def schedule() -> FundingSchedule:
    return FundingSchedule(
        [FundingRate(T1, D("0.0001")), FundingRate(T2, D("-0.0002")), FundingRate(T3, D("0.0003"))]
    )


def test_due_hands_out_each_funding_time_once_between_two_ticks() -> None:
    s = schedule()
    assert s.due(T1 - 60, T1 - 1) == ()
    assert s.due(T1 - 1, T1) == (FundingRate(T1, D("0.0001")),)  # at the funding time itself: due
    assert s.next_ts == T2  # what a loop may compare with before calling
    assert s.due(T1, T1 + 15) == ()  # the previous tick's time is not
    assert [r.ts for r in s.due(T1 + 15, T3 + 5)] == [T2, T3]  # a gap in the data passes both at once
    assert s.due(T3 + 5, T3 + 10**6) == ()  # nothing after the last
    assert s.next_ts == float("inf")


def test_a_run_starting_after_the_first_funding_time_skips_the_earlier_ones() -> None:
    s = schedule()
    assert s.due(T2 - 15, T2) == (FundingRate(T2, D("-0.0002")),)
    assert schedule().due(T2, T2 + 15) == ()  # a run whose first tick is at a funding time: not charged
    assert FundingSchedule([]).due(0.0, 1e12) == ()
    with pytest.raises(ValueError, match="strictly increasing"):
        FundingSchedule([FundingRate(T2, D(0)), FundingRate(T1, D(0))])


def test_due_over_a_whole_tick_stream_equals_the_rates_in_its_span() -> None:
    # Freqtrade's 91 real funding times, walked by 180,000 ticks 15 s apart (45,000 one-minute bars as four
    # ticks each, as the backtest does) and by ticks with random gaps: every rate inside the span comes out
    # once, in order, and none outside it.
    rates = load_funding(FREQTRADE, "XRP-USDT-SWAP")["XRP-USDT-SWAP"]
    start = rates[3].ts - 7.5  # after the first three funding times
    for step in (lambda _: 15.0, lambda rng: rng.choice((0.5, 15.0, 60.0, 3600.0, 30_000.0))):
        rng, s, got = random.Random(11), FundingSchedule(rates), []
        prev = start
        for _ in range(180_000):
            now = prev + step(rng)
            got.extend(s.due(prev, now))
            prev = now
        assert got == [r for r in rates if start < r.ts <= prev]
        assert got[0] == rates[3]


def test_funding_times_are_utc_settlements() -> None:
    # OKX's default settlements: 00:00, 08:00, 16:00 UTC (the docs example's two times).
    assert [datetime.fromtimestamp(r.ts, UTC).hour for r in DOCS_RATES] == [0, 8]

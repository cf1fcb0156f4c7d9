"""Per-tick cost of the simulated venue's money model: FundingSchedule.due and the position-tier lookup.

Run:  .venv/bin/python bench/bench_venue_money.py
Data: ../shared/data/market/btc_perp_1m_20211231_20220201.csv (45,031 one-minute bars), each bar as four
ticks 15 s apart (180,124 ticks), the backtest's count. Funding times: OKX's 00:00/08:00/16:00 UTC grid over
the file's span (rates do not change the cost); tiers: the shipped table and a 100-tier one.
"""

from __future__ import annotations

import csv
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchanges.funding import FundingRate, FundingSchedule  # noqa: E402
from exchanges.tiers import OKX_ISOLATED_SWAP_TIERS, parse_position_tiers  # noqa: E402

BTC_CSV = ROOT.parent / "shared" / "data" / "market" / "btc_perp_1m_20211231_20220201.csv"
EIGHT_HOURS = 8 * 3600
REPEATS = 9


def tick_times() -> list[float]:
    with BTC_CSV.open() as fh:
        starts = [datetime.fromisoformat(r["timestamp"] + "+00:00").timestamp() for r in csv.DictReader(fh)]
    return [t + 15.0 * k for t in starts for k in range(4)]


def best_of(run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ticks = tick_times()
    first = int(ticks[0]) // EIGHT_HOURS * EIGHT_HOURS
    rates = [FundingRate(float(t), Decimal("0.0001")) for t in range(first, int(ticks[-1]) + 1, EIGHT_HOURS)]
    pairs = list(pairwise(ticks))

    def loop_only() -> None:
        for _prev, _now in pairs:
            pass

    def funding() -> int:
        s, n = FundingSchedule(rates), 0
        for prev, now in pairs:
            n += len(s.due(prev, now))
        return n

    def funding_guarded() -> int:
        s, n = FundingSchedule(rates), 0
        for prev, now in pairs:
            if now >= s.next_ts:
                n += len(s.due(prev, now))
        return n

    paid = funding()
    assert funding_guarded() == paid
    empty, with_due, guarded = best_of(loop_only), best_of(funding), best_of(funding_guarded)
    print(f"python {platform.python_version()}, {len(pairs):,} tick pairs, {paid} funding times passed")
    for name, cost in (("due() on every tick", with_due), ("`now >= next_ts` before due()", guarded)):
        print(f"FundingSchedule, {name}: {(cost - empty) / len(pairs) * 1e9:.0f} ns per tick "
              f"(loop overhead {empty / len(pairs) * 1e9:.0f} ns subtracted)")  # fmt: skip

    hundred = parse_position_tiers(
        {"code": "0", "data": [
            {"instFamily": "BTC-USDT", "tier": str(n), "minSz": str(0 if n == 1 else (n - 1) * 10_000 + 1),
             "maxSz": str(n * 10_000), "mmr": str(Decimal("0.004") + Decimal("0.005") * (n - 1)),
             "imr": str(Decimal("0.01") + Decimal("0.005") * (n - 1)), "maxLever": "2"}
            for n in range(1, 101)
        ]}
    )  # fmt: skip
    small = [Decimal(10), Decimal("0.1"), Decimal(999), Decimal(1000)]  # tier 1
    large = [Decimal(15_000), Decimal(480_001), Decimal(999_999), Decimal(70_000)]  # tiers 2-100
    cases = (
        ("shipped table, tier 1", OKX_ISOLATED_SWAP_TIERS, small),
        ("100 tiers, sizes in tiers 2-100", hundred, large),
    )
    for name, tiers, sizes in cases:
        lookups = [(tiers, sizes[i % 4]) for i in range(len(pairs))]

        def lookup(lookups: list[tuple[object, Decimal]] = lookups) -> None:
            for t, size in lookups:
                t.maintenance_rate("BTC-USDT-SWAP", size)  # type: ignore[attr-defined]

        def baseline(lookups: list[tuple[object, Decimal]] = lookups) -> None:
            for _t, _size in lookups:
                pass

        cost = (best_of(lookup) - best_of(baseline)) / len(lookups) * 1e9
        print(f"maintenance_rate, {name}: {cost:.0f} ns per lookup")


if __name__ == "__main__":
    main()

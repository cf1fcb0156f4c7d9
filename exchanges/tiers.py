"""OKX position tiers: the maintenance margin rate and the maximum leverage of a swap position by its size.

OKX raises the maintenance margin rate (and lowers the leverage allowed) as a position grows: each instrument
family has tiers, rows of `tier, minSz, maxSz, mmr, imr, maxLever`, published per margin mode by
GET /api/v5/public/position-tiers?instType=SWAP&tdMode=isolated&instFamily=BTC-USDT. For SWAP the sizes
are in contracts. A position of `sz` contracts is in the first tier whose maxSz it does not exceed: minSz and
maxSz are both inclusive (OKX's integer tiers run 0-500, 501-2000, ...), and a size between two rows (500.5
contracts, possible since OKX allows fractional lots) belongs to the higher tier, the stricter one. Above the
last row a table holds, its last row applies.

`parse_position_tiers` reads OKX's REST response (from the live API or a file), so a venue can be given the
current table; `OKX_ISOLATED_SWAP_TIERS` is the table shipped for the default instruments. Pure: no I/O
except `load_position_tiers`, which reads one file.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

ZERO = Decimal(0)
ONE = Decimal(1)
SWAP_SUFFIX = "-SWAP"


class TierDataError(ValueError):
    """A position-tiers response or file that cannot be used; the message is one line naming where."""


@dataclass(frozen=True, slots=True)
class PositionTier:
    """One row of OKX's position tiers. `max_sz` None: no upper bound (OKX sends "")."""

    tier: int
    min_sz: Decimal  # contracts, inclusive
    max_sz: Decimal | None  # contracts, inclusive
    mmr: Decimal  # maintenance margin rate
    imr: Decimal  # initial margin rate
    max_lever: Decimal


class TierSchedule:
    """One instrument's tiers, in order, with the lookup by size: one comparison for the first tier, else a
    bisection over the upper bounds."""

    __slots__ = ("_caps", "_first", "_first_cap", "rows")

    def __init__(self, rows: Iterable[PositionTier]) -> None:
        self.rows = tuple(sorted(rows, key=lambda r: r.tier))
        if not self.rows:
            raise ValueError("a tier schedule needs at least one tier")
        self._caps = tuple(r.max_sz for r in self.rows if r.max_sz is not None)
        self._first = self.rows[0]
        self._first_cap = self._caps[0] if self._caps else None

    def tier(self, size: Decimal) -> PositionTier:
        """The tier of a position of `size` contracts (its absolute size; 0 is in the first tier)."""
        if size < ZERO:  # a Decimal: comparing with the int 0 costs three times as much
            size = -size
        if self._first_cap is None or size <= self._first_cap:  # where nearly every position is
            return self._first
        i = bisect_left(self._caps, size)  # the first row whose maxSz ≥ size
        return self.rows[min(i, len(self.rows) - 1)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TierSchedule) and self.rows == other.rows

    def __hash__(self) -> int:
        return hash(self.rows)

    def __repr__(self) -> str:
        return f"TierSchedule({list(self.rows)!r})"


class PositionTiers:
    """Tier schedules by OKX instId (e.g. BTC-USDT-SWAP)."""

    __slots__ = ("_by_inst",)

    def __init__(self, schedules: Mapping[str, TierSchedule]) -> None:
        self._by_inst = dict(schedules)

    def __contains__(self, inst_id: object) -> bool:
        return inst_id in self._by_inst

    def __getitem__(self, inst_id: str) -> TierSchedule:
        return self._by_inst[inst_id]

    @property
    def inst_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._by_inst))

    def tier(self, inst_id: str, size: Decimal) -> PositionTier:
        schedule = self._by_inst.get(inst_id)
        if schedule is None:
            raise self._unknown(inst_id)
        return schedule.tier(size)

    def maintenance_rate(self, inst_id: str, size: Decimal) -> Decimal:
        schedule = self._by_inst.get(inst_id)  # tier() inlined: the venue asks on every quote
        if schedule is None:
            raise self._unknown(inst_id)
        return schedule.tier(size).mmr

    def max_leverage(self, inst_id: str, size: Decimal) -> Decimal:
        return self.tier(inst_id, size).max_lever

    def _unknown(self, inst_id: str) -> KeyError:
        return KeyError(f"no position tiers for {inst_id} (tiers are known for {', '.join(self.inst_ids)})")

    def updated(self, fresher: PositionTiers) -> PositionTiers:
        """These tiers with every instrument `fresher` has replaced by its schedule."""
        return PositionTiers({**self._by_inst, **fresher._by_inst})


# --- OKX's REST response ---

_ROW_FIELDS = ("tier", "minSz", "maxSz", "mmr", "imr", "maxLever")


def parse_position_tiers(
    payload: Mapping[str, Any], source: str = "position-tiers response"
) -> PositionTiers:
    """OKX's GET /api/v5/public/position-tiers?instType=SWAP response as tiers by instId.

    Rows are grouped by `instFamily` (`uly` in older responses; SWAP rows leave `instId` empty) and keyed by
    the family's perpetual, "BTC-USDT" → "BTC-USDT-SWAP". The response must be for SWAP: a MARGIN row (an
    `instId` with no family) is refused, as its sizes are borrowings, not contracts. Any defect raises
    TierDataError naming `source` and the row.
    """
    if not isinstance(payload, Mapping) or "data" not in payload:
        raise TierDataError(
            f"{source}: expected OKX's position-tiers response {{'code': '0', 'data': [...]}}"
        )
    if str(payload.get("code", "0")) != "0":
        raise TierDataError(f"{source}: OKX answered code {payload.get('code')!r}: {payload.get('msg', '')}")
    data = payload["data"]
    if not isinstance(data, list) or not data:
        raise TierDataError(f"{source}: expected a non-empty 'data' list of tier rows")
    rows: dict[str, list[PositionTier]] = {}
    for i, raw in enumerate(data):
        where = f"{source}: data[{i}]"
        if not isinstance(raw, Mapping):
            raise TierDataError(f"{where}: expected an object with {', '.join(_ROW_FIELDS)}")
        family = str(raw.get("instFamily") or raw.get("uly") or "")
        if not family:
            raise TierDataError(
                f"{where}: expected a SWAP row with instFamily (a MARGIN row has instId only)"
            )
        rows.setdefault(family + SWAP_SUFFIX, []).append(_row(raw, f"{where} ({family})"))
    return PositionTiers(
        {inst: _schedule(inst_rows, f"{source}: {inst}") for inst, inst_rows in rows.items()}
    )


def load_position_tiers(path: str | Path) -> PositionTiers:
    """Tiers from a file holding OKX's position-tiers response (e.g. saved with curl); TierDataError names
    the file when it cannot be read or used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TierDataError(
            f"{path}: cannot read the position tiers file ({err.__class__.__name__})"
        ) from err
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise TierDataError(
            f"{path}: line {err.lineno}: expected OKX's position-tiers JSON ({err.msg})"
        ) from err
    return parse_position_tiers(payload, str(path))


def _row(raw: Mapping[str, Any], where: str) -> PositionTier:
    missing = [f for f in _ROW_FIELDS if f not in raw]
    if missing:
        raise TierDataError(f"{where}: expected the fields {', '.join(missing)}")
    try:
        tier = int(str(raw["tier"]))
        min_sz = Decimal(str(raw["minSz"]))
        max_sz = None if raw["maxSz"] in ("", None) else Decimal(str(raw["maxSz"]))
        mmr, imr, lever = (Decimal(str(raw[f])) for f in ("mmr", "imr", "maxLever"))
    except (ValueError, InvalidOperation) as err:
        raise TierDataError(f"{where}: expected numbers in {', '.join(_ROW_FIELDS)}") from err
    if tier < 1 or not min_sz.is_finite() or min_sz < 0 or (max_sz is not None and not min_sz <= max_sz):
        raise TierDataError(
            f"{where}: expected tier ≥ 1 and 0 ≤ minSz ≤ maxSz, got {tier}, {min_sz}, {max_sz}"
        )
    if not (0 < mmr < ONE and 0 < imr <= ONE and lever > 0):
        raise TierDataError(f"{where}: expected 0 < mmr < 1, 0 < imr ≤ 1, maxLever > 0")
    return PositionTier(tier=tier, min_sz=min_sz, max_sz=max_sz, mmr=mmr, imr=imr, max_lever=lever)


def _schedule(rows: list[PositionTier], where: str) -> TierSchedule:
    schedule = TierSchedule(rows)
    ordered = schedule.rows
    if len({r.tier for r in ordered}) != len(ordered):
        raise TierDataError(f"{where}: expected each tier once")
    if any(r.max_sz is None for r in ordered[:-1]):
        raise TierDataError(f"{where}: expected only the last tier without maxSz")
    caps = [r.max_sz for r in ordered if r.max_sz is not None]
    if any(b <= a for a, b in pairwise(caps)):
        raise TierDataError(f"{where}: expected maxSz to grow with the tier")
    return schedule


# --- the table shipped for the default instruments ---

# OKX's isolated-margin SWAP tiers for the shipped instruments, in OKX's response shape and read by the same
# parser. Only tier 1 of each, the newest rows we could find (no copy of OKX's full current table was at
# hand): BTC-USDT 0-1,000 contracts and ETH-USDT 0-5,000 contracts at mmr 0.4 %, imr 1 %, 100x, verbatim from
# a public C# OKX client's test fixtures ("SwapTiers", "recorded live" next to instruments listed in
# 2026-08; margin mode not stated); the same BTC row is in a Go OKX client's test (tdMode=cross), and a
# TypeScript OKX simulator gives mmr 0.004 for both "as OKX's position tiers gave them on 2026-10-05"
# (tdMode=isolated&tier=1). Older full tables disagree with this tier 1 (OKX's 2021-06-11 announcement for
# ETH-USDT: 0-3,000 at 125x; ccxt PR #11938 of 2022-02-11 for BTC-USDT: 0-500 at 125x), so none of their
# higher rows is used: above 10 BTC / 500 ETH this table keeps tier 1's rate. Give the venue OKX's current
# table (setting `exchange.position_tiers_file`) to simulate larger positions.
_SHIPPED_RESPONSE: dict[str, Any] = {
    "code": "0",
    "msg": "",
    "data": [
        {"baseMaxLoan": "", "imr": "0.01", "instFamily": "BTC-USDT", "instId": "", "maxLever": "100",
         "maxSz": "1000", "minSz": "0", "mmr": "0.004", "optMgnFactor": "0", "quoteMaxLoan": "", "tier": "1",
         "uly": "BTC-USDT"},
        {"baseMaxLoan": "", "imr": "0.01", "instFamily": "ETH-USDT", "instId": "", "maxLever": "100",
         "maxSz": "5000", "minSz": "0", "mmr": "0.004", "optMgnFactor": "0", "quoteMaxLoan": "", "tier": "1",
         "uly": "ETH-USDT"},
    ],
}  # fmt: skip
OKX_ISOLATED_SWAP_TIERS = parse_position_tiers(_SHIPPED_RESPONSE, "the shipped position tiers")


def maintenance_rate(
    inst_id: str, size_contracts: Decimal, tiers: PositionTiers = OKX_ISOLATED_SWAP_TIERS
) -> Decimal:
    """OKX's maintenance margin rate for an isolated position of `size_contracts` in `inst_id`."""
    return tiers.maintenance_rate(inst_id, size_contracts)


def max_leverage(
    inst_id: str, size_contracts: Decimal, tiers: PositionTiers = OKX_ISOLATED_SWAP_TIERS
) -> Decimal:
    """The highest leverage OKX allows a position of `size_contracts` in `inst_id` (its tier's maxLever)."""
    return tiers.max_leverage(inst_id, size_contracts)

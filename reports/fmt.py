"""How the report writes its numbers: money to the cent, percentages, ratios, durations and UTC times.
One place, so the terminal, the HTML and the JSON agree."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")
NA = "n/a"


def cents(x: Decimal | float) -> Decimal:
    """Money rounded to the cent, half to even (as Decimal's default context does)."""
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_EVEN) + 0  # + 0: no "-0.00"


def money(x: Decimal | float | None, *, sign: bool = False) -> str:
    """ "1,234.56" ("+1,234.56" with `sign`); n/a for None."""
    if x is None:
        return NA
    return f"{cents(x):{'+' if sign else ''},.2f}"


def pct(x: float | None, *, sign: bool = False) -> str:
    if x is None:
        return NA
    return f"{x:{'+' if sign else ''}.2f} %"


def ratio(x: float | None) -> str:
    """A ratio with two decimals; inf as ∞; n/a for None."""
    if x is None:
        return NA
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.2f}"


def duration(seconds: float | None) -> str:
    """ "45s", "12m 05s", "3h 07m", "2d 04h"."""
    if seconds is None:
        return NA
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def when(ts: float | None) -> str:
    """ "2022-01-01 13:05 UTC"; "" for None."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(ts: float) -> str:
    """ISO-8601 UTC to the millisecond: "2022-01-01T13:05:00.000Z"."""
    dt = datetime.fromtimestamp(round(ts, 3), UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def decimal_text(x: Decimal) -> str:
    """A Decimal in plain notation, exactly as held: "-12.5", never "-1.25E+1"."""
    return format(x, "f")

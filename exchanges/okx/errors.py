"""OKX v5 error codes -> the typed errors of `exchanges.base` (plus three OKX-specific ones defined here).

Meanings are from the docs' error tables (shared/data/okx/okx_docs/rest_error_codes_selected.csv and
ws_error_codes.csv). What each class tells the caller to do:
  RateLimited        back off (limiter.penalize) and retry later
  ExchangeBusy       the venue did not process the request; retry with back-off
  OkxOutcomeUnknown  the request may have been executed: query by clOrdId before any retry
  AuthError          credentials / environment are wrong: retrying will not help
  TimestampError     our clock is off (an AuthError): resync with GET /api/v5/public/time, then retry
"""

from __future__ import annotations

from collections.abc import Iterable

from exchanges.base import (
    DuplicateClientId,
    ExchangeError,
    InsufficientMargin,
    LotSizeError,
    NothingToClose,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
)


class ExchangeBusy(ExchangeError):
    """50001 service unavailable / 50013 systems busy: not processed, retryable after a pause."""


class AuthError(ExchangeError):
    """Login / signature / API key / permission problems (501xx REST, 600xx WS)."""


class TimestampError(AuthError):
    """The request timestamp was rejected (clock skew > 30 s or malformed): resync the clock."""


class OkxOutcomeUnknown(OutcomeUnknown):
    """50004 / 51054 / 51149 / 50026 / 64007: timed out or failed internally; the order may exist."""

    def __init__(self, code: str, msg: str = ""):
        super().__init__(f"[{code}] {msg}" if msg else f"[{code}]")
        self.code = code
        self.msg = msg


RATE_LIMITED = frozenset(
    {
        "50011",  # Rate limit reached (HTTP 200 or 429)
        "50061",  # sub-account order rate limit
        "50040",  # Too frequent operations, please try again later
        "51113",  # Market-price liquidation requests too frequent (429)
        "60014",  # WS: Requests too frequent
        "60023",  # WS: Bulk login requests too frequent
    }
)
BUSY = frozenset({"50001", "50013", "63999"})  # 63999: WS login failed due to internal error, try again
OUTCOME_UNKNOWN = frozenset(
    {
        "50004",  # API endpoint request timeout (does not mean success or failure)
        "51054",  # Request timed out
        "51149",  # Order timed out (does not mean success or failure)
        "50026",  # System error (HTTP 500): nothing says whether it was executed
        "64007",  # WS: operation failed due to WebSocket internal error
    }
)
# No position in this direction to reduce or close; close-position on a flat position may answer 51023.
NOTHING_TO_CLOSE = frozenset({"51169", "51023"})
LOT_SIZE = frozenset(
    {
        "51121",  # quantity must be a multiple of the lot size
        "51020",  # should meet or exceed the minimum order amount
        "51120",  # order amount is less than {param0}
        "51007",  # place orders of at least 1 contract
    }
)
INSUFFICIENT_MARGIN = frozenset({"51008", "51127", "51131"})  # insufficient balance/margin; avail 0
DUPLICATE_CLIENT_ID = frozenset({"51016", "50071"})  # clOrdId already exists / {param} already exists
ORDER_NOT_FOUND = frozenset({"51603", "51063"})  # order does not exist / OrdId does not exist
TIMESTAMP = frozenset({"50102", "50112", "60004", "60006"})  # expired / invalid timestamp (REST, WS)
AUTH = frozenset(
    {
        "50030",  # no permission to use this API endpoint
        "50035",  # endpoint requires an IP-bound API key
        "50100",
        "50101",
        "50103",
        "50104",
        "50105",
        "50106",
        "50107",
        "50108",
        "50109",
        "50110",
        "50111",
        "50113",
        "50114",
        "50119",
        "50120",
        "60005",
        "60007",
        "60009",
        "60011",
        "60024",
        "60026",
        "60031",
        "60032",
    }
)

_BY_CODE: dict[str, type[ExchangeError]] = {}
for _codes, _cls in (
    (RATE_LIMITED, RateLimited),
    (BUSY, ExchangeBusy),
    (NOTHING_TO_CLOSE, NothingToClose),
    (LOT_SIZE, LotSizeError),
    (INSUFFICIENT_MARGIN, InsufficientMargin),
    (DUPLICATE_CLIENT_ID, DuplicateClientId),
    (ORDER_NOT_FOUND, OrderNotFound),
    (TIMESTAMP, TimestampError),
    (AUTH, AuthError),
):
    for _code in _codes:
        _BY_CODE[_code] = _cls


def error_for(code: str, msg: str = "") -> ExchangeError | OkxOutcomeUnknown:
    """The exception for one OKX code (top-level `code` or per-order `sCode`); never raises itself."""
    if code in OUTCOME_UNKNOWN:
        return OkxOutcomeUnknown(code, msg)
    return _BY_CODE.get(code, ExchangeError)(code, msg)


def raise_for_reply(code: str, msg: str, items: Iterable[tuple[str, str]] = ()) -> None:
    """Raise for a REST reply or WS op reply; `items` are the per-order (sCode, sMsg) pairs of data[].

    code "1" (all failed) / "2" (batch partially failed) carry the real reason per order, so the first
    failed item's sCode decides the type; otherwise the top-level code does. Returns when all succeeded.
    """
    failed = next(((c, m) for c, m in items if c not in ("", "0")), None)
    if failed is not None:
        raise error_for(*failed)
    if code != "0":
        raise error_for(code, msg)

"""The OKX v5 number conventions as msgspec field types, and the one decoding error.

OKX sends every number as a JSON *string*, and "" when a field does not apply. Fields declared with the
aliases below are checked by msgspec (in C, against a strict regex: no NaN/Infinity, no whitespace, no
underscores, at most 64 characters, exponents of at most two digits) and then converted once, in
`Wire.__post_init__`, to `Decimal` / `int` / `bool`, or `None` for "". Type checkers see the converted
types (the `TYPE_CHECKING` branch); msgspec sees the validated strings.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr


class DecodeError(Exception):
    """A message that is not valid OKX v5 wire format. `reason` is a short, bounded key for counting."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_MAXLEN = 64
# [0-9], not \d: Python's \d also matches other scripts' digits. \Z, not $: $ accepts a trailing newline.
_UNSIGNED = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,2})?"
_P_DEC = rf"\A-?{_UNSIGNED}\Z"
_P_UDEC = rf"\A{_UNSIGNED}\Z"
_P_OPT_DEC = rf"\A(?:-?{_UNSIGNED})?\Z"
_P_OPT_UDEC = rf"\A(?:{_UNSIGNED})?\Z"
_P_INT = r"\A[0-9]{1,19}\Z"  # ms timestamps, counts
_P_OPT_INT = r"\A(?:[0-9]{1,19})?\Z"
_P_FLAG = r"\A(?:true|false)?\Z"  # OKX's "true"/"false" strings ("" = false)

if TYPE_CHECKING:
    Dec = Decimal  # signed, required
    UDec = Decimal  # non-negative, required
    OptDec = Decimal | None  # signed, "" -> None
    OptUDec = Decimal | None  # non-negative, "" -> None
    Int = int  # digit string -> int (timestamps in ms, counts)
    OptInt = int | None
    Flag = bool
else:
    Dec = Annotated[str, Meta(pattern=_P_DEC, max_length=_MAXLEN)]
    UDec = Annotated[str, Meta(pattern=_P_UDEC, max_length=_MAXLEN)]
    OptDec = Annotated[str, Meta(pattern=_P_OPT_DEC, max_length=_MAXLEN)]
    OptUDec = Annotated[str, Meta(pattern=_P_OPT_UDEC, max_length=_MAXLEN)]
    Int = Annotated[str, Meta(pattern=_P_INT)]
    OptInt = Annotated[str, Meta(pattern=_P_OPT_INT)]
    Flag = Annotated[str, Meta(pattern=_P_FLAG)]


# JSON integers (seqId, checksum, curPage): bounded, so a 400-digit number is a schema error, not an int.
I64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]


def _opt_dec(s: str) -> Decimal | None:
    return Decimal(s) if s else None


def _opt_int(s: str) -> int | None:
    return int(s) if s else None


def _flag(s: str) -> bool:
    return s == "true"


_CONVERTERS: tuple[tuple[object, Callable[[str], Any]], ...] = (
    (Dec, Decimal),
    (UDec, Decimal),
    (OptDec, _opt_dec),
    (OptUDec, _opt_dec),
    (Int, int),
    (OptInt, _opt_int),
    (Flag, _flag),
)


class Wire(msgspec.Struct, frozen=True, rename="camel"):
    """Base of every decoded OKX record: camelCase on the wire, snake_case here, unknown fields ignored."""

    __conv__: ClassVar[tuple[tuple[str, Callable[[str], Any]], ...]] = ()

    def __post_init__(self) -> None:
        # Values built in Python (tests, defaults) are already converted: only strings are touched.
        for name, conv in self.__conv__:
            value = getattr(self, name)
            if isinstance(value, str):
                force_setattr(self, name, conv(value))


W = TypeVar("W", bound=type[Wire])


def wire(cls: W) -> W:
    """Class decorator: record which fields carry OKX number strings and how to convert them."""
    hints = typing.get_type_hints(cls, include_extras=True)
    plan = []
    for name in cls.__struct_fields__:
        for alias, conv in _CONVERTERS:
            if hints[name] is alias:
                plan.append((name, conv))
                break
    cls.__conv__ = tuple(plan)
    return cls


def dec_str(value: Decimal) -> str:
    """A Decimal as OKX wants it: plain notation, never an exponent (str(Decimal('1E+3')) is '1E+3')."""
    if not value.is_finite():
        raise ValueError("not a finite number")
    return format(value, "f")

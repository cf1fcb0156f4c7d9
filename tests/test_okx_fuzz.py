"""Property tests: WsDecoder never raises, counts every dropped frame, and real messages keep decoding.

Oracle for mutations of real messages: changing the JSON type of a field we declare must drop the frame;
changing a field we do not declare must not. decode_ws itself may raise only DecodeError (the decoder's
"internal" counter, which would catch anything else, stays at zero).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exchanges.okx.messages import PONG, WsDecoder, decode_ws, push_type
from exchanges.okx.wire import DecodeError
from tests import okx_data as data

FAST = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# Inbound messages of the shared data (requests are outbound: not ours to decode).
BP_INBOUND = (6, 7, 8, 12, 13, 14, 17, 18, 19, 20, 25, 26, 27, 28)


def _real() -> list[Any]:
    if not data.DOCS.is_dir():
        return []
    docs = [data.doc(n) for n in data.docs_json_names() if n.startswith("ws_") and "_request" not in n]
    examples = data.best_practice()
    return docs + [examples[i]["json"] for i in BP_INBOUND]


REAL: list[Any] = _real()
REAL_BYTES: list[bytes] = [msgspec.json.encode(m) for m in REAL]  # compact: no trailing whitespace
PUSHES: list[Any] = [m for m in REAL if "arg" in m and "data" in m and "event" not in m]
DICT_PUSHES = [m for m in PUSHES if m["data"] and isinstance(m["data"][0], dict)]
ARRAY_PUSHES = [m for m in PUSHES if m["data"] and isinstance(m["data"][0], list)]  # candles
BOOK_PUSHES = [m for m in PUSHES if m["arg"]["channel"].startswith(("books", "bbo"))]


def test_real_messages_present_and_decode() -> None:
    assert len(REAL) == 42, "shared OKX data missing or changed"
    assert len(DICT_PUSHES) >= 10 and ARRAY_PUSHES and BOOK_PUSHES
    dec = WsDecoder()
    for raw in REAL_BYTES:
        assert dec.decode(raw) is not None
    assert dec.dropped == {} and dec.total == len(REAL_BYTES)


def _decode_checked(dec: WsDecoder, raw: Any) -> Any:
    """Decode and verify the bookkeeping: a None result is exactly one more drop."""
    before_total, before_dropped = dec.total, dec.dropped_total
    msg = dec.decode(raw)
    assert dec.total == before_total + 1
    assert dec.dropped_total == before_dropped + (msg is None)
    assert "internal" not in dec.dropped, dec.last_error
    return msg


def _still_decodes_real(dec: WsDecoder, i: int) -> None:
    assert dec.decode(REAL_BYTES[i % len(REAL_BYTES)]) is not None


# --- arbitrary input ----------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        ["", "0", "-1", "nan", "NaN", "Infinity", "1e999", "9" * 80, "pong", "snapshot", "orders"]
    ),
)
KEYS = ["event", "op", "arg", "args", "data", "code", "msg", "channel", "instId", "connCount", "id", "sCode",
        "px", "sz", "ts", "state", "action", "curPage", "lastPage", "eventType", "asks", "bids"]  # fmt: skip
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=30,
)


@settings(FAST, max_examples=2000)
@given(st.binary(max_size=300) | st.text(max_size=300), st.integers(0, 1000))
def test_random_bytes_and_text(raw: bytes | str, i: int) -> None:
    dec = WsDecoder()
    msg = _decode_checked(dec, raw)
    assert msg is None or msg is PONG or msg == decode_ws(raw)  # the rare valid frame decodes stably
    _still_decodes_real(dec, i)


@settings(FAST, max_examples=1200)
@given(json_value, st.integers(0, 1000))
def test_random_json_documents(doc: Any, i: int) -> None:
    dec = WsDecoder()
    _decode_checked(dec, json.dumps(doc))
    _decode_checked(dec, json.dumps(doc).encode())
    _still_decodes_real(dec, i)


@pytest.mark.parametrize("value", [None, 1, 1.5, [], {}, object(), ["pong"], 10**400])
def test_non_text_input_is_counted(value: Any) -> None:
    dec = WsDecoder()
    assert dec.decode(value) is None and dec.dropped == {"input_type": 1}


# --- truncation ---------------------------------------------------------------------------------------


@settings(FAST, max_examples=2500)
@given(st.data())
def test_every_truncation_is_dropped(draw: st.DataObject) -> None:
    raw = draw.draw(st.sampled_from(REAL_BYTES))
    cut = draw.draw(st.integers(0, len(raw) - 1))
    dec = WsDecoder()
    as_text = draw.draw(st.booleans())
    prefix: bytes | str = raw[:cut].decode("utf-8", "ignore") if as_text else raw[:cut]
    assert _decode_checked(dec, prefix) is None
    assert set(dec.dropped) <= {"json", "schema"}


def test_all_truncations_of_a_few_messages() -> None:
    dec = WsDecoder()
    for raw in REAL_BYTES[:: max(1, len(REAL_BYTES) // 6)]:
        for cut in range(len(raw)):
            assert dec.decode(raw[:cut]) is None
    assert dec.dropped_total == dec.total and "internal" not in dec.dropped


# --- wrong types in real messages ---------------------------------------------------------------------

WRONG = st.one_of(
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
BAD_NUMBER_STRINGS = [
    "nan", "NaN", "-nan", "Infinity", "-Infinity", "inf", "1e999", "1e-999", "9" * 65, " 1", "1 ", "1\n",
    "1_000", "0x10", "١٢٣", "1,5", "+-1", "--1", ".", "-", "e5", "1e", "١",
]  # fmt: skip


def _json_kind(v: Any) -> str:
    return (
        "null"
        if v is None
        else "bool"
        if isinstance(v, bool)
        else "int"
        if isinstance(v, int)
        else type(v).__name__
    )


NULLABLE = frozenset({"seqId", "prevSeqId", "checksum"})  # JSON integers, declared `int | None`


def _declared(channel: str) -> dict[str, str]:
    """Wire name -> 'num' (an OKX number string field), 'opt' (the same, "" allowed) or 'other'."""
    tp = push_type(channel)
    assert tp is not None
    conv = dict(tp.__conv__)
    out = {}
    for f in msgspec.structs.fields(tp):
        c = conv.get(f.name)
        name = getattr(c, "__name__", "")
        out[f.encode_name] = (
            "opt" if name.startswith("_opt") else "num" if c is not None and name != "_flag" else "other"
        )
    return out


@settings(FAST, max_examples=2000)
@given(st.data())
def test_wrong_json_type_in_a_record_field(draw: st.DataObject) -> None:
    src = draw.draw(st.sampled_from(DICT_PUSHES))
    rec = draw.draw(st.sampled_from(range(len(src["data"]))))
    key = draw.draw(st.sampled_from(sorted(src["data"][rec])))
    value = draw.draw(WRONG)
    original = src["data"][rec][key]
    mutated = json.loads(json.dumps(src))
    mutated["data"][rec][key] = value
    dec = WsDecoder()
    msg = _decode_checked(dec, json.dumps(mutated))
    declared = key in _declared(src["arg"]["channel"])
    event("declared field" if declared else "undeclared field")
    if not declared:
        assert msg is not None, f"undeclared {key} must not matter"
    elif _json_kind(value) != _json_kind(original) and not (value is None and key in NULLABLE):
        assert msg is None and dec.dropped == {"schema": 1}, (key, value)


@settings(FAST, max_examples=1500)
@given(st.data())
def test_bad_number_strings_are_dropped(draw: st.DataObject) -> None:
    src = draw.draw(st.sampled_from(DICT_PUSHES))
    kinds = _declared(src["arg"]["channel"])
    fields = sorted(k for k in src["data"][0] if kinds.get(k) in ("num", "opt"))
    key = draw.draw(st.sampled_from(fields))
    value = draw.draw(
        st.sampled_from(BAD_NUMBER_STRINGS) | st.text(min_size=1, max_size=8).filter(_not_a_number)
    )
    mutated = json.loads(json.dumps(src))
    mutated["data"][0][key] = value
    dec = WsDecoder()
    assert _decode_checked(dec, json.dumps(mutated)) is None, (key, value)


def _not_a_number(s: str) -> bool:
    return not all(c in "0123456789.-+eE" for c in s)


@settings(FAST, max_examples=1000)
@given(st.data())
def test_numbers_huge_negative_and_empty(draw: st.DataObject) -> None:
    """Plain decimal strings: accepted up to 64 characters; '-' only where the field is signed; '' only where
    optional. Whatever the outcome, the frame is either decoded or counted."""
    src = draw.draw(st.sampled_from(DICT_PUSHES))
    kinds = _declared(src["arg"]["channel"])
    key = draw.draw(st.sampled_from(sorted(k for k in src["data"][0] if kinds.get(k) in ("num", "opt"))))
    digits = draw.draw(st.integers(1, 120))
    value = draw.draw(
        st.sampled_from(["", "-" + "9" * digits, "9" * digits, "0." + "0" * digits + "1", "-0"])
    )
    mutated = json.loads(json.dumps(src))
    mutated["data"][0][key] = value
    dec = WsDecoder()
    msg = _decode_checked(dec, json.dumps(mutated))
    if value == "":
        assert (msg is not None) == (kinds[key] == "opt")
    elif len(value) > 64:
        assert msg is None
    if msg is not None and value:
        assert getattr(msg.data[0], _attr(src, key)) == Decimal(value)


def _attr(src: Any, key: str) -> str:
    tp = push_type(src["arg"]["channel"])
    assert tp is not None
    return next(f.name for f in msgspec.structs.fields(tp) if f.encode_name == key)


def test_negative_size_dropped_negative_fee_accepted() -> None:
    src = next(m for m in DICT_PUSHES if m["arg"]["channel"] == "orders")
    for key, value, ok in (
        ("sz", "-1", False),
        ("accFillSz", "-1", False),
        ("px", "-5", False),
        ("fee", "-0.5", True),
    ):
        mutated = json.loads(json.dumps(src))
        mutated["data"][0][key] = value
        assert (WsDecoder().decode(json.dumps(mutated)) is not None) is ok, key


@settings(FAST, max_examples=1000)
@given(st.data())
def test_wrong_types_in_arrays(draw: st.DataObject) -> None:
    """Book levels and candles are positional arrays of strings: any other type in them drops the frame."""
    src = draw.draw(st.sampled_from(BOOK_PUSHES + ARRAY_PUSHES))
    mutated = json.loads(json.dumps(src))
    if isinstance(mutated["data"][0], list):
        row = mutated["data"][0]
    else:
        side = draw.draw(st.sampled_from(["asks", "bids"]))
        row = mutated["data"][0][side][draw.draw(st.integers(0, len(mutated["data"][0][side]) - 1))]
    row[draw.draw(st.integers(0, len(row) - 1))] = draw.draw(WRONG)
    assert _decode_checked(WsDecoder(), json.dumps(mutated)) is None


@settings(FAST, max_examples=1200)
@given(st.data())
def test_envelope_mutations(draw: st.DataObject) -> None:
    """Drop, retype or rename top-level keys of any real message: decoded or counted, never raised."""
    src = draw.draw(st.sampled_from(REAL))
    mutated = dict(src)
    key = draw.draw(st.sampled_from(sorted(mutated)))
    action = draw.draw(st.sampled_from(["drop", "retype", "rename"]))
    if action == "drop":
        del mutated[key]
    elif action == "retype":
        mutated[key] = draw.draw(WRONG | st.text(max_size=5))
    else:
        mutated[key + "x"] = mutated.pop(key)
    dec = WsDecoder()
    _decode_checked(dec, json.dumps(mutated))
    if action == "drop" and key in ("data", "arg") and "event" not in src and "op" not in src:
        assert dec.dropped_total == 1


@settings(FAST, max_examples=500)
@given(st.sampled_from(range(len(REAL))), st.booleans(), st.sampled_from([None, 0, 2]))
def test_reserialisation_does_not_change_the_result(i: int, sort_keys: bool, indent: int | None) -> None:
    first = decode_ws(REAL_BYTES[i])
    again = decode_ws(json.dumps(REAL[i], sort_keys=sort_keys, indent=indent))
    assert again == first


def test_deep_nesting_and_big_frames() -> None:
    dec = WsDecoder()
    for raw in (b"[" * 100_000, b'{"a":' * 100_000, b'{"arg":{"channel":"tickers"},"data":' + b"[" * 50_000,
                b'{"event":"notice","code":"64008","msg":"' + b"x" * 2_000_000 + b'"}'):  # fmt: skip
        _decode_checked(dec, raw)
    assert dec.dropped_total == 3  # the 2 MB notice is valid


def test_pong_is_not_counted_as_a_drop() -> None:
    dec = WsDecoder()
    assert (
        dec.decode("pong") is PONG and dec.decode(b"pong") is PONG and dec.decode(bytearray(b"pong")) is PONG
    )
    assert dec.decode("pong ") is None and dec.decode("PONG") is None
    assert dec.total == 5 and dec.dropped == {"json": 2}


def test_decode_ws_raises_only_decode_error() -> None:
    for raw in (b"\xff\xfe", b'"\\ud800"', b'{"data":[]}', b"null", b"1e999", "\x00"):
        with pytest.raises(DecodeError):
            decode_ws(raw)

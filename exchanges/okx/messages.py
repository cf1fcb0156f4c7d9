"""Decoding OKX v5 messages: the WebSocket message union, `decode_ws`, `WsDecoder` and `decode_rest`.

  decode_ws(raw)            -> Pong | Event | Push | OpReply; anything malformed -> DecodeError(reason)
  WsDecoder().decode(raw)   -> the same, or None after counting the drop by reason (reader loops)
  decode_rest(raw, T)       -> list[T]; code != "0" -> the typed error of errors.py; malformed -> DecodeError

The records (Ticker, OrderRec, PositionRec, OrderAck, ...) are defined in `records.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Generic, TypeVar

import msgspec

from exchanges.okx.errors import error_for, raise_for_reply
from exchanges.okx.records import (
    AccountRec,
    AlgoOrderRec,
    Book,
    Candle,
    OrderAck,
    OrderRec,
    PositionRec,
    Ticker,
    Trade,
)
from exchanges.okx.wire import I64, DecodeError, Wire

__all__ = [
    "PONG", "Arg", "DecodeError", "Event", "OpReply", "Pong", "Push", "WsDecoder", "WsMessage",
    "decode_rest", "decode_ws", "push_type",
]  # fmt: skip

T = TypeVar("T")


class Arg(msgspec.Struct, frozen=True, rename="camel"):
    """The subscription a push or an ack belongs to."""

    channel: str
    inst_id: str = ""
    inst_type: str = ""
    inst_family: str = ""
    uid: str = ""
    ccy: str = ""


class Pong:
    """The literal text frame "pong" (the answer to our "ping")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PONG"


PONG: Final = Pong()

EVENTS: Final = frozenset(
    {
        "login",
        "subscribe",
        "unsubscribe",
        "error",
        "notice",
        "channel-conn-count",
        "channel-conn-count-error",
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """login / subscribe / unsubscribe acks, error, notice (64008: reconnect soon),
    channel-conn-count(-error)."""

    event: str
    code: str = ""
    msg: str = ""
    conn_id: str = ""
    id: str = ""
    arg: Arg | None = None
    channel: str = ""  # channel-conn-count(-error)
    conn_count: int | None = None

    @property
    def failed(self) -> bool:
        return self.event in ("error", "channel-conn-count-error") or (
            self.event == "login" and self.code != "0"
        )

    def error(self) -> Exception:
        """The typed error for a failed event (e.g. 60009 login -> AuthError)."""
        return error_for(self.code or self.event, self.msg)


@dataclass(frozen=True, slots=True)
class Push(Generic[T]):
    """Channel data. books: `action` snapshot/update; positions/account: `event_type` snapshot or
    event_update, with `cur_page`/`last_page` when a snapshot spans several messages."""

    channel: str
    arg: Arg
    data: list[T]
    action: str | None = None
    event_type: str | None = None
    cur_page: int | None = None
    last_page: bool | None = None


ORDER_OPS: Final = frozenset(
    {
        "order",
        "batch-orders",
        "cancel-order",
        "batch-cancel-orders",
        "amend-order",
        "batch-amend-orders",
    }
)


@dataclass(frozen=True, slots=True)
class OpReply:
    """The reply to a WS trade op (`op: order` etc.), matched to the request by `id`."""

    id: str
    op: str
    code: str
    msg: str
    data: list[OrderAck]
    in_time: int | None = None
    out_time: int | None = None

    def acks(self) -> list[OrderAck]:
        """The acks when every order was accepted, else the typed error of the first failed one."""
        raise_for_reply(self.code, self.msg, ((a.s_code, a.s_msg) for a in self.data))
        return self.data


WsMessage = Pong | Event | Push[Any] | OpReply

_BOOKS: Final = ("books", "books5", "bbo-tbt", "books-l2-tbt", "books50-l2-tbt", "books-elp")
_PUSH_TYPES: Final[dict[str, type[Wire]]] = {
    "tickers": Ticker,
    "trades": Trade,
    "trades-all": Trade,
    "orders": OrderRec,
    "orders-algo": AlgoOrderRec,
    "positions": PositionRec,
    "account": AccountRec,
    **dict.fromkeys(_BOOKS, Book),
}


def push_type(channel: str) -> type[Wire] | None:
    """The record type of a channel's data[], None for channels we do not decode."""
    if channel.startswith("candle"):  # candle1m, candle1H, candle1Dutc, ...
        return Candle
    return _PUSH_TYPES.get(channel)


class _WsEnvelope(msgspec.Struct, frozen=True, rename="camel"):
    event: str | None = None
    op: str | None = None
    arg: Arg | None = None
    args: list[Arg] | None = None  # some docs examples of acks carry a list
    data: msgspec.Raw = msgspec.Raw()  # decoded once the channel is known
    code: str | None = None
    msg: str = ""
    id: str = ""
    conn_id: str = ""
    action: str | None = None
    event_type: str | None = None
    cur_page: I64 | None = None
    last_page: bool | None = None
    channel: str = ""
    conn_count: str | None = None  # a digit string
    in_time: str | None = None
    out_time: str | None = None


_ENVELOPE: Final = msgspec.json.Decoder(_WsEnvelope)


@cache
def _list_decoder(tp: type[Any]) -> msgspec.json.Decoder[list[Any]]:
    return msgspec.json.Decoder(list[tp])  # type: ignore[valid-type]


def _decode_raw(decoder: msgspec.json.Decoder[Any], raw: Any) -> Any:
    """msgspec's errors (and deep-nesting RecursionError) as DecodeError: the one type callers handle."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise DecodeError("schema", str(e)) from None
    except msgspec.DecodeError as e:
        raise DecodeError("json", str(e)) from None
    except RecursionError:
        raise DecodeError("json", "nested too deeply") from None
    except (TypeError, ValueError, UnicodeError, ArithmeticError) as e:  # never expected: be total anyway
        raise DecodeError("schema", type(e).__name__) from None


def _digits(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        raise DecodeError("schema", f"{what} is not a digit string")
    return int(value)


def decode_ws(raw: str | bytes | bytearray | memoryview) -> WsMessage:
    """One WebSocket frame -> Pong | Event | Push | OpReply. Raises only DecodeError."""
    if not isinstance(raw, str | bytes | bytearray | memoryview):
        raise DecodeError("input_type", type(raw).__name__)
    if raw == "pong" or raw == b"pong":
        return PONG
    env: _WsEnvelope = _decode_raw(_ENVELOPE, raw)
    if env.event is not None:
        return _event(env)
    if env.op is not None:
        return _op_reply(env)
    if env.arg is not None and len(env.data):
        return _push(env)
    raise DecodeError("unknown_shape", "no event, op or arg+data")


def _event(env: _WsEnvelope) -> Event:
    if env.event not in EVENTS:
        raise DecodeError("unknown_event", (env.event or "")[:40])
    arg = env.arg if env.arg is not None else (env.args[0] if env.args else None)
    if env.event in ("subscribe", "unsubscribe") and arg is None:
        raise DecodeError("schema", f"{env.event} ack without arg")
    if env.event in ("login", "error", "notice") and not env.code:
        raise DecodeError("schema", f"{env.event} without code")
    if env.event.startswith("channel-conn-count") and (not env.channel or env.conn_count is None):
        raise DecodeError("schema", f"{env.event} without channel/connCount")
    return Event(
        event=env.event,
        code=env.code or "",
        msg=env.msg,
        conn_id=env.conn_id,
        id=env.id,
        arg=arg,
        channel=env.channel,
        conn_count=_digits(env.conn_count, "connCount"),
    )


def _op_reply(env: _WsEnvelope) -> OpReply:
    if env.op not in ORDER_OPS:
        raise DecodeError("unknown_op", (env.op or "")[:40])
    if env.code is None or not len(env.data):
        raise DecodeError("schema", "op reply without code or data")
    acks: list[OrderAck] = _decode_raw(_list_decoder(OrderAck), env.data)
    return OpReply(
        id=env.id,
        op=env.op,
        code=env.code,
        msg=env.msg,
        data=acks,
        in_time=_digits(env.in_time, "inTime"),
        out_time=_digits(env.out_time, "outTime"),
    )


def _push(env: _WsEnvelope) -> Push[Any]:
    assert env.arg is not None  # checked by decode_ws
    tp = push_type(env.arg.channel)
    if tp is None:
        raise DecodeError("unknown_channel", env.arg.channel[:40])
    data = _decode_raw(_list_decoder(tp), env.data)
    return Push(
        channel=env.arg.channel,
        arg=env.arg,
        data=data,
        action=env.action,
        event_type=env.event_type,
        cur_page=env.cur_page,
        last_page=env.last_page,
    )


class WsDecoder:
    """decode_ws for a reader loop: bad frames are counted by reason and dropped, never raised."""

    __slots__ = ("dropped", "last_error", "total")

    def __init__(self) -> None:
        self.total = 0
        self.dropped: dict[str, int] = {}
        self.last_error: Exception | None = None

    def decode(self, raw: Any) -> WsMessage | None:
        self.total += 1
        try:
            return decode_ws(raw)
        except DecodeError as e:
            reason = e.reason
            self.last_error = e
        except Exception as e:  # a bug in decoding must not kill the reader: count it under its own key
            reason = "internal"
            self.last_error = e
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class _RestEnvelope(msgspec.Struct, frozen=True):
    code: str
    msg: str = ""
    data: msgspec.Raw = msgspec.Raw()


class _ItemCode(msgspec.Struct, frozen=True, rename="camel"):
    s_code: str = ""
    s_msg: str = ""


_REST_ENVELOPE: Final = msgspec.json.Decoder(_RestEnvelope)


def decode_rest(raw: bytes | str, data_type: type[T]) -> list[T]:
    """A REST body {code, msg, data} -> data as list[data_type].

    code != "0", or an item with sCode != "0": raises the typed error (errors.error_for) of the first
    failed item, else of the top-level code. Malformed body: DecodeError. Note for order placement: a
    DecodeError there means the outcome is unknown (the order may exist) - query it before any retry.
    """
    if not isinstance(raw, str | bytes | bytearray | memoryview):
        raise DecodeError("input_type", type(raw).__name__)
    env: _RestEnvelope = _decode_raw(_REST_ENVELOPE, raw)
    if env.code != "0":
        items: list[_ItemCode] = []
        if len(env.data):
            # data of an unexpected shape: the top-level code still tells what happened
            with contextlib.suppress(DecodeError):
                items = _decode_raw(_list_decoder(_ItemCode), env.data)
        raise_for_reply(env.code, env.msg, ((i.s_code, i.s_msg) for i in items))
    if not len(env.data):
        raise DecodeError("schema", "code 0 without data")
    data: list[T] = _decode_raw(_list_decoder(data_type), env.data)
    if data_type is OrderAck:
        raise_for_reply("0", env.msg, ((a.s_code, a.s_msg) for a in data))  # type: ignore[attr-defined]
    return data

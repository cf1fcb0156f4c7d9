"""Exchange events on their way to the engine: one Redis stream per symbol, plain-string entries.

The account process (private stream) and the order workers (what a job learned) both write here; the
engine reads through a consumer group and acknowledges after applying. An event may arrive twice (the
worker and the private stream both saw the fill): applying one is idempotent, because a transition only
fires from the state that expects it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import redis
from redis.client import Pipeline

from exchanges.base import ExchangePosition, Order, OrderSide, OrderState, OrderType
from statemachines.keys import Keys
from statemachines.redis_text import as_str

GROUP = "engine"
MAXLEN = 10_000  # per symbol; the engine acknowledges within milliseconds


def _d(v: Decimal | None) -> str:
    return "" if v is None else format(v, "f")


def _dec(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def order_fields(order: Order, source: str) -> dict[str, str]:
    return {
        "kind": "order", "source": source, "inst_id": order.inst_id, "cl_ord_id": order.cl_ord_id,
        "ord_id": order.ord_id, "side": order.side.value, "state": order.state.value,
        "size": _d(order.size), "filled": _d(order.filled), "avg_px": _d(order.avg_px),
        "ord_type": order.ord_type.value, "reduce_only": "1" if order.reduce_only else "0",
        "pos_side": order.pos_side, "fee": _d(order.fee), "pnl": _d(order.pnl), "ts_ms": str(order.u_time_ms),
    }  # fmt: skip


def position_fields(pos: ExchangePosition, *, snapshot: bool, source: str) -> dict[str, str]:
    return {
        "kind": "position", "source": source, "inst_id": pos.inst_id, "pos_side": pos.pos_side,
        "side": pos.side, "size": _d(pos.size), "avg_px": _d(pos.avg_px), "mark_px": _d(pos.mark_px),
        "liq_px": _d(pos.liq_px), "margin_ratio": _d(pos.margin_ratio), "snapshot": "1" if snapshot else "0",
        "realized_pnl": _d(pos.realized_pnl), "fee": _d(pos.fee), "ts_ms": str(pos.u_time_ms),
    }  # fmt: skip


def order_from(fields: dict[str, str]) -> Order:
    return Order(
        inst_id=fields["inst_id"], cl_ord_id=fields["cl_ord_id"], ord_id=fields.get("ord_id", ""),
        side=OrderSide(fields["side"]), state=OrderState(fields["state"]), size=Decimal(fields["size"]),
        filled=Decimal(fields.get("filled") or "0"), avg_px=_dec(fields.get("avg_px", "")),
        ord_type=OrderType(fields.get("ord_type", "market")), reduce_only=fields.get("reduce_only") == "1",
        pos_side=fields.get("pos_side", "net"), fee=Decimal(fields.get("fee") or "0"),
        pnl=Decimal(fields.get("pnl") or "0"), u_time_ms=int(fields.get("ts_ms") or 0),
    )  # fmt: skip


def position_from(fields: dict[str, str]) -> ExchangePosition:
    return ExchangePosition(
        inst_id=fields["inst_id"], pos_side=fields.get("pos_side", "net"), side=fields["side"],
        size=Decimal(fields["size"]), avg_px=Decimal(fields.get("avg_px") or "0"),
        mark_px=_dec(fields.get("mark_px", "")), liq_px=_dec(fields.get("liq_px", "")),
        margin_ratio=_dec(fields.get("margin_ratio", "")),
        realized_pnl=Decimal(fields.get("realized_pnl") or "0"), fee=Decimal(fields.get("fee") or "0"),
        u_time_ms=int(fields.get("ts_ms") or 0),
    )  # fmt: skip


class EventBus:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def publish(self, symbol: str, fields: dict[str, str], pipe: Any = None) -> None:
        (pipe or self.client).xadd(self.keys.events(symbol), fields, maxlen=MAXLEN, approximate=True)

    def publish_order(self, order: Order, source: str) -> None:
        self.publish(order.inst_id, order_fields(order, source))

    def ensure_groups(self, symbols: list[str]) -> None:
        for symbol in symbols:
            try:
                self.client.xgroup_create(self.keys.events(symbol), GROUP, id="0", mkstream=True)
            except redis.ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise

    def queue_read(self, pipe: Pipeline, symbols: list[str], consumer: str, count: int = 200) -> None:
        """The consumer's events as two commands on the caller's pipeline (the engine's one round trip per
        loop): first whatever it was given but never acknowledged (a crash between reading and applying),
        then new entries. Never blocks. Give both replies to `decode`: (symbol, entry id, fields)."""
        for start in ("0", ">"):
            pipe.xreadgroup(GROUP, consumer, {self.keys.events(s): start for s in symbols}, count=count)

    @staticmethod
    def decode(replies: list[Any]) -> list[tuple[str, str, dict[str, str]]]:
        out: list[tuple[str, str, dict[str, str]]] = []
        for reply in replies:  # the pending ones first: "0" ran before ">" delivered anything new
            for key, entries in reply or []:
                symbol = Keys.symbol_of(key)
                out += [(symbol, as_str(eid), {as_str(k): as_str(v) for k, v in f.items()})
                        for eid, f in entries if f]
        return out

    def ack_all(self, done: list[tuple[str, str]]) -> None:
        """Acknowledge (symbol, entry id) pairs, once they are applied: one round trip."""
        if not done:
            return
        pipe = self.client.pipeline(transaction=False)
        for symbol, entry_id in done:
            pipe.xack(self.keys.events(symbol), GROUP, entry_id)
        pipe.execute()


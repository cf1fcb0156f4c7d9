"""The paper account in Redis, readable with redis-cli: plain-string hashes, one MULTI/EXEC per change.

    K = {prefix}:paper:{ACCOUNT}      the braces are a Cluster hash tag: one account, one slot, so a MULTI
                                      over several of its keys stays legal on a cluster
    K:account              HASH    ccy cash frozen start (cash = free cash, frozen = held by pending orders)
    K:pos:INST:POSSIDE     HASH    inst_id pos_side side size avg_px margin lever realized_pnl fee ...
    K:positions            SET     INST:POSSIDE of the open positions
    K:lever                HASH    INST:POSSIDE -> leverage chosen with set_leverage
    K:order:CLORDID        HASH    the latest order with that client id (Order fields + frozen partial rest)
    K:orders               SET     client ids of pending (live / partially_filled) orders
    K:orders:done          ZSET    client ids of finished orders -> when they finished (wall clock)
    K:stop:ALGOCLORDID     HASH    the latest protective stop with that algo client id (StopOrder fields)
    K:stops                SET     algo client ids of live stops
    K:stops:done           ZSET    algo client ids of stops no longer live -> since when (wall clock)
    K:fills                STREAM  one entry per fill, liquidations included (liq=1)
    K:seq                  STRING  counter behind ordId, algoId and tradeId

e.g. `redis-cli HGETALL 'scalper:paper:{main}:pos:BTC-USDT-SWAP:net'`. A fill rewrites the order, the
position, the account and appends the fill in one transaction, so a crash never leaves half a fill.
One writer per account is assumed (the PaperExchange owning it); readers may be anything. The `done` sets
are the queues of exchanges/paper/retention.py, which removes finished records after the venue's history.
"""

from __future__ import annotations

import functools
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from enum import Enum
from typing import Any

import redis

from exchanges.base import Order, StopOrder
from exchanges.paper.ledger import ZERO, Pos, fmt
from statemachines.redis_text import as_str

FILLS_MAXLEN = 100_000  # the fills stream is a log for people and tests; trimmed approximately


@dataclass(frozen=True, slots=True)
class Account:
    ccy: str
    cash: Decimal  # free cash: not in any position's isolated margin
    frozen: Decimal  # part of cash held for pending orders' opening margin and fee
    start: Decimal


@dataclass(frozen=True, slots=True)
class OrderRec:
    order: Order
    frozen: Decimal = ZERO  # margin + taker fee held for the unfilled opening part
    partial: Decimal | None = None  # injected fault: the first fill takes only this fraction of the size
    rest: str = "live"  # ...and then the rest stays "live" or is "cancel"led
    c_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class PosRec:
    inst_id: str
    pos_side: str  # "net" | "long" | "short"
    pos: Pos
    c_time_ms: int = 0
    u_time_ms: int = 0

    @property
    def key(self) -> str:
        return pos_key(self.inst_id, self.pos_side)


@dataclass(frozen=True, slots=True)
class Snapshot:
    account: Account
    positions: dict[str, PosRec]  # by pos_key
    orders: list[OrderRec]  # pending only
    stops: list[StopOrder]  # live only


def pos_key(inst_id: str, pos_side: str) -> str:
    return f"{inst_id}:{pos_side}"


# --- plain-string codec for the dataclasses above (and base.Order / base.StopOrder) ---


def enc(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return fmt(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):  # of ids (no commas in them)
        return ",".join(map(str, value))
    return str(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dec(tp: Any, raw: str) -> Any:
    args = typing.get_args(tp)
    if type(None) in args:
        if raw == "":
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is Decimal:
        return Decimal(raw)
    if tp is bool:
        return raw == "1"
    if tp is int:
        return int(raw)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(raw)
    if typing.get_origin(tp) is tuple:
        return tuple(raw.split(",")) if raw else ()
    return raw


def to_hash(obj: Any, skip: Iterable[str] = ()) -> dict[str, str]:
    return {f.name: enc(getattr(obj, f.name)) for f in fields(obj) if f.name not in skip}


def from_hash(cls: type, data: Mapping[str, str], **extra: Any) -> Any:
    hints = _hints(cls)
    kw = {name: _dec(hints[name], data[name]) for name in hints if name in data and name not in extra}
    return cls(**kw, **extra)


def _decode(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {as_str(k): as_str(v) for k, v in raw.items()}


def order_hash(rec: OrderRec) -> dict[str, str]:
    return to_hash(rec.order) | to_hash(rec, skip=("order",))


def order_rec(data: Mapping[str, str]) -> OrderRec:
    return from_hash(OrderRec, data, order=from_hash(Order, data))


def pos_hash(rec: PosRec) -> dict[str, str]:
    return to_hash(rec.pos) | to_hash(rec, skip=("pos",))


def pos_rec(data: Mapping[str, str]) -> PosRec:
    return from_hash(PosRec, data, pos=from_hash(Pos, data))


class PaperState:
    """Reads and transactional writes of one paper account."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "scalper",
        account: str = "main",
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`wall`: the clock that stamps when an order or stop finished (the retention's queue)."""
        for part in (prefix, account):
            if not part or any(ch in "{} \t\r\n" for ch in part):
                raise ValueError(f"invalid key part {part!r}")
        self.client = client
        self.k = f"{prefix}:paper:{{{account}}}"
        self.wall = wall

    # --- keys ---

    def key(self, *parts: str) -> str:
        return ":".join((self.k, *parts))

    # --- reads ---

    def init_account(self, ccy: str, start: Decimal) -> None:
        """Create the account once; an existing one (a restart) is left untouched."""
        initial = {"ccy": ccy, "cash": enc(start), "frozen": "0", "start": enc(start)}
        pipe = self.client.pipeline(transaction=True)
        for name, value in initial.items():
            pipe.hsetnx(self.key("account"), name, value)
        pipe.execute()

    def account(self) -> Account:
        return from_hash(Account, _decode(self.client.hgetall(self.key("account"))))

    def order(self, cl_ord_id: str) -> OrderRec | None:
        raw = self.client.hgetall(self.key("order", cl_ord_id))
        return order_rec(_decode(raw)) if raw else None

    def stop(self, algo_cl_ord_id: str) -> StopOrder | None:
        raw = self.client.hgetall(self.key("stop", algo_cl_ord_id))
        return from_hash(StopOrder, _decode(raw)) if raw else None

    def lever(self, inst_id: str, pos_side: str) -> Decimal | None:
        raw = self.client.hget(self.key("lever"), pos_key(inst_id, pos_side))
        return Decimal(as_str(raw)) if raw is not None else None

    def next_id(self) -> str:
        # Outside the fill's MULTI: a crash in between only leaves a gap in the numbering.
        return str(self.client.incr(self.key("seq")))

    def snapshot(self) -> Snapshot:
        """Everything live in the account: two round trips (the index sets, then the hashes)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.key("account"))
        pipe.smembers(self.key("positions"))
        pipe.smembers(self.key("orders"))
        pipe.smembers(self.key("stops"))
        acct, pos_ids, ord_ids, stop_ids = pipe.execute()
        pos_ids, ord_ids, stop_ids = (sorted(as_str(x) for x in ids) for ids in (pos_ids, ord_ids, stop_ids))
        pipe = self.client.pipeline(transaction=False)
        for pid in pos_ids:
            pipe.hgetall(self.key("pos", pid))
        for oid in ord_ids:
            pipe.hgetall(self.key("order", oid))
        for sid in stop_ids:
            pipe.hgetall(self.key("stop", sid))
        raws = [_decode(r) for r in pipe.execute()] if pos_ids or ord_ids or stop_ids else []
        n_pos, n_ord = len(pos_ids), len(ord_ids)
        positions = [pos_rec(r) for r in raws[:n_pos] if r]
        orders = [order_rec(r) for r in raws[n_pos : n_pos + n_ord] if r]
        stops = [from_hash(StopOrder, r) for r in raws[n_pos + n_ord :] if r]
        return Snapshot(
            account=from_hash(Account, _decode(acct)),
            positions={p.key: p for p in positions},
            orders=sorted(orders, key=lambda r: int(r.order.ord_id)),  # oldest first: time priority
            stops=sorted(stops, key=lambda s: int(s.algo_id)),
        )

    def positions(self) -> list[PosRec]:
        """The open positions alone, as in `snapshot()` (a positions read needs nothing else): no account,
        orders or stops to fetch and parse."""
        ids = sorted(as_str(x) for x in self.client.smembers(self.key("positions")))
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for pid in ids:
            pipe.hgetall(self.key("pos", pid))
        return [pos_rec(r) for r in (_decode(raw) for raw in pipe.execute()) if r]

    def fills(self, count: int = 1000) -> list[dict[str, str]]:
        return [_decode(fields) for _, fields in self.client.xrange(self.key("fills"), count=count)]

    def recent_orders(self, inst_id: str, count: int = 500, since_ms: int | None = None) -> list[OrderRec]:
        """The orders behind the latest `count` fills on the instrument, newest first; with `since_ms`, behind
        every fill since then (the fills stream's ids are the venue's clock)."""
        ids: dict[str, None] = {}
        fills = self.client.xrevrange(self.key("fills"), count=count) if since_ms is None else (
            self.client.xrevrange(self.key("fills"), max="+", min=str(max(0, since_ms))))  # fmt: skip
        for _, raw in fills:
            fill = _decode(raw)
            if fill.get("inst_id") == inst_id and fill.get("cl_ord_id"):
                ids.setdefault(fill["cl_ord_id"], None)
        return [rec for cid in ids if (rec := self.order(cid)) is not None]

    # --- writes ---

    def txn(self) -> Txn:
        return Txn(self)

    def reset(self) -> None:
        """Delete the whole paper account (a fresh start on the next init_account)."""
        keys = list(self.client.scan_iter(match=self.key("*")))
        if keys:
            self.client.delete(*keys)


class Txn:
    """Writes collected into one MULTI/EXEC: all of them happen or none."""

    def __init__(self, state: PaperState) -> None:
        self.state = state
        self.pipe = state.client.pipeline(transaction=True)

    def account(self, acct: Account) -> Txn:
        self.pipe.hset(self.state.key("account"), mapping=to_hash(acct))
        return self

    def order(self, rec: OrderRec) -> Txn:
        key = self.state.key("order", rec.order.cl_ord_id)
        self.pipe.delete(key)  # the latest order with a client id replaces the earlier one entirely
        self.pipe.hset(key, mapping=order_hash(rec))
        if rec.order.state.terminal:
            self.pipe.srem(self.state.key("orders"), rec.order.cl_ord_id)
        else:
            self.pipe.sadd(self.state.key("orders"), rec.order.cl_ord_id)
        self._finished("orders", rec.order.cl_ord_id, rec.order.state.terminal)
        return self

    def position(self, inst_id: str, pos_side: str, rec: PosRec | None) -> Txn:
        pid = pos_key(inst_id, pos_side)
        key = self.state.key("pos", pid)
        self.pipe.delete(key)
        if rec is None:
            self.pipe.srem(self.state.key("positions"), pid)
        else:
            self.pipe.hset(key, mapping=pos_hash(rec))
            self.pipe.sadd(self.state.key("positions"), pid)
        return self

    def stop(self, stop: StopOrder) -> Txn:
        key = self.state.key("stop", stop.algo_cl_ord_id)
        self.pipe.hset(key, mapping=to_hash(stop))
        if stop.state == "live":
            self.pipe.sadd(self.state.key("stops"), stop.algo_cl_ord_id)
        else:
            self.pipe.srem(self.state.key("stops"), stop.algo_cl_ord_id)
        self._finished("stops", stop.algo_cl_ord_id, stop.state != "live")
        return self

    def _finished(self, kind: str, rid: str, finished: bool) -> None:
        """Queue a finished order or stop for the retention (since when: the first time it was seen
        finished), or take one that is live again (a client id used anew) out of the queue."""
        if finished:
            self.pipe.zadd(self.state.key(kind, "done"), {rid: self.state.wall()}, nx=True)
        else:
            self.pipe.zrem(self.state.key(kind, "done"), rid)

    def lever(self, inst_id: str, pos_side: str, lever: int) -> Txn:
        self.pipe.hset(self.state.key("lever"), pos_key(inst_id, pos_side), str(lever))
        return self

    def fill(self, entry: Mapping[str, str]) -> Txn:
        self.pipe.xadd(self.state.key("fills"), dict(entry), maxlen=FILLS_MAXLEN, approximate=True)
        return self

    def commit(self) -> None:
        self.pipe.execute()

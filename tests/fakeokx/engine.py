"""The fake OKX account: orders, fills against a price path the test drives, positions, balance, stops.

Linear SWAP arithmetic (PROTOCOL_RULES §9): notional = sz * ctVal * px; realised PnL on a reduction =
(px - avgPx) * closed * ctVal (negated for shorts); fees negative (charged). Net mode keeps one signed
position per instrument; long/short mode one non-negative record per posSide. Refusals raise `Refused`
with OKX's codes. Every change is reported through `changed(orders, positions, account)`, which the
server turns into orders / positions / account pushes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_ZERO = Decimal(0)


class Refused(Exception):
    def __init__(self, code: str, msg: str = ""):
        super().__init__(f"[{code}] {msg}")
        self.code, self.msg = code, msg


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FOrder:
    ord_id: str
    cl_ord_id: str
    inst_id: str
    side: str
    ord_type: str
    sz: Decimal
    px: Decimal | None
    td_mode: str
    pos_side: str
    reduce_only: bool
    lever: Decimal
    state: str = "live"
    acc_fill_sz: Decimal = _ZERO
    avg_px: Decimal | None = None
    fill_px: Decimal | None = None
    fill_sz: Decimal = _ZERO
    fee: Decimal = _ZERO
    pnl: Decimal = _ZERO
    trade_id: str = ""
    exec_type: str = ""
    c_time: int = field(default_factory=now_ms)
    u_time: int = field(default_factory=now_ms)
    fill_time: int | None = None
    algo_id: str = ""  # set on the order an algo (stop) placed when it triggered
    algo_cl_ord_id: str = ""


@dataclass
class FPos:
    inst_id: str
    pos_side: str
    mgn_mode: str
    lever: Decimal
    pos_id: str
    pos: Decimal = _ZERO  # signed in net mode
    avg_px: Decimal | None = None
    realized_pnl: Decimal = _ZERO
    fee: Decimal = _ZERO
    pnl: Decimal = _ZERO
    trade_id: str = ""
    c_time: int = field(default_factory=now_ms)
    u_time: int = field(default_factory=now_ms)


@dataclass
class FAlgo:
    algo_id: str
    algo_cl_ord_id: str
    inst_id: str
    side: str
    sz: Decimal
    sl_trigger_px: Decimal
    td_mode: str
    pos_side: str
    reduce_only: bool
    state: str = "live"
    c_time: int = field(default_factory=now_ms)
    u_time: int = field(default_factory=now_ms)
    ord_ids: list[str] = field(default_factory=list)  # ordIdList: the orders it placed when triggered


Changed = Callable[[list[FOrder], list[FPos], bool], None]


class Engine:
    def __init__(self, instruments: list[dict[str, Any]], *, pos_mode: str = "net_mode",
                 cash: Decimal = Decimal(10_000), fee_rate: Decimal = Decimal("0.0005")) -> None:  # fmt: skip
        self.instruments = {i["instId"]: i for i in instruments}
        self.pos_mode = pos_mode
        self.cash = cash
        self.fee_rate = fee_rate
        self.prices: dict[str, Decimal] = {}
        self.orders: dict[str, FOrder] = {}
        self.positions: dict[tuple[str, str], FPos] = {}
        self.algos: dict[str, FAlgo] = {}
        self.levers: dict[tuple[str, str], Decimal] = {}
        self._ids = itertools.count(700_000_000_000_000_001)
        self._trades = itertools.count(90_000_001)
        self.changed: Changed = lambda orders, positions, account: None

    def next_id(self) -> str:
        return str(next(self._ids))

    # --- lookups ---

    def inst(self, inst_id: str) -> dict[str, Any]:
        inst = self.instruments.get(inst_id)
        if inst is None:
            raise Refused("51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
        return inst

    def find_order(self, ord_id: str = "", cl_ord_id: str = "") -> FOrder | None:
        if ord_id:
            return self.orders.get(ord_id)
        # Like OKX: the latest order with this clOrdId
        matches = [o for o in self.orders.values() if o.cl_ord_id == cl_ord_id]
        return matches[-1] if matches else None

    def pending(self) -> list[FOrder]:
        return [o for o in self.orders.values() if o.state in ("live", "partially_filled")]

    def find_algo(self, algo_id: str = "", algo_cl_ord_id: str = "") -> FAlgo | None:
        for a in self.algos.values():
            if (algo_id and a.algo_id == algo_id) or (algo_cl_ord_id and a.algo_cl_ord_id == algo_cl_ord_id):
                return a
        return None

    # --- orders ---

    def place(self, a: dict[str, Any], algo: FAlgo | None = None) -> FOrder:
        inst = self.inst(a.get("instId", ""))
        cl = a.get("clOrdId", "")
        if cl and any(o.cl_ord_id == cl for o in self.pending()):
            raise Refused("51016", "Client order ID already exists.")
        side, ord_type = a.get("side"), a.get("ordType")
        if side not in ("buy", "sell") or ord_type not in ("market", "limit"):
            raise Refused("51000", "Parameter side/ordType error")
        sz = Decimal(a.get("sz", "0"))
        lot, min_sz = Decimal(inst["lotSz"]), Decimal(inst["minSz"])
        if sz % lot != 0:
            raise Refused("51121", "Order quantity must be a multiple of the lot size.")
        if sz < min_sz:
            raise Refused("51020", "Your order should meet or exceed the minimum order amount.")
        px = Decimal(a["px"]) if ord_type == "limit" else None
        if px is not None and (px <= 0 or px % Decimal(inst["tickSz"]) != 0):
            raise Refused("51000", "Parameter px error")
        pos_side = self._pos_side(a)
        reduce_only = a.get("reduceOnly") in (True, "true")
        closing = self._closing(inst["instId"], side, pos_side, reduce_only)
        if closing and not self._held(inst["instId"], side, pos_side):
            raise Refused(
                "51169",
                "Order failed because you don't have any positions in this direction "
                "for this contract to reduce or close.",
            )
        lever = self.levers.get((inst["instId"], a.get("tdMode", "")), Decimal(10))
        last = self.prices.get(inst["instId"])
        if last is None:
            raise Refused("51000", "no price yet for this instrument (fake: call set_price first)")
        if not closing and sz * Decimal(inst["ctVal"]) * (px or last) / lever > self.available():
            raise Refused("51008", "Order failed. Insufficient USDT margin in account")
        order = FOrder(
            self.next_id(),
            cl,
            inst["instId"],
            side,
            ord_type,
            sz,
            px,
            a.get("tdMode", "cross"),
            pos_side,
            reduce_only,
            lever,
        )
        if algo is not None:  # like OKX: the triggered order names its algo, the algo lists the order
            order.algo_id, order.algo_cl_ord_id = algo.algo_id, algo.algo_cl_ord_id
            algo.ord_ids.append(order.ord_id)
        self.orders[order.ord_id] = order
        self.changed([order], [], False)  # the first push: live
        if ord_type == "market" or (side == "buy" and px >= last) or (side == "sell" and px <= last):
            self._fill(
                order,
                last if ord_type == "market" else min(px, last) if side == "buy" else max(px, last),
                "T",
            )
        return order

    def _pos_side(self, a: dict[str, Any]) -> str:
        ps = a.get("posSide", "")
        if self.pos_mode == "long_short_mode":
            if ps not in ("long", "short"):
                raise Refused("51000", "Parameter posSide error")
            return str(ps)
        if ps not in ("", "net"):
            raise Refused("51000", "Parameter posSide error")
        return "net"

    def _closing(self, inst_id: str, side: str, pos_side: str, reduce_only: bool) -> bool:
        if pos_side == "net":
            return reduce_only
        return (pos_side == "long") == (side == "sell")

    def _held(self, inst_id: str, side: str, pos_side: str) -> bool:
        p = self.positions.get((inst_id, pos_side))
        if p is None or p.pos == 0:
            return False
        return pos_side != "net" or (p.pos > 0) == (side == "sell")

    def cancel(self, inst_id: str, ord_id: str = "", cl_ord_id: str = "") -> FOrder:
        order = self.find_order(ord_id, cl_ord_id)
        if order is None or order.inst_id != inst_id:
            raise Refused("51603", "Order does not exist")
        if order.state not in ("live", "partially_filled"):
            raise Refused(
                "51400", "Order cancellation failed as the order has been filled, canceled or does not exist."
            )
        order.state, order.u_time = "canceled", now_ms()
        self.changed([order], [], True)
        return order

    def close_position(self, a: dict[str, Any]) -> FOrder:
        """POST close-position: a market order for the whole position, under the request's clOrdId. Pending
        close orders on the position block it (51115) unless autoCxl, which cancels them first."""
        inst = self.inst(a.get("instId", ""))
        inst_id, cl, mgn_mode = inst["instId"], a.get("clOrdId", ""), a.get("mgnMode", "")
        if mgn_mode not in ("cross", "isolated"):
            raise Refused("51000", "Parameter mgnMode error")
        pos_side = self._pos_side(a)
        if cl and any(o.cl_ord_id == cl for o in self.pending()):
            raise Refused("51016", "Client order ID already exists.")
        p = self.positions.get((inst_id, pos_side))
        if p is None or p.pos == 0 or p.mgn_mode != mgn_mode:  # positions are per margin mode at OKX
            raise Refused("51023", "Position doesn't exist.")
        side = "sell" if (p.pos > 0 if pos_side == "net" else pos_side == "long") else "buy"
        blocking = [o for o in self.pending() if o.inst_id == inst_id and o.pos_side == pos_side
                    and self._closing(inst_id, o.side, pos_side, o.reduce_only)]  # fmt: skip
        if blocking and a.get("autoCxl") not in (True, "true"):
            raise Refused("51115", "Cancel all pending close-orders before liquidation.")
        for o in blocking:
            self.cancel(inst_id, o.ord_id)
        args: dict[str, Any] = {"instId": inst_id, "tdMode": mgn_mode, "clOrdId": cl, "side": side,
                                "ordType": "market", "sz": str(abs(p.pos))}  # fmt: skip
        if pos_side == "net":
            args["reduceOnly"] = True
        else:
            args["posSide"] = pos_side
        return self.place(args)

    def set_leverage(self, inst_id: str, lever: Decimal, mgn_mode: str) -> None:
        self.inst(inst_id)
        self.levers[(inst_id, mgn_mode)] = lever

    # --- prices and fills ---

    def set_price(self, inst_id: str, px: Decimal) -> None:
        self.inst(inst_id)
        self.prices[inst_id] = px
        for o in list(self.pending()):
            if (
                o.inst_id == inst_id
                and o.px is not None
                and ((o.side == "buy" and px <= o.px) or (o.side == "sell" and px >= o.px))
            ):
                self._fill(o, o.px, "M")
        for algo in list(self.algos.values()):
            if (
                algo.inst_id == inst_id
                and algo.state == "live"
                and (
                    (algo.side == "sell" and px <= algo.sl_trigger_px)
                    or (algo.side == "buy" and px >= algo.sl_trigger_px)
                )
            ):
                self._trigger(algo)

    def _fill(self, o: FOrder, px: Decimal, exec_type: str) -> None:
        inst = self.instruments[o.inst_id]
        ct_val = Decimal(inst["ctVal"])
        key = (o.inst_id, o.pos_side)
        p = self.positions.get(key)
        if p is None:
            p = self.positions[key] = FPos(o.inst_id, o.pos_side, o.td_mode, o.lever, self.next_id())
        sz = o.sz - o.acc_fill_sz
        signed = sz if o.side == "buy" else -sz
        if o.pos_side != "net":  # long/short records hold a non-negative size
            signed = sz if (o.side == "buy") == (o.pos_side == "long") else -sz
        if o.reduce_only and o.pos_side == "net":
            signed = max(-abs(p.pos), min(abs(p.pos), signed)) if p.pos * signed < 0 else _ZERO
            sz = abs(signed)
            if sz == 0:
                o.state, o.u_time = "canceled", now_ms()
                self.changed([o], [], False)
                return
        direction = Decimal(1) if p.pos >= 0 else Decimal(-1)
        if o.pos_side == "short":
            direction = Decimal(-1)
        pnl = _ZERO
        new = p.pos + signed
        if p.pos == 0 or (p.pos > 0) == (signed > 0):  # open or add
            p.avg_px = (abs(p.pos) * (p.avg_px or _ZERO) + sz * px) / abs(new)
        else:
            closed = min(abs(p.pos), sz)
            pnl = (px - (p.avg_px or px)) * closed * ct_val * direction
            if new != 0 and (new > 0) != (p.pos > 0):
                p.avg_px = px  # flipped through zero: the rest opens at the fill price
        fee = -(sz * ct_val * px * self.fee_rate)
        p.pos, p.u_time, p.mgn_mode, p.lever = new, now_ms(), o.td_mode, o.lever
        p.pnl += pnl
        p.fee += fee
        p.realized_pnl += pnl + fee
        trade_id = str(next(self._trades))
        p.trade_id = trade_id
        self.cash += pnl + fee
        o.acc_fill_sz += sz
        o.avg_px = px if o.avg_px is None else o.avg_px
        o.fill_px, o.fill_sz, o.fee, o.pnl = px, sz, o.fee + fee, o.pnl + pnl
        o.trade_id, o.exec_type, o.fill_time = trade_id, exec_type, now_ms()
        o.state = "filled" if o.acc_fill_sz >= o.sz else "partially_filled"
        o.u_time = now_ms()
        self.changed([o], [p], True)

    def _trigger(self, algo: FAlgo) -> None:
        algo.state, algo.u_time = "effective", now_ms()
        args: dict[str, Any] = {
            "instId": algo.inst_id,
            "tdMode": algo.td_mode,
            "side": algo.side,
            "ordType": "market",
            "sz": str(algo.sz),
        }
        if algo.pos_side == "net":
            args["reduceOnly"] = True
        else:
            args["posSide"] = algo.pos_side
        try:
            self.place(args, algo=algo)
        except Refused:
            algo.state = "order_failed"

    # --- algo orders ---

    def place_algo(self, a: dict[str, Any]) -> FAlgo:
        inst = self.inst(a.get("instId", ""))
        if a.get("ordType") != "conditional" or "slTriggerPx" not in a or a.get("slOrdPx") != "-1":
            raise Refused("51000", "Parameter ordType/slTriggerPx/slOrdPx error")
        cl = a.get("algoClOrdId", "")
        if cl and any(x.algo_cl_ord_id == cl and x.state == "live" for x in self.algos.values()):
            raise Refused("51016", "Client order ID already exists.")
        pos_side = self._pos_side(a)
        if pos_side == "net" and a.get("reduceOnly") not in (True, "true"):
            raise Refused("51000", "Parameter reduceOnly error (fake: stops must be reduce-only)")
        trigger = Decimal(a["slTriggerPx"])
        if trigger % Decimal(inst["tickSz"]) != 0:
            raise Refused("51000", "Parameter slTriggerPx error")
        algo = FAlgo(
            self.next_id(),
            cl,
            inst["instId"],
            a["side"],
            Decimal(a["sz"]),
            trigger,
            a.get("tdMode", "cross"),
            pos_side,
            pos_side == "net",
        )
        self.algos[algo.algo_id] = algo
        return algo

    def amend_algo(self, a: dict[str, Any]) -> FAlgo:
        algo = self.find_algo(a.get("algoId", ""), a.get("algoClOrdId", ""))
        if algo is None or algo.inst_id != a.get("instId") or algo.state != "live":
            raise Refused("51603", "Order does not exist")
        algo.sl_trigger_px, algo.u_time = Decimal(a["newSlTriggerPx"]), now_ms()
        return algo

    def cancel_algo(self, a: dict[str, Any]) -> FAlgo:
        algo = self.find_algo(a.get("algoId", ""), a.get("algoClOrdId", ""))
        if algo is None or algo.inst_id != a.get("instId") or algo.state != "live":
            raise Refused("51603", "Order does not exist")
        algo.state, algo.u_time = "canceled", now_ms()
        return algo

    # --- account ---

    def used_margin(self) -> Decimal:
        total = _ZERO
        for p in self.positions.values():
            if p.pos and p.avg_px:
                total += abs(p.pos) * Decimal(self.instruments[p.inst_id]["ctVal"]) * p.avg_px / p.lever
        return total

    def upl(self, p: FPos) -> Decimal:
        mark = self.prices.get(p.inst_id)
        if not p.pos or mark is None or p.avg_px is None:
            return _ZERO
        sign = Decimal(-1) if p.pos_side == "short" else Decimal(1)
        return (mark - p.avg_px) * p.pos * sign * Decimal(self.instruments[p.inst_id]["ctVal"])

    def equity(self) -> Decimal:
        return self.cash + sum((self.upl(p) for p in self.positions.values()), _ZERO)

    def available(self) -> Decimal:
        return self.equity() - self.used_margin()

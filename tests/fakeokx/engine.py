"""The fake OKX account: orders, fills against a price path the test drives, positions, balance, stops.

Linear SWAP arithmetic (PROTOCOL_RULES §9): notional = sz * ctVal * px; realised PnL on a reduction =
(px - avgPx) * closed * ctVal (negated for shorts); fees negative (charged). Net mode keeps one signed
position per instrument and margin mode; long/short mode one non-negative record per posSide and margin
mode. Refusals raise `Refused` with OKX's codes. Every change is reported through
`changed(orders, positions, account)`, which the server turns into orders / positions / account pushes.

Where the bot relies on OKX's behaviour, the fake follows OKX's documentation:
- a position is identified by (instId, posSide, mgnMode): an order, close or stop in another margin mode
  finds no position there (51169 for an order, 51023 for close-position) and never changes the margin mode
  of the one that exists; a request without tdMode / mgnMode is refused (50014), never defaulted;
- closing orders (reduce-only in net mode, every closing order in long/short mode) never close more than
  is held: a larger one is resized to the position as it fills (`oversize="resize"`, OKX's closing rule
  since June 2023: "cancel or modify ... so that the total equals the position"), or fills what is held
  and has its rest cancelled (`oversize="cancel"`); resting closing orders that would together close more
  than is held are resized or cancelled, the less favourable first; a market order never rests;
- a stop (conditional algo) is not checked against the position when placed; when it triggers, its market
  order follows the rules above, in the stop's own margin mode ("order_failed" when nothing is held there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.fakeokx.candles import Candles
from tests.fakeokx.records import FAlgo, FOrder, FPos, PosKey, Refused, margin_mode, now_ms

_ZERO = Decimal(0)
__all__ = ["Engine", "FAlgo", "FOrder", "FPos", "PosKey", "Refused", "now_ms"]


Changed = Callable[[list[FOrder], list[FPos], bool], None]


class Engine:
    def __init__(self, instruments: list[dict[str, Any]], *, pos_mode: str = "net_mode",
                 cash: Decimal = Decimal(10_000), fee_rate: Decimal = Decimal("0.0005"),
                 oversize: str = "resize") -> None:  # fmt: skip
        if oversize not in ("resize", "cancel"):
            raise ValueError("oversize: resize or cancel")
        self.instruments = {i["instId"]: i for i in instruments}
        self.pos_mode = pos_mode
        self.cash = cash
        self.fee_rate = fee_rate
        self.oversize = oversize
        self.prices: dict[str, Decimal] = {}
        self.candles = Candles()
        # GET positions also lists closed positions (pos "0"), as OKX does for an isolated one after a
        # margin transfer: a reader must take them as flat.
        self.flat_records = False
        self.orders: dict[str, FOrder] = {}
        self.positions: dict[PosKey, FPos] = {}
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
        return [o for o in self.orders.values() if o.pending]

    def held(self) -> list[FPos]:
        """The open positions (records with pos 0 are closed ones OKX may still show)."""
        return [p for p in self.positions.values() if p.pos]

    def find_algo(self, algo_id: str = "", algo_cl_ord_id: str = "") -> FAlgo | None:
        """The newest with this id: OKX refuses an algoClOrdId only while one under it is live."""
        for a in reversed(self.algos.values()):
            if (algo_id and a.algo_id == algo_id) or (algo_cl_ord_id and a.algo_cl_ord_id == algo_cl_ord_id):
                return a
        return None

    # --- orders ---

    def place(self, a: dict[str, Any], algo: FAlgo | None = None) -> FOrder:
        inst = self.inst(a.get("instId", ""))
        td_mode = margin_mode(a, "tdMode")
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
        closing = self._closing(side, pos_side, reduce_only)
        key = (inst["instId"], pos_side, td_mode)
        if closing:
            self._check_closable(key, side)
        lever = self.levers.get((inst["instId"], td_mode), Decimal(10))
        last = self.prices.get(inst["instId"])
        if last is None:
            raise Refused("51000", "no price yet for this instrument (fake: call set_price first)")
        if not closing and sz * Decimal(inst["ctVal"]) * (px or last) / lever > self.available():
            raise Refused("51008", "Order failed. Insufficient USDT margin in account")
        order = FOrder(self.next_id(), cl, inst["instId"], side, ord_type, sz, px, td_mode, pos_side,
                       reduce_only, lever)  # fmt: skip
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

    @staticmethod
    def _closing(side: str, pos_side: str, reduce_only: bool) -> bool:
        if pos_side == "net":
            return reduce_only
        return (pos_side == "long") == (side == "sell")

    def _check_closable(self, key: PosKey, side: str) -> None:
        """A closing order needs a position to reduce in its own margin mode and direction."""
        p = self.positions.get(key)
        if p is None or p.pos == 0:
            raise Refused(
                "51169",
                "Order failed because you don't have any positions in this direction "
                "for this contract to reduce or close.",
            )
        if key[1] == "net" and (p.pos > 0) == (side == "buy"):
            raise Refused(
                "51170",
                "Failed to place order. A reduce-only order can't be the same trading direction as your "
                "existing positions.",
            )

    def cancel(self, inst_id: str, ord_id: str = "", cl_ord_id: str = "") -> FOrder:
        order = self.find_order(ord_id, cl_ord_id)
        if order is None or order.inst_id != inst_id:
            raise Refused("51603", "Order does not exist")
        if not order.pending:
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
        inst_id, cl = inst["instId"], a.get("clOrdId", "")
        mgn_mode = margin_mode(a, "mgnMode")
        pos_side = self._pos_side(a)
        if cl and any(o.cl_ord_id == cl for o in self.pending()):
            raise Refused("51016", "Client order ID already exists.")
        key = (inst_id, pos_side, mgn_mode)
        p = self.positions.get(key)
        if p is None or p.pos == 0:  # positions are per margin mode at OKX
            raise Refused("51023", "Position doesn't exist.")
        side = "sell" if (p.pos > 0 if pos_side == "net" else pos_side == "long") else "buy"
        blocking = self._closing_orders(key)
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
                o.pending  # an earlier fill may have resized or cancelled it (the closing rule)
                and o.inst_id == inst_id
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
        ct_val = Decimal(self.instruments[o.inst_id]["ctVal"])
        p = self.positions.get(o.key)
        if p is None:
            p = self.positions[o.key] = FPos(o.inst_id, o.pos_side, o.td_mode, o.lever, self.next_id())
        sz = o.sz - o.acc_fill_sz
        closing = self._closing(o.side, o.pos_side, o.reduce_only)
        if closing:  # never more than is held, never through zero (OKX's closing rule)
            reducible = abs(p.pos) if o.pos_side != "net" or (p.pos > 0) == (o.side == "sell") else _ZERO
            sz = min(sz, reducible)
            if sz == 0:
                o.state, o.u_time = "canceled", now_ms()
                self.changed([o], [], False)
                return
        if o.pos_side == "net":
            signed = sz if o.side == "buy" else -sz
        else:  # long/short records hold a non-negative size
            signed = sz if (o.side == "buy") == (o.pos_side == "long") else -sz
        direction = Decimal(-1) if o.pos_side == "short" or p.pos < 0 else Decimal(1)
        pnl = _ZERO
        new = p.pos + signed
        if p.pos == 0:  # a new position (a closed record is reused, its lifetime figures restart)
            p.avg_px, p.pnl, p.fee, p.realized_pnl, p.lever = px, _ZERO, _ZERO, _ZERO, o.lever
            p.c_time = now_ms()
        elif (p.pos > 0) == (signed > 0):  # add
            p.avg_px = (abs(p.pos) * (p.avg_px or _ZERO) + sz * px) / abs(new)
        else:
            closed = min(abs(p.pos), sz)
            pnl = (px - (p.avg_px or px)) * closed * ct_val * direction
            if new != 0 and (new > 0) != (p.pos > 0):
                p.avg_px = px  # flipped through zero (net mode, not reduce-only): the rest opens at px
        fee = -(sz * ct_val * px * self.fee_rate)
        p.pos, p.u_time = new, now_ms()
        p.pnl += pnl
        p.fee += fee
        p.realized_pnl += pnl + fee
        trade_id = str(next(self._trades))
        p.trade_id = trade_id
        self.cash += pnl + fee
        o.acc_fill_sz += sz
        o.avg_px = px if o.avg_px is None else (o.avg_px * (o.acc_fill_sz - sz) + px * sz) / o.acc_fill_sz
        o.fill_px, o.fill_sz, o.fee, o.pnl = px, sz, o.fee + fee, o.pnl + pnl
        o.trade_id, o.exec_type, o.fill_time = trade_id, exec_type, now_ms()
        if o.acc_fill_sz >= o.sz:
            o.state = "filled"
        elif closing or o.ord_type == "market":  # nothing left to close, or a market order's rest
            if self.oversize == "resize" and closing:
                o.sz, o.state = o.acc_fill_sz, "filled"  # modified to what was held, then filled
            else:
                o.state = "canceled"
        else:
            o.state = "partially_filled"
        o.u_time = now_ms()
        self.changed([o], [p], True)
        self._fit_closing_orders(o.key)

    def _closing_orders(self, key: PosKey) -> list[FOrder]:
        closing = self._closing
        return [o for o in self.pending() if o.key == key and closing(o.side, o.pos_side, o.reduce_only)]

    def _fit_closing_orders(self, key: PosKey) -> None:
        """Pending closing orders never add up to more than is held: the ones that would fill first keep
        their size, the less favourable are resized or cancelled (OKX's closing rule)."""
        p = self.positions.get(key)
        budget = abs(p.pos) if p is not None else _ZERO
        waiting = sorted(self._closing_orders(key), key=lambda o: (o.px is not None,
                         (o.px or _ZERO) * (1 if o.side == "sell" else -1)))  # fmt: skip
        for o in waiting:
            rest = o.sz - o.acc_fill_sz
            if rest <= budget:
                budget -= rest
                continue
            if budget > 0:
                o.sz, budget = o.acc_fill_sz + budget, _ZERO
            else:
                o.state = "canceled"
            o.u_time = now_ms()
            self.changed([o], [], False)

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
        except Refused as e:  # e.g. nothing held in the stop's margin mode: the stop failed
            algo.state, algo.fail_code = "order_failed", e.code

    # --- algo orders ---

    def place_algo(self, a: dict[str, Any]) -> FAlgo:
        inst = self.inst(a.get("instId", ""))
        td_mode = margin_mode(a, "tdMode")
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
        algo = FAlgo(self.next_id(), cl, inst["instId"], a["side"], self._algo_size(inst, a.get("sz", "")),
                     trigger, td_mode, pos_side, pos_side == "net")  # fmt: skip
        self.algos[algo.algo_id] = algo
        return algo

    @staticmethod
    def _algo_size(inst: dict[str, Any], text: str, name: str = "sz") -> Decimal:
        try:
            sz = Decimal(text)
        except ArithmeticError:
            raise Refused("51000", f"Parameter {name} error") from None
        if sz <= 0 or sz % Decimal(inst["lotSz"]) != 0:
            raise Refused("51000", f"Parameter {name} error")
        return sz

    def amend_algo(self, a: dict[str, Any]) -> FAlgo:
        """POST amend-algos: a stop's size (newSz) and/or its trigger (newSlTriggerPx)."""
        algo = self.find_algo(a.get("algoId", ""), a.get("algoClOrdId", ""))
        if algo is None or algo.inst_id != a.get("instId") or algo.state != "live":
            raise Refused("51603", "Order does not exist")
        if "newSz" not in a and "newSlTriggerPx" not in a:
            raise Refused("51000", "Parameter newSz error")
        sz = self._algo_size(self.inst(algo.inst_id), a["newSz"], "newSz") if "newSz" in a else algo.sz
        trigger = Decimal(a["newSlTriggerPx"]) if "newSlTriggerPx" in a else algo.sl_trigger_px
        algo.sz, algo.sl_trigger_px, algo.u_time = sz, trigger, now_ms()
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
        for p in self.held():
            if p.avg_px:
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

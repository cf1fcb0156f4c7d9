"""The fake's records as OKX JSON: engine objects -> REST data[] items and WS push data[] items."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakeokx import templates as t
from tests.fakeokx.engine import Engine, FAlgo, FOrder, FPos, now_ms

num = t.num


def order(o: FOrder, *, rest: bool = False) -> dict[str, Any]:
    rec = t.rest_order_record() if rest else t.order_record()
    rec.update(
        instId=o.inst_id, instType="SWAP", ordId=o.ord_id, clOrdId=o.cl_ord_id, side=o.side,
        ordType=o.ord_type,
        sz=num(o.sz), px=num(o.px), tdMode=o.td_mode, posSide=o.pos_side, state=o.state,
        reduceOnly="true" if o.reduce_only else "false", lever=num(o.lever), accFillSz=num(o.acc_fill_sz),
        avgPx=num(o.avg_px), fillPx=num(o.fill_px), fillSz=num(o.fill_sz), fee=num(o.fee), feeCcy="USDT",
        pnl=num(o.pnl), tradeId=o.trade_id, cTime=str(o.c_time), uTime=str(o.u_time),
        fillTime="" if o.fill_time is None else str(o.fill_time), algoClOrdId=o.algo_cl_ord_id,
        algoId=o.algo_id, tag="",
    )  # fmt: skip
    if not rest:
        rec.update(execType=o.exec_type, fillFee=num(o.fee), fillPnl=num(o.pnl), code="0", msg="")
    return rec


def position(e: Engine, p: FPos) -> dict[str, Any]:
    rec = t.position_record()
    inst = e.instruments[p.inst_id]
    mark = e.prices.get(p.inst_id)
    size = abs(p.pos)
    ct_val = Decimal(inst["ctVal"])
    margin = size * ct_val * (p.avg_px or Decimal(0)) / p.lever if size else Decimal(0)
    liq: Decimal | None = None
    if size and p.avg_px and p.mgn_mode == "isolated":
        long = p.pos > 0 if p.pos_side == "net" else p.pos_side == "long"
        liq = (
            p.avg_px * (1 - 1 / p.lever + Decimal("0.004"))
            if long
            else p.avg_px * (1 + 1 / p.lever - Decimal("0.004"))
        )
    mmr = size * ct_val * (mark or Decimal(0)) * Decimal("0.004")
    upl = e.upl(p)
    rec.update(
        instId=p.inst_id, instType="SWAP", posSide=p.pos_side, mgnMode=p.mgn_mode, pos=num(p.pos),
        availPos=num(size) if p.pos_side != "net" else "", avgPx=num(p.avg_px) if size else "",
        markPx=num(mark), last=num(mark), idxPx=num(mark), lever=num(p.lever), upl=num(upl),
        uplLastPx=num(upl), uplRatio="0", liqPx=num(liq.quantize(Decimal("0.1"))) if liq else "",
        margin=num(margin) if p.mgn_mode == "isolated" else "",
        imr=num(margin) if p.mgn_mode == "cross" else "",
        mmr=num(mmr), mgnRatio=num(((margin + upl) / mmr).quantize(Decimal("0.0001"))) if mmr else "",
        realizedPnl=num(p.realized_pnl), pnl=num(p.pnl), fee=num(p.fee), fundingFee="0", posId=p.pos_id,
        tradeId=p.trade_id, cTime=str(p.c_time), uTime=str(p.u_time), pTime=str(now_ms()), ccy="USDT",
        bePx="", notionalUsd=num(size * ct_val * (mark or Decimal(0))),
    )  # fmt: skip
    return rec


def account(e: Engine) -> dict[str, Any]:
    rec = t.account_record()
    detail = rec["details"][0]
    eq, avail = e.equity(), e.available()
    upl = eq - e.cash
    ts = str(now_ms())
    detail.update(
        ccy="USDT",
        eq=num(eq),
        cashBal=num(e.cash),
        availBal=num(avail),
        availEq=num(avail),
        upl=num(upl),
        frozenBal=num(e.used_margin()),
        uTime=ts,
    )
    rec.update(details=[detail], totalEq=num(eq), adjEq=num(eq), availEq=num(avail), upl=num(upl), uTime=ts)
    return rec


def algo(a: FAlgo) -> dict[str, Any]:
    rec = t.algo_record()
    rec.update(
        algoId=a.algo_id, algoClOrdId=a.algo_cl_ord_id, clOrdId="", instId=a.inst_id, side=a.side,
        sz=num(a.sz),
        slTriggerPx=num(a.sl_trigger_px), slOrdPx="-1", slTriggerPxType="last", tdMode=a.td_mode,
        posSide=a.pos_side, reduceOnly="true" if a.reduce_only else "false", state=a.state,
        cTime=str(a.c_time), uTime=str(a.u_time), tag="", ordIdList=list(a.ord_ids),
        ordId=a.ord_ids[-1] if a.ord_ids else "", failCode=a.fail_code,
    )  # fmt: skip
    return rec


def ticker(inst_id: str, px: Decimal, tick_sz: Decimal) -> dict[str, Any]:
    rec = t.ticker_record()
    rec.update(
        instType="SWAP",
        instId=inst_id,
        last=num(px),
        askPx=num(px + tick_sz),
        bidPx=num(px - tick_sz),
        ts=str(now_ms()),
    )
    return rec


def trade(inst_id: str, px: Decimal, trade_id: str) -> dict[str, Any]:
    rec = t.trade_record()
    rec.update(instId=inst_id, px=num(px), sz="1", side="buy", tradeId=trade_id, ts=str(now_ms()), count="1")
    return rec

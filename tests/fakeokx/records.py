"""The fake OKX account's records: orders, positions, algo (stop) orders, and OKX's refusals.

A position's identity at OKX is (instId, posSide, mgnMode): net mode holds one signed record per instrument
and margin mode, long/short mode one non-negative record per posSide and margin mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_ZERO = Decimal(0)
MGN_MODES = ("cross", "isolated")
PosKey = tuple[str, str, str]  # (instId, posSide, mgnMode): a position's identity at OKX


class Refused(Exception):
    def __init__(self, code: str, msg: str = ""):
        super().__init__(f"[{code}] {msg}")
        self.code, self.msg = code, msg


# The fake's clock minus the host's, seconds: OKX's clock as a host whose own clock is off sees it. Every
# time the fake gives (pushes, orders, positions, /public/time) is on it. One fake per process.
CLOCK_OFFSET = [0.0]


def now_ms() -> int:
    return int((time.time() + CLOCK_OFFSET[0]) * 1000)


def margin_mode(a: dict[str, Any], name: str) -> str:
    """tdMode (orders, stops) or mgnMode (close-position): required, cross or isolated (SWAP)."""
    mode = a.get(name)
    if mode in (None, ""):
        raise Refused("50014", f"Parameter {name} can not be empty.")
    if mode not in MGN_MODES:
        raise Refused("51000", f"Parameter {name} error")
    return str(mode)


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

    @property
    def key(self) -> PosKey:
        return (self.inst_id, self.pos_side, self.td_mode)

    @property
    def pending(self) -> bool:
        return self.state in ("live", "partially_filled")


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
    fail_code: str = ""
    c_time: int = field(default_factory=now_ms)
    u_time: int = field(default_factory=now_ms)
    ord_ids: list[str] = field(default_factory=list)  # ordIdList: the orders it placed when triggered

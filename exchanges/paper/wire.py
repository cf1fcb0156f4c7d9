"""The paper venue's wire protocol over Redis, shared by the venue (venue.py) and its clients (client.py).

A caller XADDs a request (id, op, JSON args, the client order id, when it was sent) to `requests_key` and
BLPOPs its reply from `reply_key`: {"ok": true, "result": ...} or {"ok": false, "type", "code", "msg"}, the
result in the type `RESULTS` names for the op. A read (`READS`) changes nothing at the venue: unanswered, it
is an unreadable exchange; any other op unanswered is an unknown outcome.
"""

from __future__ import annotations

from typing import Any

from exchanges.base import Balance, ExchangePosition, Instrument, Order, StopOrder
from statemachines.keys import Keys

# op -> the type its result decodes to
RESULTS: dict[str, Any] = {
    "instruments": list[Instrument], "balance": list[Balance], "positions": list[ExchangePosition],
    "pending_orders": list[Order], "place_order": Order, "close_position": Order, "get_order": Order | None,
    "cancel_order": None,
    "set_leverage": None, "place_stop": StopOrder, "move_stop": StopOrder, "resize_stop": StopOrder,
    "cancel_stop": None,
    "stops": list[StopOrder], "recent_orders": list[Order], "stop_fill": Order | None,
    "find_stop": StopOrder | None,
}  # fmt: skip
READS = frozenset({"instruments", "balance", "positions", "pending_orders", "get_order", "stops",
                   "recent_orders", "stop_fill", "find_stop"})  # fmt: skip


def requests_key(keys: Keys) -> str:
    return f"{keys.prefix}:paper:requests"


def reply_key(keys: Keys, rid: str) -> str:
    return f"{keys.prefix}:paper:reply:{rid}"


def faults_key(keys: Keys) -> str:
    """A list of JSON fault specs, e.g. {"kind": "delay", "op": "place_order", "seconds": 2}: the venue
    injects each into the paper exchange (see exchanges.paper.Fault). For tests and the chaos suite."""
    return f"{keys.prefix}:paper:faults"


def served_key(keys: Keys) -> str:
    """The venue's log of served requests (op, client order id, when the caller sent it, when served):
    for latency measurements and for people; trimmed."""
    return f"{keys.prefix}:paper:served"

"""The fake's REST side: signature checks (REST and WS login), error envelopes, endpoint handlers.

A handler is `(engine, query, body) -> data[]`; a refusal raises `Refused(code)`, which `error()` turns
into OKX's envelope: a refused order request (POST place/cancel/algo) as code "1" with the reason in
data[].sCode, everything else top-level: "order does not exist" on GET /trade/order is
{"code": "51603", "data": []}, as at OKX.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakeokx import templates as t
from tests.fakeokx import wire
from tests.fakeokx.engine import Engine, Refused, now_ms

ITEM_LEVEL = frozenset(  # POST paths whose per-order refusals come back in data[].sCode
    {
        "/api/v5/trade/order",
        "/api/v5/trade/cancel-order",
        "/api/v5/trade/order-algo",
        "/api/v5/trade/amend-algos",
        "/api/v5/trade/cancel-algos",
    }
)
EXTRA_MSGS = {
    "51603": "Order does not exist",
    "51400": "Order cancellation failed",
    "60024": "Wrong passphrase",
}


def sign(secret: str, prehash: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), prehash.encode(), hashlib.sha256).digest()).decode()


def check_rest_auth(
    headers: Mapping[str, str], method: str, raw_path: str, body: str, creds: tuple[str, str, str], *,
    demo: bool, clock_offset: float,
) -> str | None:  # fmt: skip
    """The OKX code refusing this request, or None (PROTOCOL_RULES §4)."""
    key, secret, passphrase = creds
    if demo and headers.get("x-simulated-trading") != "1":
        return "50101"  # APIKey does not match current environment
    if headers.get("OK-ACCESS-KEY") != key:
        return "50111"
    if headers.get("OK-ACCESS-PASSPHRASE") != passphrase:
        return "50105"
    ts = headers.get("OK-ACCESS-TIMESTAMP", "")
    try:
        sent = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return "50112"
    if not ts.endswith("Z") or abs(time.time() + clock_offset - sent) > 30:
        return "50102"
    if not hmac.compare_digest(
        sign(secret, ts + method + raw_path + body), headers.get("OK-ACCESS-SIGN", "")
    ):
        return "50113"
    return None


def check_login(a: Mapping[str, str], creds: tuple[str, str, str], clock_offset: float) -> str | None:
    """The WS login check (PROTOCOL_RULES §3): the code refusing it, or None."""
    key, secret, passphrase = creds
    if a.get("apiKey") != key:
        return "60005"
    if a.get("passphrase") != passphrase:
        return "60024"
    ts = a.get("timestamp", "")
    if not ts.isdigit() or abs(time.time() + clock_offset - int(ts)) > 30:
        return "60006"
    if not hmac.compare_digest(sign(secret, ts + "GET/users/self/verify"), a.get("sign", "")):
        return "60007"
    return None


def error(
    method: str, path: str, code: str, msg: str = "", *, body: Any = None, status: int | None = None
) -> web.Response:
    http, text = t.rest_errors().get(code, (200, EXTRA_MSGS.get(code, "error (fake)")))
    msg = msg or text
    status = http if status is None else status
    if method == "POST" and path in ITEM_LEVEL and code.startswith("51"):  # code "1", reason in sCode
        first = body[0] if isinstance(body, list) and body else body if isinstance(body, dict) else {}
        item = {"clOrdId": first.get("clOrdId", ""), "ordId": "", "tag": "", "ts": str(now_ms()),
                "sCode": code, "sMsg": msg, "subCode": ""}  # fmt: skip
        if "algoClOrdId" in first:
            item.update(algoClOrdId=first["algoClOrdId"], algoId="")
        return web.json_response({"code": "1", "msg": "", "data": [item]}, status=status)
    return web.json_response({"code": code, "msg": msg, "data": []}, status=status)


# --- handlers: (engine, query, body) -> data[] ---

Q = Mapping[str, str]


def _instruments(e: Engine, q: Q, b: Any) -> list[Any]:
    return [i for i in e.instruments.values() if i["instType"] == q.get("instType", "SWAP")]


def _config(e: Engine, q: Q, b: Any) -> list[Any]:
    return [{**t.account_config(), "posMode": e.pos_mode}]


def _balance(e: Engine, q: Q, b: Any) -> list[Any]:
    return [wire.account(e)]


def _positions(e: Engine, q: Q, b: Any) -> list[Any]:
    shown = e.positions.values() if e.flat_records else e.held()
    return [wire.position(e, p) for p in shown if q.get("instId") in (None, "", p.inst_id)]


def _place(e: Engine, q: Q, b: Any) -> list[Any]:
    o = e.place(b)
    return [{**t.place_ack(), "clOrdId": o.cl_ord_id, "ordId": o.ord_id, "ts": str(now_ms()), "sMsg": ""}]


def _get_order(e: Engine, q: Q, b: Any) -> list[Any]:
    o = e.find_order(q.get("ordId", ""), q.get("clOrdId", ""))
    if o is None or o.inst_id != q.get("instId"):
        raise Refused("51603", "Order does not exist")
    return [wire.order(o, rest=True)]


def _pending(e: Engine, q: Q, b: Any) -> list[Any]:
    mine = [o for o in e.pending() if q.get("instId") in (None, "", o.inst_id)]
    return [wire.order(o, rest=True) for o in reversed(mine)]


def _history(e: Engine, q: Q, b: Any) -> list[Any]:
    """Newest first, at most `limit` (100 at most, as OKX); `after` = an ordId: only older ones (OKX's
    pagination)."""
    done = [o for o in e.orders.values()
            if not o.pending and q.get("instId") in (None, "", o.inst_id)]  # fmt: skip
    if q.get("after"):
        done = [o for o in done if int(o.ord_id) < int(q["after"])]
    return [wire.order(o, rest=True) for o in reversed(done)][: min(100, int(q.get("limit") or 100))]


def _cancel(e: Engine, q: Q, b: Any) -> list[Any]:
    o = e.cancel(b.get("instId", ""), b.get("ordId", ""), b.get("clOrdId", ""))
    return [{"clOrdId": o.cl_ord_id, "ordId": o.ord_id, "ts": str(now_ms()), "sCode": "0", "sMsg": ""}]


def _close_position(e: Engine, q: Q, b: Any) -> list[Any]:
    o = e.close_position(b if isinstance(b, dict) else {})
    return [{"clOrdId": o.cl_ord_id, "instId": o.inst_id, "posSide": o.pos_side, "tag": ""}]


def _leverage(e: Engine, q: Q, b: Any) -> list[Any]:
    lever = Decimal(str(b["lever"]))  # a client may send a JSON number; OKX answers strings
    e.set_leverage(b["instId"], lever, b["mgnMode"])
    return [{"lever": t.num(lever), "mgnMode": b["mgnMode"], "instId": b["instId"],
             "posSide": b.get("posSide", "")}]  # fmt: skip


def _algo_place(e: Engine, q: Q, b: Any) -> list[Any]:
    a = e.place_algo(b)
    return [{**t.algo_ack(), "algoId": a.algo_id, "algoClOrdId": a.algo_cl_ord_id, "clOrdId": "", "tag": ""}]


def _algo_amend(e: Engine, q: Q, b: Any) -> list[Any]:
    a = e.amend_algo(b)
    return [{"algoId": a.algo_id, "algoClOrdId": a.algo_cl_ord_id, "reqId": b.get("reqId", ""), "sCode": "0",
             "sMsg": ""}]  # fmt: skip


def _algo_cancel(e: Engine, q: Q, b: Any) -> list[Any]:
    out = []
    for item in b:
        a = e.cancel_algo(item)
        out.append({"algoId": a.algo_id, "algoClOrdId": a.algo_cl_ord_id, "clOrdId": "", "sCode": "0",
                    "sMsg": "", "tag": ""})  # fmt: skip
    return out


def _algo_get(e: Engine, q: Q, b: Any) -> list[Any]:
    a = e.find_algo(q.get("algoId", ""), q.get("algoClOrdId", ""))
    if a is None:
        raise Refused("51603", "Order does not exist")
    return [wire.algo(a)]


def _algo_pending(e: Engine, q: Q, b: Any) -> list[Any]:
    return [wire.algo(a) for a in _algos(e, q) if a.state == "live"]


def _algo_history(e: Engine, q: Q, b: Any) -> list[Any]:
    """GET orders-algo-history: by state (effective, canceled, order_failed) or by algoId."""
    if not q.get("state") and not q.get("algoId"):
        raise Refused("50015", "Either parameter state or algoId is required")
    done = [a for a in _algos(e, q) if a.state != "live" and q.get("state") in (None, "", a.state)
            and q.get("algoId") in (None, "", a.algo_id)]  # fmt: skip
    return [wire.algo(a) for a in reversed(done)][: int(q.get("limit") or 100)]


def _algos(e: Engine, q: Q) -> list[Any]:
    if "conditional" not in q.get("ordType", "conditional").split(","):
        return []  # the fake has conditional (stop) algo orders only
    return [a for a in e.algos.values() if q.get("instId") in (None, "", a.inst_id)]


def _candles(e: Engine, q: Q, b: Any) -> list[Any]:
    e.inst(q.get("instId", ""))
    return e.candles.rows(q)


Handler = Callable[[Engine, Q, Any], list[Any]]
ROUTES: Mapping[tuple[str, str], Handler] = {
    ("GET", "/api/v5/public/instruments"): _instruments,
    ("GET", "/api/v5/account/config"): _config,
    ("GET", "/api/v5/account/balance"): _balance,
    ("GET", "/api/v5/account/positions"): _positions,
    ("POST", "/api/v5/account/set-leverage"): _leverage,
    ("POST", "/api/v5/trade/order"): _place,
    ("GET", "/api/v5/trade/order"): _get_order,
    ("GET", "/api/v5/trade/orders-pending"): _pending,
    ("GET", "/api/v5/trade/orders-history"): _history,
    ("POST", "/api/v5/trade/cancel-order"): _cancel,
    ("POST", "/api/v5/trade/close-position"): _close_position,
    ("POST", "/api/v5/trade/order-algo"): _algo_place,
    ("POST", "/api/v5/trade/amend-algos"): _algo_amend,
    ("POST", "/api/v5/trade/cancel-algos"): _algo_cancel,
    ("GET", "/api/v5/trade/order-algo"): _algo_get,
    ("GET", "/api/v5/trade/orders-algo-pending"): _algo_pending,
    ("GET", "/api/v5/trade/orders-algo-history"): _algo_history,
    ("GET", "/api/v5/market/candles"): _candles,
    ("GET", "/api/v5/market/history-candles"): _candles,
}

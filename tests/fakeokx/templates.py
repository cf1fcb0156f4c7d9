"""Message shapes for the fake OKX server, taken from the real messages in ../shared/data/okx.

Every record the fake sends starts as a copy of a real one (OKX docs, the best-practice page, CCXT's
recorded responses) with only the values we simulate replaced, so the adapter sees the real field set.
"""

from __future__ import annotations

import copy
import csv
import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

OKX_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "okx"


@cache
def _load(rel: str) -> Any:
    path = OKX_DATA / rel
    if not path.exists():
        raise FileNotFoundError(f"shared OKX data missing: {path}")
    return json.loads(path.read_text())


def doc(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(f"okx_docs/{name}"))


@cache
def _ccxt(description: str) -> dict[str, Any]:
    for entry in _load("ccxt/response_extract.json")["entries"]:
        if entry["description"] == description:
            return entry["httpResponse"]  # type: ignore[no-any-return]
    raise KeyError(description)


@cache
def _best_practice(anchor: str, first_key: str) -> dict[str, Any]:
    for ex in _load("okx_best_practice/best_practice_examples.json")["examples"]:
        if ex["section_anchor"] == anchor and first_key in ex["json"]:
            return ex["json"]  # type: ignore[no-any-return]
    raise KeyError(anchor)


def instruments() -> list[dict[str, Any]]:
    """The 9 SWAP instrument records CCXT recorded (BTC-USDT-SWAP: ctVal 0.01, lotSz 0.1, tickSz 0.1)."""
    return copy.deepcopy(_load("ccxt/markets_swap_instruments.json")["data"])


@cache
def _order_base() -> dict[str, Any]:
    # The full docs field set, overlaid with the best-practice BTC-USDT-SWAP "live" push (SWAP values).
    rec = dict(_load("okx_docs/ws_orders_push.json")["data"][0])
    rec.update(_best_practice("order-management-checking-order-state", "arg")["data"][0])
    return rec


def order_record() -> dict[str, Any]:
    return copy.deepcopy(_order_base())


def rest_order_record() -> dict[str, Any]:
    """GET order / orders-pending shape (CCXT's recorded SWAP orders-pending record)."""
    desc = "fetch swap limit open order with take profit and stop loss (orders-pending)"
    return copy.deepcopy(_ccxt(desc)["data"][0])


def position_record() -> dict[str, Any]:
    """REST positions and WS positions push (CCXT's recorded linear SWAP position, plus the push's pTime)."""
    rec = copy.deepcopy(_ccxt("linear swap position (GET /api/v5/account/positions)")["data"][0])
    rec["pTime"] = rec["uTime"]
    return rec


def account_record() -> dict[str, Any]:
    return copy.deepcopy(_load("okx_docs/ws_account_push.json")["data"][0])


def account_config() -> dict[str, Any]:
    return copy.deepcopy(_ccxt("Fetch accounts (GET /api/v5/account/config)")["data"][0])


def algo_record() -> dict[str, Any]:
    desc = "fetchOpenOrders trigger with since = 0 (orders-algo-pending)"
    return copy.deepcopy(_ccxt(desc)["data"][0])


def ticker_record() -> dict[str, Any]:
    return copy.deepcopy(_load("okx_docs/ws_tickers_push.json")["data"][0])


def trade_record() -> dict[str, Any]:
    return copy.deepcopy(_load("okx_docs/ws_trades_push.json")["data"][0])


def place_ack() -> dict[str, Any]:
    return copy.deepcopy(_load("okx_docs/rest_place_order_response.json")["data"][0])


def algo_ack() -> dict[str, Any]:
    return copy.deepcopy(_ccxt("type2 & type3 together (algo endpoint)")["data"][0])


@cache
def rest_errors() -> dict[str, tuple[int, str]]:
    """code -> (HTTP status, message) from the docs' REST error table (first row of a code wins)."""
    out: dict[str, tuple[int, str]] = {}
    with (OKX_DATA / "okx_docs" / "rest_error_codes_selected.csv").open() as f:
        for row in csv.DictReader(f):
            code = row["code"].split("_")[0]
            out.setdefault(code, (int(row["http_status"] or 200), row["message"]))
    return out


@cache
def ws_errors() -> dict[str, str]:
    out: dict[str, str] = {}
    with (OKX_DATA / "okx_docs" / "ws_error_codes.csv").open() as f:
        for row in csv.DictReader(f):
            out.setdefault(row["code"], row.get("message", ""))
    return out


def num(value: Decimal | None) -> str:
    """A Decimal as OKX writes it: plain notation, "" for not applicable."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"

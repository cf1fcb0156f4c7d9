"""What the fake pushes on the private channels besides event updates: positions and account snapshots.

OKX sends a snapshot (eventType "snapshot", paged by curPage/lastPage) when positions or account is
subscribed, and again about every 5 s whether anything changed or not; a subscription's
`extraParams: {"updateInterval": "0"}` turns the regular ones off, "2000"/"3000"/"4000" set their period
(positions). A snapshot lists only positions whose pos is not 0; event updates carry just what changed,
a position that closed with pos "0". (docs-v5: positions channel, account channel.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.fakeokx import wire
from tests.fakeokx.engine import Engine

UID = "44123456789584"
PRIVATE_CHANNELS = frozenset({"orders", "positions", "account"})
PUBLIC_CHANNELS = frozenset({"tickers", "trades"})
SNAPSHOT_CHANNELS = frozenset({"positions", "account"})
INTERVALS = {"2000": 2.0, "3000": 3.0, "4000": 4.0}


@dataclass(frozen=True)
class Snapshot:
    """Positions and account as they were when it was taken; sent later, it is a stale one."""

    positions: list[dict[str, Any]]
    account: dict[str, Any]


def take(engine: Engine) -> Snapshot:
    return Snapshot([wire.position(engine, p) for p in engine.held()], wire.account(engine))


def messages(snap: Snapshot, sub: dict[str, str], page_size: int = 0) -> list[dict[str, Any]]:
    """The snapshot push(es) for one positions or account subscription."""
    head = {"arg": {**sub, "uid": UID}, "eventType": "snapshot"}
    if sub.get("channel") == "account":
        return [{**head, "curPage": 1, "lastPage": True, "data": [snap.account]}]
    recs = [r for r in snap.positions if sub.get("instId") in (None, "", r["instId"])]
    size = page_size or max(1, len(recs))
    pages = [recs[i : i + size] for i in range(0, len(recs), size)] or [[]]
    last = len(pages)
    return [{**head, "curPage": n, "lastPage": n == last, "data": page} for n, page in enumerate(pages, 1)]


def interval(sub: dict[str, str], default: float) -> float:
    """Seconds between a subscription's regular snapshots; 0: events only."""
    try:
        extra = json.loads(sub.get("extraParams") or "{}")
    except ValueError:
        return default
    value = str(extra.get("updateInterval", "")) if isinstance(extra, dict) else ""
    if value == "0":
        return 0.0
    return INTERVALS.get(value, default) if default > 0 else 0.0


def matches(sub: dict[str, str], channel: str, inst_id: str | None, msg: dict[str, Any]) -> bool:
    if sub.get("channel") != channel:
        return False
    if inst_id is not None:
        return sub.get("instId") == inst_id
    if "instId" in sub:
        return all(d.get("instId") == sub["instId"] for d in msg["data"])
    return True

"""Order intents: deterministic client order ids, and the outbox written atomically with the transition."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from statemachines.intents import (
    IntentAction,
    OrderIntent,
    client_order_id,
    close_intent,
    open_intent,
    parse_client_order_id,
)
from statemachines.machine import PositionMachine, StaleTransition
from statemachines.position import Position, new_position_id
from statemachines.stepper import entry_filled, settle_closed
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.guardkit import config


def test_client_order_ids_are_deterministic_alphanumeric_and_short() -> None:
    pid = new_position_id(1_700_000_000.0)
    assert len(pid) == 12 and pid.isalnum()
    for action in IntentAction:
        for attempt in (1, 9, 12345):
            cid = client_order_id(pid, action, attempt)
            assert cid == client_order_id(pid, action, attempt)
            assert cid.isalnum() and len(cid) <= 32
    ids = {client_order_id(pid, a, n) for a in (IntentAction.OPEN, IntentAction.CLOSE) for n in (1, 2)}
    assert len(ids) == 4  # a retry is a new order id, never a reuse
    with pytest.raises(ValueError):
        client_order_id("bad-id", IntentAction.OPEN, 1)


def test_order_side_is_against_the_position_except_for_the_entry() -> None:
    pos = Position(id="abc123", symbol="BTC-USDT-SWAP", side="short")  # type: ignore[arg-type]
    assert open_intent(pos, Decimal(1)).order_side == "sell"
    assert close_intent(pos, 1, "x").order_side == "buy"


def test_intent_round_trips_through_plain_strings() -> None:
    pos = Position(id="abc123", symbol="BTC-USDT-SWAP", side="long")  # type: ignore[arg-type]
    intent = open_intent(pos, Decimal("0.30"))
    fields = intent.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    assert OrderIntent.from_fields({k.encode(): v.encode() for k, v in fields.items()}) == intent


def _outbox(client: redis.Redis, store: PositionStore, symbol: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in f.items()} for _, f in client.xrange(store.keys.outbox(symbol))
    ]


def test_transition_and_its_intent_are_written_together(real_redis: RealRedis) -> None:
    client = real_redis.client
    store = PositionStore(client)
    pm = PositionMachine(store)
    pos = Position(id=new_position_id(), symbol="BTC-USDT-SWAP", side="long", entry_attempt=1)  # type: ignore[arg-type]
    store.create(pos, intent=open_intent(pos, Decimal("0.5")).to_fields())
    entry_filled(pm, pos, price=Decimal("100"), size=Decimal("0.5"), atr=None, cfg=config(), now=1.0)
    box = _outbox(client, store, pos.symbol)
    assert [b["action"] for b in box] == ["open", "protect"]
    assert box[0]["cl_ord_id"] == f"{pos.id}o1" and box[0]["size"] == "0.5"
    assert float(box[1]["stop_px"]) == pytest.approx(95.0)  # protective_stop_pct 5 below a long's entry

    # A stale copy's transition writes neither the transition nor its intent.
    stale = store.load(pos.id)
    pm.fire(
        pos, "close", reason="x", fields={"close_attempt": 1}, intent=close_intent(pos, 1, "x").to_fields()
    )
    with pytest.raises(StaleTransition):
        PositionMachine(store).fire(stale, "close", intent=close_intent(stale, 1, "y").to_fields())
    box = _outbox(client, store, pos.symbol)
    assert [b["action"] for b in box] == ["open", "protect", "close"]
    assert box[2]["reason"] == "x"

    settle_closed(pm, pos, trigger="close_filled", reason="flat")
    assert [b["action"] for b in _outbox(client, store, pos.symbol)][-1] == "unprotect"
    assert store.check_consistency(pos.id) == []


@pytest.mark.parametrize("action", [IntentAction.OPEN, IntentAction.CLOSE, IntentAction.HARVEST,
                                    IntentAction.PROTECT])  # fmt: skip
def test_parse_client_order_id_inverts_client_order_id(action: IntentAction) -> None:
    pid = new_position_id(1_700_000_000.0)
    assert parse_client_order_id(client_order_id(pid, action, 12)) == (pid, action, 12)
    # The stop's cancel shares its id: parsed as the stop.
    unprotect = client_order_id(pid, IntentAction.UNPROTECT, 1)
    assert parse_client_order_id(unprotect) == (pid, IntentAction.PROTECT, 1)


@pytest.mark.parametrize("foreign", ["", "manualopen1", "mySL1", "abcdefghijkl", "abcdefghijklx1",
                                     "ABCDEFGHIJKLo1", "abcdefghijklo", "abcdefghijklo1x"])  # fmt: skip
def test_an_id_the_bot_did_not_make_is_not_parsed(foreign: str) -> None:
    assert parse_client_order_id(foreign) is None

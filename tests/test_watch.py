"""The lines `scalper run` prints as positions move, and what a pass of its watch costs: O(live positions +
new transitions), however many closed positions Redis holds, since it runs in the loop that restarts
children."""

from __future__ import annotations

import redis

from scalper.watch import Watch, _exit, result
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import LIFECYCLE, stored_position

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


def watch(real_redis: RealRedis, lines: list[str]) -> Watch:
    client = redis.Redis(unix_socket_path=real_redis.socket_path, decode_responses=True)
    return Watch(client, "scalper", every_s=0, say=lines.append)


def lifecycle(pid: str, symbol: str, side: str = "long") -> list[str]:
    return [
        f"  {pid} {symbol} {side:<5} new -> opening         create (test entry)",
        f"  {pid} {symbol} {side:<5} opening -> open        entry_filled (fill)",
        f"  {pid} {symbol} {side:<5} open -> closing        close (max_hold_time)",
        f"  {pid} {symbol} {side:<5} closing -> closed      close_filled (close order filled)"
        "  net +1.25 (gross +1.50, fees -0.25)",
    ]


def test_each_transition_is_printed_once_as_it_happens(real_redis: RealRedis) -> None:
    store, lines = PositionStore(real_redis.client), []
    w = watch(real_redis, lines)
    pos = stored_position(store, BTC, steps=1)
    w.poll()
    assert lines == lifecycle(pos.id, BTC)[:2]
    w.poll()
    assert len(lines) == 2  # nothing new, nothing printed
    for source, dest, trigger, reason in LIFECYCLE[1:]:
        fields = {"realized_pnl": "1.5", "fees": "-0.25"} if dest == "closed" else {}
        pos.version = store.apply_transition(pos, source=source, dest=dest, trigger=trigger, reason=reason,
                                             price=100.0, ts=0.0, fields=fields)  # fmt: skip
        pos.state = dest
    w.poll()
    assert lines == lifecycle(pos.id, BTC)
    assert pos.id not in w.following  # closed and printed: never read again


def test_a_position_that_opened_and_closed_between_two_passes_is_printed_whole(real_redis: RealRedis) -> None:
    store, lines = PositionStore(real_redis.client), []
    w = watch(real_redis, lines)
    stored_position(store, BTC, steps=3)  # a symbol the watch has not seen yet
    w.poll()
    quick = stored_position(store, BTC, steps=3, side="short")  # a symbol it has seen
    other = stored_position(store, ETH, steps=2)
    w.poll()
    assert [line for line in lines if quick.id in line] == lifecycle(quick.id, BTC, "short")
    assert [line for line in lines if other.id in line] == lifecycle(other.id, ETH)[:3]


def test_positions_of_earlier_runs_are_summarised_then_only_their_new_transitions_printed(
    real_redis: RealRedis,
) -> None:
    store, lines = PositionStore(real_redis.client), []
    done = [stored_position(store, BTC) for _ in range(3)]
    live = stored_position(store, ETH, steps=2)
    w = watch(real_redis, lines)
    assert lines == [f"scalper: 4 positions from earlier runs, 1 live: {live.id} closing"]
    store.apply_transition(live, source="closing", dest="closed", trigger="close_filled",
                           reason="close order filled", price=100.0, ts=0.0,
                           fields={"realized_pnl": "1.5", "fees": "-0.25"})  # fmt: skip
    w.poll()
    assert lines[1:] == lifecycle(live.id, ETH)[3:]
    assert not any(p.id in line for p in done for line in lines)


def commands_per_pass(real_redis: RealRedis, w: Watch) -> int:
    info = real_redis.client.info
    before = info("stats")["total_commands_processed"]
    w.poll()
    return info("stats")["total_commands_processed"] - before - 1  # less the first INFO itself


def test_a_pass_costs_the_same_with_hundreds_of_closed_positions_as_with_none(real_redis: RealRedis) -> None:
    store, lines = PositionStore(real_redis.client), []
    stored_position(store, BTC, steps=1)
    stored_position(store, ETH, steps=2)
    w = watch(real_redis, lines)
    w.poll()
    without = commands_per_pass(real_redis, w)

    for _ in range(300):
        stored_position(store, BTC)
    w.poll()  # finds them, by their count, once
    with_closed = commands_per_pass(real_redis, w)

    assert with_closed == without <= 12, (with_closed, without)


def test_a_closed_line_leads_with_net_pnl_and_gives_the_exit_price() -> None:
    """Net first, so a loss reads as one; the exit price from the gross PnL (BTC-USDT-SWAP: 0.01 BTC a
    contract): 2 contracts long from 50,000 that made +3.00 gross left at 50,150."""
    assert result("3", "-4.5") == "net -1.50 (gross +3.00, fees -4.50)"
    assert _exit("BTC-USDT-SWAP", "long", "50000", "2", "3") == ", exit 50150"
    assert _exit("BTC-USDT-SWAP", "short", "50000", "2", "3") == ", exit 49850"
    assert _exit("NOPE-USDT-SWAP", "long", "50000", "2", "3") == ""  # no contract value known: nothing

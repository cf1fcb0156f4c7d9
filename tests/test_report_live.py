"""A live or paper run's trades, read from Redis for the report: closed positions and the trade ledger,
each trade once, exit prices derived from the PnL, open positions apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

from scalper.run_history import exit_price, gather, read_history, realized_curve
from statemachines.archive import ClosedArchive
from statemachines.keys import Keys
from statemachines.ledger import TradeRecord
from statemachines.position import Position, Side
from statemachines.store import PositionStore
from tests.conftest import RealRedis
from tests.runkit import ROOT, stored_position

BTC = "BTC-USDT-SWAP"
CT = {BTC: D("0.01")}


def closed(pid: str, side: str = "long", pnl: str = "10.5", fees: str = "-4.83", exit_ts: float = 2000.0,
           entry_price: str = "46000", size: str = "2.1") -> Position:  # fmt: skip
    return Position(id=pid, symbol=BTC, side=Side(side), state="closed", entry_size=D(size),
                    entry_price=D(entry_price), created_at=900.0, opened_at=1000.0, state_since=exit_ts,
                    exit_reason="take_profit",
                    realized_pnl=D(pnl), fees=D(fees), time_in={"opening": 1.0, "open": 999.0})  # fmt: skip


def test_the_exit_price_is_the_one_that_realizes_the_pnl() -> None:
    # 2.1 contracts of 0.01 BTC: 0.021 BTC; +10.5 USDT is 500 USDT a BTC in the position's favour.
    assert exit_price(D("46000"), D("10.5"), D("2.1"), "long", D("0.01")) == D("46500")
    assert exit_price(D("46000"), D("10.5"), D("2.1"), "short", D("0.01")) == D("45500")
    assert exit_price(D("46000"), D("10.5"), D("2.1"), "long", None) is None  # contract value unknown


def test_a_position_in_both_the_store_and_the_ledger_is_one_trade_from_its_hash() -> None:
    pos = closed("a")
    row = TradeRecord.of(pos)
    older = TradeRecord(id="b", symbol=BTC, side="short", entry_ts=100.0, exit_ts=200.0,
                        entry_price=D("47000"), size=D("1"), exit_reason="stop_loss", pnl=D("-3"),
                        fees=D("-0.5"))  # fmt: skip
    history = gather([pos], [row, older], CT)
    assert [t.position_id for t in history.trades] == ["b", "a"]  # by exit time
    a, b = history.trades[1], history.trades[0]
    assert (a.gross_pnl, a.fees, a.net_pnl, a.exit_price, a.time_in) == (
        D("10.5"), D("-4.83"), D("5.67"), D("46500"), {"opening": 1.0, "open": 999.0})  # fmt: skip
    assert (b.exit_price, b.net_pnl, b.time_in) == (D("47300"), D("-3.5"), {})  # ledger only: an old row


def test_a_position_that_never_filled_is_no_trade_and_open_ones_are_apart() -> None:
    failed = Position(id="f", symbol=BTC, side=Side.LONG, state="closed", entry_size=D("1"), created_at=50.0,
                      state_since=80.0, exit_reason="entry failed")  # fmt: skip
    still = Position(id="o", symbol=BTC, side=Side.LONG, state="open", entry_size=D("1"), size=D("1"),
                     entry_price=D("46000"), opened_at=3000.0, fees=D("-0.46"))  # fmt: skip
    flight = Position(id="c", symbol=BTC, side=Side.SHORT, state="closing", entry_size=D("1"), size=D("1"),
                      entry_price=D("46100"), opened_at=3100.0, fees=D("-0.47"))  # fmt: skip
    history = gather([failed, closed("a"), still, flight], [], CT)
    assert [t.position_id for t in history.trades] == ["a"]
    assert [p.position_id for p in history.open_positions] == ["o", "c"]
    assert history.in_flight == ["c"]  # its close may have filled at the exchange already
    assert sum((p.realized for p in history.open_positions), D(0)) == D("-0.93")


def test_a_window_keeps_the_trades_closed_in_it_and_counts_the_net_before() -> None:
    trades = [closed("a", exit_ts=2000.0), closed("b", exit_ts=3000.0, pnl="-2"), closed("c", exit_ts=4000.0)]
    still = Position(id="o", symbol=BTC, side=Side.LONG, state="open", opened_at=3500.0, fees=D("-1"))
    history = gather([*trades, still], [], CT, since=2500.0, until=4000.0)
    assert [t.position_id for t in history.trades] == ["b"]
    assert history.net_before == D("5.67")
    assert history.open_positions == []  # the window ends before now: positions open now are not in it


def test_the_realized_curve_steps_at_each_exit_and_at_each_open_positions_fees() -> None:
    still = Position(id="o", symbol=BTC, side=Side.LONG, state="open", opened_at=2500.0, fees=D("-1"))
    history = gather([closed("a", exit_ts=2000.0), closed("b", exit_ts=3000.0, pnl="-2"), still], [], CT)
    curve = realized_curve(history, D("1000"), 900.0)
    assert [(p.ts, p.equity) for p in curve] == [(900.0, 1000.0), (2000.0, 1005.67), (2500.0, 1004.67),
                                                 (3000.0, 997.84)]  # fmt: skip


def test_a_ledger_row_written_before_time_in_was_kept_still_reads() -> None:
    old = ('{"symbol":"BTC-USDT-SWAP","side":"long","entry_ts":"1.0","exit_ts":"2.0","entry_price":"100",'
           '"size":"1","exit_reason":"manual","pnl":"1","fees":"-0.1","net":"0.9"}')  # fmt: skip
    assert TradeRecord.decode("x", old).time_in == {}
    row = TradeRecord.of(closed("a"))
    assert TradeRecord.decode("a", row.encode()) == row


def test_read_history_counts_each_position_once_across_store_and_ledger(real_redis: RealRedis) -> None:
    client = real_redis.client
    store, keys = PositionStore(client), Keys()
    kept, archived, removed = (stored_position(store, BTC, pnl=p) for p in ("1.5", "2.5", "-4"))
    live = stored_position(store, BTC, steps=1)  # open
    archive = ClosedArchive(client, keys)
    assert archive.archive([(BTC, archived.id)], time.time()).done == [archived.id]
    assert archive.remove([(BTC, removed.id)]).done == [removed.id]  # now only in the ledger
    client.hset(keys.ledger("20220101"), "junk", "not json")
    client.sadd(keys.ledger_days(), "20220101")
    history = read_history(client, keys, CT)
    assert sorted(t.position_id for t in history.trades) == sorted([kept.id, archived.id, removed.id])
    assert sum((t.net_pnl for t in history.trades), D(0)) == D("1.5") + D("2.5") - D("4") + 3 * D("-0.25")
    assert [p.position_id for p in history.open_positions] == [live.id]
    assert history.unreadable == ["ledger 20220101/junk"]  # left out and said, not a crash


def _cli(real_redis: RealRedis, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALPER_")}
    env |= {"REDIS_URL": f"unix://{real_redis.socket_path}", "PYTHONPATH": str(ROOT),
            "SCALPER_REDIS__DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "scalper", "report", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_scalper_report_without_a_paper_account_asks_for_the_balance(real_redis: RealRedis,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    stored_position(PositionStore(real_redis.client), BTC)
    refused = _cli(real_redis, tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused
    assert "give the starting balance with --balance" in refused.stderr
    given = _cli(real_redis, tmp_path, "--balance", "500", "--json")
    assert given.returncode == 0, given.stderr
    summary = json.loads(given.stdout)["summary"]
    assert (summary["trades"], summary["net_pnl"], summary["starting_balance"]) == (1, "1.25", "500")


@pytest.mark.parametrize("bad", ["yesterday", "2022-13-01"])
def test_scalper_report_refuses_a_time_it_cannot_read_in_one_line(real_redis: RealRedis, tmp_path: Path,
                                                                   bad: str) -> None:  # fmt: skip
    done = _cli(real_redis, tmp_path, "--since", bad)
    assert done.returncode == 2 and "--since" in done.stderr and "Traceback" not in done.stderr

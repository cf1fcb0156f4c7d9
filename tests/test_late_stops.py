"""A protective stop belongs to its position (issue 10, defect 2), end to end on both venues.

The outside tester's sequence: position A closes while its protective stop is still on its way to the
exchange; the stop lands after A is gone; position B opens on the same symbol; the price falls through A's
stop. Before the fix, A's stop closed B, B was recorded as `external_close` with PnL 0 while the exchange
booked the loss, and the daily loss and loss streak never saw it. Now A's stop is cancelled as soon as it
lands, and B's entry waits until it is confirmed gone. Paper venue: its "late" fault. Fake OKX: an algo
order executed a second after its 50004 reply. Each test drives the real engine, jobs and entries
(tests/stopkit.py) on a real redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import TYPE_CHECKING

import pytest

from exchanges.okx.adapter import OkxExchange
from exchanges.okx.auth import Credentials
from exchanges.okx.ratelimit import RateLimiter
from exchanges.paper import DEFAULT_INSTRUMENTS, PaperExchange
from statemachines.position import Position
from tests.fakeokx.thread import FakeThread
from tests.stopkit import BTC, Bot, settings

if TYPE_CHECKING:
    from tests.conftest import RealRedis

pytestmark = pytest.mark.redis

LATE_S = 1.0  # how long the stop's request is held up on its way
KEY, SECRET, PASSPHRASE = "stopsKey3e9d", "stopsSecret5a1c", "stopsPass7b2f"


@pytest.fixture
def paper(real_redis: RealRedis) -> Iterator[tuple[Bot, PaperExchange]]:
    s = settings()
    venue = PaperExchange(real_redis.client, DEFAULT_INSTRUMENTS, taker_fee=D("0.0005"),
                          maker_fee=D("0.0002"), prefix=s.redis.prefix)  # fmt: skip

    def quote(px: D) -> None:
        Bot.run(venue.on_quote(BTC, px, px, time.time()))

    yield Bot(real_redis.client, s, venue, quote), venue


@pytest.fixture
def okx(real_redis: RealRedis) -> Iterator[tuple[Bot, FakeThread]]:
    fake = FakeThread(KEY, SECRET, PASSPHRASE)
    fake.price("50000")
    ex = OkxExchange(Credentials(KEY, SECRET, PASSPHRASE), rest_url=fake.fake.rest_url,
                     ws_private_url=fake.fake.ws_url("private"), demo=True, rest_timeout=1.0,
                     unknown_query_delay=0.05, limiter=RateLimiter(backoff_base=0.05))  # fmt: skip
    yield Bot(real_redis.client, settings(), ex, lambda px: fake.price(px)), fake
    Bot.run(ex.rest.aclose())
    fake.close()


def the_outside_testers_sequence(
    bot: Bot, hold_next_stop: Callable[[], None], landed: Callable[[str], bool]
) -> tuple[Position, Position]:
    """A closes while its stop is held up on its way; the stop lands; B opens on the symbol; the price falls
    through A's stop (47,500: 5 % under its entry) and stays above B's (45,600)."""
    bot.start()
    bot.price("50000")
    a = bot.enter("long")
    assert a is not None
    bot.jobs()  # the entry is sent and fills
    hold_next_stop()
    bot.turn()  # its fill: A opens; its protect job sends the stop, and gets no reply
    assert bot.load(a).state == "open" and bot.stop_of(a) is None
    bot.close(a)
    bot.jobs()  # the close fills
    bot.turn()  # A is closed; its unprotect job finds no stop yet
    assert bot.load(a).state == "closed" and bot.held() == 0
    bot.until("A's stop lands", lambda: bot.tick() or landed(f"{a.id}s1"))
    bot.price("48000")
    b = bot.until("an entry on the symbol", lambda: bot.tick() or bot.enter("long"))
    bot.until("B open and protected", lambda: bot.load(b).state == "open" and bot.stop_of(b) is not None)
    bot.price("47400")
    bot.reconcile()  # the periodic pass
    return a, b


def assert_b_kept_and_a_s_stop_gone(bot: Bot, a: Position, b: Position) -> None:
    got = bot.load(b)
    assert [e["trigger"] for e in bot.engine.store.log(b.id)] == ["create", "entry_filled"], (
        f"A's stop closed B (in part or whole): {[e['reason'] for e in bot.engine.store.log(b.id)]}, "
        f"B's realized pnl {got.realized_pnl}, A's stop's fill {bot.stop_fill(a)}"
    )
    assert got.state == "open" and bot.held() == got.size > 0
    assert bot.stop_of(a) is None and bot.stop_fill(a) is None  # cancelled, never triggered
    assert bot.stop_of(b) is not None
    assert bot.gave_up == [], bot.history()
    assert bot.engine.store.check_consistency(a.id) == [] and bot.engine.store.check_consistency(b.id) == []


def test_paper_a_stop_that_lands_after_its_position_closed_never_closes_the_next_one(
    paper: tuple[Bot, PaperExchange],
) -> None:
    bot, venue = paper

    def landed(stop_id: str) -> bool:
        return venue.state.stop(stop_id) is not None

    a, b = the_outside_testers_sequence(
        bot, lambda: venue.inject("late", op="place_stop", seconds=LATE_S), landed
    )
    assert_b_kept_and_a_s_stop_gone(bot, a, b)
    assert venue.state.stop(f"{a.id}s1").state == "canceled"  # type: ignore[union-attr]


def test_okx_a_stop_that_lands_after_its_position_closed_never_closes_the_next_one(
    okx: tuple[Bot, FakeThread],
) -> None:
    bot, fake = okx

    def landed(stop_id: str) -> bool:
        return fake.sync(lambda: fake.fake.engine.find_algo(algo_cl_ord_id=stop_id) is not None)

    def hold_next_stop() -> None:  # answered 50004 at once, executed a second later
        fake.sync(fake.fake.fault, "/api/v5/trade/order-algo", method="POST", late=LATE_S)

    a, b = the_outside_testers_sequence(bot, hold_next_stop, landed)
    assert_b_kept_and_a_s_stop_gone(bot, a, b)
    algo = fake.sync(lambda: fake.fake.engine.find_algo(algo_cl_ord_id=f"{a.id}s1"))
    assert algo.state == "canceled"


# --- when an earlier stop closes a position all the same: whose fill it is ---


def the_stop_outlives_what_protects_it(
    bot: Bot, unreadable_stops: Callable[[], None]
) -> tuple[Position, Position]:
    """A's stop survives A: the reconcile pass after A's close cannot read the stops, and Redis loses A's
    unprotect job and the record of its stop (a restart on a file a second behind). B opens at A's price,
    so both stops sit at 47,500; the price falls through them and A's, the older, closes B whole, before the
    engine sees that price."""
    bot.start()
    bot.price("50000")
    a = bot.enter("long")
    assert a is not None
    bot.jobs()
    bot.turn()  # A opens; its stop is placed
    assert bot.stop_of(a) is not None
    bot.close(a)
    bot.jobs()  # the close fills
    unreadable_stops()
    bot.engine._poll(save_cursors=False)
    bot.reconcile()  # A closed; its unprotect job is in the outbox; the orphan sweep could not look
    assert bot.load(a).state == "closed" and bot.stop_of(a) is not None
    bot.client.delete(bot.engine.keys.outbox(BTC), f"{bot.engine.keys.slot(BTC)}:stops")
    bot.price("50000")
    b = bot.enter("long")
    assert b is not None
    bot.until("B open and protected", lambda: bot.load(b).state == "open" and bot.stop_of(b) is not None)
    bot.move_market(D("47400"))
    bot.reconcile()
    return a, b


def assert_the_fill_is_b_s_close(bot: Bot, a: Position, b: Position) -> None:
    fill = bot.stop_fill(a)
    assert fill is not None and fill.filled == bot.load(b).entry_size and fill.pnl < 0
    got, earlier = bot.load(b), bot.load(a)
    assert got.state == "closed" and got.exit_reason.startswith("exchange shows no position")
    entry_fee = bot.run(bot.exchange.get_order(BTC, f"{b.id}o1")).fee
    assert (got.realized_pnl, got.fees) == (fill.pnl, entry_fee + fill.fee), "B's close is A's stop's fill"
    assert f"protective stop {a.id}s1 of an earlier position filled" in got.exit_reason
    # ...and it reached the risk counters: the day's PnL is A's and B's, each counted once.
    day = bot.entries.riskstate.day(time.time())
    assert earlier.realized_pnl == 0  # A was closed at its entry price by its own close, not its stop
    assert day.pnl == earlier.realized_pnl + earlier.fees + got.realized_pnl + got.fees
    assert (day.closes, day.losses) == (2, 2)


def test_paper_an_earlier_stop_s_fill_is_the_close_of_the_position_it_closed(
    paper: tuple[Bot, PaperExchange],
) -> None:
    bot, venue = paper
    a, b = the_stop_outlives_what_protects_it(bot, lambda: venue.inject("read_fail", op="stops"))
    assert_the_fill_is_b_s_close(bot, a, b)


def test_okx_an_earlier_stop_s_fill_is_the_close_of_the_position_it_closed(
    okx: tuple[Bot, FakeThread],
) -> None:
    bot, fake = okx

    def unreadable_stops() -> None:
        # 503 "service unavailable" past the adapter's own retries of it
        path = "/api/v5/trade/orders-algo-pending"
        fake.sync(fake.fake.fault, path, code="50001", http_status=503, count=4)

    a, b = the_stop_outlives_what_protects_it(bot, unreadable_stops)
    assert_the_fill_is_b_s_close(bot, a, b)

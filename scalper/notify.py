"""`scalper notify`: what needs a person, sent through apprise (Telegram, Discord, Slack, e-mail, webhooks).

A process of its own that reads Redis about once a second, so nothing is ever sent from the engine's tick
path and a slow chat service slows nothing else. What it tells, and where it learns it:
- a position opened; closed, with net PnL (gross and fees) and its exit reason; a reconciler correction
  (an adoption, a resync, an external close): the positions' transition logs, followed as `scalper run`
  follows them (scalper/watch.py);
- the exchange unknown, and known again: the reconciler's verdict (`{prefix}:exchange`);
- panic on and off: `{prefix}:panic`;
- the daily loss limit reached, a symbol's loss-streak cooldown: the risk memory (workers/riskstate.py);
- records quarantined: `{prefix}:quarantined`, by source;
- a process the supervisor restarted: `{prefix}:restarts` (scalper/restart_log.py).
What was already so when it started is not told again. At most `notify.max_per_minute` a minute; the rest
are counted and said in one line once the minute is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

import redis

from config.settings import Settings
from reports.fmt import money
from scalper.watch import Transition, Watch, result
from statemachines.keys import Keys
from statemachines.ledger import utc_day
from workers.riskstate import RiskState

log = logging.getLogger("scalper.notify")

Send = Callable[[str, str], bool]  # (title, body) -> delivered


def apprise_sender(settings: Settings) -> Send | None:
    """Apprise with the configured URLs; None when there are none."""
    if not settings.notify.urls:
        return None
    import apprise

    hub = apprise.Apprise()
    for url in settings.notify.urls:
        if not hub.add(url.get_secret_value()):
            raise ValueError("notify.urls: one of the URLs is not one apprise understands")  # never the URL
    return lambda title, body: bool(hub.notify(title=title, body=body))


class Notifier:
    """`client` decodes responses. `send` delivers one message (apprise in the process; a list in tests)."""

    def __init__(self, client: redis.Redis, settings: Settings, send: Send,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.client, self.settings, self.send, self.clock = client, settings, send, clock
        self.keys = Keys(settings.redis.prefix)
        self.risk = RiskState.from_settings(client, settings)
        self.symbols = list(settings.symbols)
        self.queue: list[tuple[str, str]] = []
        self.watch = Watch(client, settings.redis.prefix, every_s=0, say=lambda _: None,
                           on_transition=self._transition)  # fmt: skip
        self.sent_at: list[float] = []  # times of what was sent in the last minute
        self.suppressed = 0
        # Restarts recorded before this start are not news: read from the newest one on.
        newest = self.client.xrevrange(self.keys.restarts(), count=1)
        self._restart_id = newest[0][0] if newest else "0-0"
        self._seen = self._state()  # what is already so is not news

    # --- one pass ---

    def poll(self) -> None:
        self.watch.poll()
        now_state = self._state()
        self._changes(self._seen, now_state)
        self._seen = now_state
        self._deliver()

    def _state(self) -> dict[str, object]:
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(k.exchange(), "state")
        pipe.hget(k.exchange(), "why")
        pipe.exists(k.panic())
        pipe.hgetall(k.quarantined())
        pipe.xread({k.restarts(): self._restart_id}, count=100)
        replies = pipe.execute()
        for _stream, entries in replies[4] or []:
            for entry_id, f in entries:
                self._restart_id = entry_id
                self._say(f"{f.get('name', '?')} restarted", f"the supervisor restarted {f.get('name', '?')} "
                          f"(restart {f.get('restarts', '?')}): it exited with {f.get('code', '?')} after "
                          f"{f.get('ran_s', '?')}s; its last line: {f.get('error') or '(none)'}")  # fmt: skip
        now = self.clock()
        snaps = {s: self.risk.snapshot(s, now) for s in self.symbols}  # the day's PnL is in each one
        daily = snaps[self.symbols[0]].daily_pnl if self.symbols else Decimal(0)
        cooldowns = {s: snap.cooldown_until for s, snap in snaps.items()}
        return {"exchange": replies[0] or "unknown", "why": replies[1] or "", "panic": bool(replies[2]),
                "quarantined": {a: int(b) for a, b in replies[3].items()}, "day": utc_day(now),
                "daily_pnl": daily, "cooldowns": cooldowns, "now": now}  # fmt: skip

    def _changes(self, was: dict[str, object], now: dict[str, object]) -> None:
        if was["exchange"] != now["exchange"]:
            if now["exchange"] == "ok":
                self._say("exchange known again", "the reconciler reads the exchange again: entries allowed")
            else:
                self._say("exchange unknown", f"entries halted until it can be read: {now['why']}")
        if was["panic"] != now["panic"]:
            self._say("panic on" if now["panic"] else "panic off",
                      "every position is closing; no entries" if now["panic"] else "entries allowed again")
        was_q, now_q = was["quarantined"], now["quarantined"]
        assert isinstance(was_q, dict) and isinstance(now_q, dict)
        for source, n in sorted(now_q.items()):
            if n > was_q.get(source, 0):
                new = n - was_q.get(source, 0)
                self._say("records quarantined", f"{new} {source} record(s) could not be read and were set "
                          f"aside ({n} in all); see {self.keys.dead_letter()}")  # fmt: skip
        limit = self.settings.risk.daily_loss_limit
        was_pnl, now_pnl = was["daily_pnl"], now["daily_pnl"]
        assert isinstance(was_pnl, Decimal) and isinstance(now_pnl, Decimal)
        if now_pnl <= -limit and (was_pnl > -limit or was["day"] != now["day"]):
            self._say("daily loss limit reached", f"today's net PnL {money(now_pnl, sign=True)} (limit "
                      f"{money(-limit)}): no entries today")  # fmt: skip
        was_c, now_c = was["cooldowns"], now["cooldowns"]
        assert isinstance(was_c, dict) and isinstance(now_c, dict)
        for symbol, until in now_c.items():
            if until > float(now["now"]) and until != was_c.get(symbol, 0.0):  # type: ignore[arg-type]
                minutes = (until - float(now["now"])) / 60  # type: ignore[arg-type]
                self._say(f"{symbol} cooldown", f"loss streak: no entries on {symbol} for {minutes:.0f} min")

    def _transition(self, t: Transition) -> None:
        if t.dest == "open" and t.source == "opening":
            self._say(f"{t.symbol} {t.side} opened", f"position {t.position_id}: {t.reason}")
        elif t.dest == "closed" and t.trigger != "entry_failed":
            why = t.reason or t.trigger
            self._say(f"{t.symbol} {t.side} closed", f"position {t.position_id}: {result(t.gross, t.fees)}, "
                      f"exit reason {why}")  # fmt: skip
        if t.trigger in ("external_close", "resync") or (t.dest == "opening" and "adopt" in t.reason):
            self._say("reconciler correction", f"{t.symbol} {t.position_id}: {t.trigger} ({t.reason})")

    # --- delivery, rate-limited ---

    def _say(self, title: str, body: str) -> None:
        self.queue.append((f"scalper: {title}", body))

    def _deliver(self) -> None:
        now = self.clock()
        self.sent_at = [t for t in self.sent_at if now - t < 60.0]
        cap = self.settings.notify.max_per_minute
        if self.suppressed and len(self.sent_at) < cap and not self.queue:
            self._send(now, "scalper: notifications held back", f"{self.suppressed} more in the last minute "
                       "than notify.max_per_minute; see the logs and `scalper positions --all`")  # fmt: skip
            self.suppressed = 0
        while self.queue:
            title, body = self.queue.pop(0)
            if len(self.sent_at) >= cap:
                self.suppressed += 1
                continue
            self._send(now, title, body)

    def _send(self, now: float, title: str, body: str) -> None:
        self.sent_at.append(now)
        try:
            if not self.send(title, body):
                log.warning("notify: %r was not delivered", title)
        except Exception as err:  # a chat service down is logged, never the end of the notifier
            log.warning("notify: %r failed: %s", title, type(err).__name__)


def run_notify(settings: Settings, stopping: Callable[[], bool]) -> int:
    from scalper.connect import connect, from_url, redis_url
    from scalper.processes import yield_cpu_to_trading

    yield_cpu_to_trading("notify")
    send = apprise_sender(settings)
    if send is None:
        log.warning("notify: no notify.urls set: nothing to send (the process idles)")
        while not stopping():
            time.sleep(0.5)
        return 0
    url = redis_url(settings)
    connect(url).close()  # the address, the password and TLS work, or one line that says which does not
    client = from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
    notifier = Notifier(client, settings, send)
    log.warning("notify: sending to %d destination(s)", len(settings.notify.urls))
    while not stopping():
        try:
            notifier.poll()
        except redis.RedisError as err:
            log.warning("notify: Redis: %s; trying again", type(err).__name__)
            time.sleep(2.0)
        time.sleep(1.0)
    return 0

"""What `scalper run` prints while it runs: every position's transitions as they happen.

A pass costs O(live positions + new transitions), however many closed positions Redis holds, because it
runs in the supervisor's loop, between two checks of the children. It reads, in one MULTI, each symbol's
live-state sets and the size of its id set; then, in one pipeline, the log of each position it follows from
the last entry it printed, with the position's hash. A position is followed while it is live and once more
after it leaves the live sets (to print its close). One that was created and closed between two passes
shows only in its symbol's id count: then, and only then, the symbol's id set is read to find it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import redis

from reports.fmt import money
from scalper.run_history import contract_values, exit_price
from statemachines.keys import Keys
from statemachines.lifecycle import LIVE_STATES

log = logging.getLogger("scalper.run")

AFTER_ERROR_S = 5.0  # the wait before the next pass after one that failed
_CLOSE_FIELDS = ("side", "realized_pnl", "fees", "entry_price", "entry_size")  # what a close's line shows


@dataclass
class _Followed:
    symbol: str
    last_entry: str = "-"  # the log stream id of the last transition printed ("-": none yet)


@dataclass(frozen=True)
class Transition:
    """One transition as the watch saw it, for those who want more than its line (scalper/notify.py)."""

    position_id: str
    symbol: str
    side: str
    source: str  # "" for the creation
    dest: str
    trigger: str
    reason: str
    gross: str  # the position's realized PnL and fees as stored ("?" when unknown)
    fees: str
    line: str  # what the run prints for it


class Watch:
    """`client` decodes responses (decode_responses=True). `on_transition`: told of every new transition."""

    def __init__(self, client: redis.Redis, prefix: str, *, every_s: float = 0.25,
                 say: Callable[[str], None] = print,
                 on_transition: Callable[[Transition], None] | None = None) -> None:  # fmt: skip
        self.client, self.keys, self.every_s, self.say = client, Keys(prefix), every_s, say
        self.on_transition = on_transition
        self.following: dict[str, _Followed] = {}
        self.known: dict[str, set[str]] = {}  # per symbol, the ids seen: tells the ones that came and went
        self._next = 0.0
        self._web_before = client.get(self.keys.web_url())  # an earlier run's, until the child rewrites it
        self._web_said = False
        self._summarise_earlier_runs()

    def _web_url(self) -> None:
        """Where `scalper web` serves, once it says so (the run's child; an earlier run's address is not
        taken for it: the watch starts before its children)."""
        if self._web_said:
            return
        url = self.client.get(self.keys.web_url())
        if url and url != self._web_before:
            self.say(f"scalper: web API at {url} (/api/positions, /api/health, /metrics)")
            self._web_said = True

    def _summarise_earlier_runs(self) -> None:
        """Positions from earlier runs: a summary; from then on only what is new is printed."""
        symbols = sorted(self.client.smembers(self.keys.symbols()))
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.smembers(self.keys.positions(symbol))
        self.known = {sym: set(ids) for sym, ids in zip(symbols, pipe.execute(), strict=True)}
        live = self._live(symbols)
        pipe = self.client.pipeline(transaction=False)
        for pid, symbol in live:
            pipe.hget(self.keys.pos(symbol, pid), "state")
            pipe.xrevrange(self.keys.log(symbol, pid), count=1)
        replies = pipe.execute()
        shown = []
        for (pid, symbol), state, last in zip(live, replies[::2], replies[1::2], strict=True):
            self.following[pid] = _Followed(symbol, last[0][0] if last else "-")
            shown.append(f"{pid} {state}")
        total = sum(len(ids) for ids in self.known.values())
        if total:
            self.say(f"scalper: {total} positions from earlier runs, {len(live)} live: "
                     + (", ".join(shown) or "none"))  # fmt: skip

    def _live(self, symbols: list[str]) -> list[tuple[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.sunion([self.keys.state(symbol, st) for st in LIVE_STATES])
        found = zip(symbols, pipe.execute(), strict=True)
        return sorted(((i, sym) for sym, ids in found for i in ids), key=lambda p: (p[1], p[0]))

    def poll(self) -> None:
        """One pass, at most every `every_s`. The watch is cosmetic: an error is logged, never raised."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        try:
            self._web_url()
            self._pass()
        except Exception as err:  # a Redis outage, a poison record: the run goes on
            log.debug("watch: %s", err)
            # A Redis that hangs costs a client timeout per pass: not many of those in the supervisor's loop.
            self._next = time.monotonic() + AFTER_ERROR_S

    def _pass(self) -> None:
        symbols = sorted(self.known)
        pipe = self.client.pipeline(transaction=True)  # one snapshot: a creation lands in both or neither
        pipe.smembers(self.keys.symbols())
        for symbol in symbols:
            pipe.sunion([self.keys.state(symbol, st) for st in LIVE_STATES])
            pipe.scard(self.keys.positions(symbol))
        everyone, *per_symbol = pipe.execute()
        recount = []
        for symbol, live, count in zip(symbols, per_symbol[::2], per_symbol[1::2], strict=True):
            known = self.known[symbol]
            for pid in live:
                self.following.setdefault(pid, _Followed(symbol))
                known.add(pid)
            if count != len(known):  # created and closed unseen (or removed): find out which
                recount.append(symbol)
        for symbol in sorted(set(everyone) - set(symbols)):  # a symbol's first position
            self.known[symbol] = set()
            recount.append(symbol)
        if recount:
            self._recount(recount)
        self._show_new_transitions()

    def _recount(self, symbols: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.smembers(self.keys.positions(symbol))
        for symbol, ids in zip(symbols, pipe.execute(), strict=True):
            now = set(ids)
            for pid in now - self.known[symbol]:
                self.following.setdefault(pid, _Followed(symbol))
            self.known[symbol] = now

    def _show_new_transitions(self) -> None:
        followed = sorted(self.following.items(), key=lambda kv: (kv[1].symbol, kv[0]))
        pipe = self.client.pipeline(transaction=False)
        for pid, f in followed:
            pipe.xrange(self.keys.log(f.symbol, pid), min=f.last_entry)
            pipe.hmget(self.keys.pos(f.symbol, pid), list(_CLOSE_FIELDS))
        replies = pipe.execute()
        for (pid, f), entries, fields in zip(followed, replies[::2], replies[1::2], strict=True):
            side, pnl, fees, entry, size = (v if v is not None else "?" for v in fields)
            for entry_id, e in entries:
                if entry_id == f.last_entry:  # the range starts at the last one printed
                    continue
                what = f"{e.get('from') or 'new'} -> {e.get('to')}"
                extra = f" ({e['reason']})" if e.get("reason") else ""
                if e.get("to") == "closed":
                    extra += f"  {result(pnl, fees)}" + _exit(f.symbol, side, entry, size, pnl)
                line = f"  {pid} {f.symbol} {side:<5} {what:<22} {e.get('trigger')}{extra}"
                self.say(line)
                if self.on_transition is not None:
                    self.on_transition(Transition(pid, f.symbol, side, e.get("from") or "", e.get("to") or "",
                                                  e.get("trigger") or "", e.get("reason") or "", pnl, fees,
                                                  line.strip()))  # fmt: skip
                f.last_entry = entry_id
            if not entries or entries[-1][1].get("to") == "closed":
                del self.following[pid]  # closed and printed, or gone: nothing more will come


def result(gross: str, fees: str) -> str:
    """A closed position's result as stored, net of fees first (fees are negative when charged): a loss
    reads as one. Also scalper/notify.py's."""
    try:
        g, f = Decimal(gross), Decimal(fees)
    except InvalidOperation:  # a hash that lost a field: what is there, as it is
        return f"pnl {gross} fees {fees}"
    return f"net {money(g + f, sign=True)} (gross {money(g, sign=True)}, fees {money(f, sign=True)})"


def _exit(symbol: str, side: str, entry: str, size: str, gross: str) -> str:
    """The average exit price, from the gross PnL (the instrument's contract value known), else nothing."""
    try:
        px = exit_price(Decimal(entry), Decimal(gross), Decimal(size), side, contract_values().get(symbol))
    except InvalidOperation:
        return ""
    return "" if px is None or Decimal(gross) == 0 else f", exit {float(px):.12g}"

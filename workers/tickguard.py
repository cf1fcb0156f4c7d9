"""Which ticks may move the engine: a finite price and time are not enough.

A feed can glitch: one print at 1.0 in a 46,000 market force-closed a position, and one timestamp a year
ahead froze the indicators (every later tick looked late) and moved the replay clock forward for good. So
every tick passes a guard before it reaches the indicators and the positions; one that fails is dropped and
counted (workers/quarantine.py), and never decides an exit.

- **From the future**: live, a tick stamped more than `max_tick_future_s` ahead of the exchange's clock (the
  host clock corrected by the measured offset) is dropped. Never accepted later: the future is not confirmed.
  Until the offset is measured (the first seconds after a start), the host's clock stands in with
  `slack_s` more (minutes: the host's clock may be behind the exchange's): a stamp an hour ahead is still
  dropped.
- **Outside the band**: a price more than `tick_band_pct` away from the last accepted price is held as a
  suspect. Markets do gap, so a move is accepted once `tick_confirm` suspects in a row agree with each other
  (each within the band of the newest); then the band moves with it. A single bad print never passes.
- **A jump in time**: in a replay (the engine on the data's clock) a tick more than `max_tick_gap_s` after
  the last accepted one is a suspect too, accepted by the same confirmation.
- **The reference** is the last accepted tick; before the first, the newest warm-up candle's close, else the
  entry price of a live position of the symbol. With none of them, the first tick is taken as it comes.

Pure: no I/O, one guard per symbol.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TickGuard:
    band_pct: float
    confirm: int
    future_s: float
    max_gap_s: float
    last_px: float = 0.0
    last_ts: float = 0.0
    suspects: list[tuple[float, float]] = field(default_factory=list)

    def anchor(self, ts: float, px: float) -> None:
        """A trusted reference (the last warm-up candle's close; a live position's entry price, ts 0)."""
        if px > 0:
            self.last_ts, self.last_px = ts, px
            self.suspects.clear()

    def check(self, ts: float, px: float, now: float | None, data_clock: bool = False,
              slack_s: float = 0.0) -> str:  # fmt: skip
        """"" to accept the tick (and move the reference), else why it is dropped ("code: detail", the code
        one of future, outside_band, time_jump). `now`: the exchange's clock live (the host's, with `slack_s`
        allowed on top, while the exchange's is not measured yet), None in a backtest; `data_clock`: a
        replay, where ticks define the time."""
        if now is not None and ts > now + self.future_s + slack_s:
            return f"future: time {ts - now:.1f}s ahead of the clock (max {self.future_s + slack_s}s)"
        last_px = self.last_px
        if (last_px and abs(px - last_px) <= last_px * self.band_pct / 100.0 and not self.suspects
                and (not data_clock or ts - self.last_ts <= self.max_gap_s)):  # fmt: skip
            # The common case, inline (every tick of every symbol): near the last price, in time.
            self.last_px = px
            if ts > self.last_ts:
                self.last_ts = ts
            return ""
        why = self._suspect(ts, px, data_clock)
        if not why:
            self._accept(ts, px)
            return ""
        self.suspects = [(t, p) for t, p in self.suspects if self._near(p, px)] + [(ts, px)]
        if len(self.suspects) >= self.confirm and all(
            t1 <= t2 for (t1, _), (t2, _) in zip(self.suspects, self.suspects[1:], strict=False)
        ):
            self._accept(ts, px)  # confirmed: the market really moved (or the data really has a gap)
            return ""
        return why

    def _suspect(self, ts: float, px: float, data_clock: bool) -> str:
        if not self.last_px:
            return ""  # nothing to compare with: the first tick is the reference
        if not self._near(self.last_px, px):
            return f"outside_band: price {px} is more than {self.band_pct}% from {self.last_px}"
        if data_clock and self.last_ts and ts - self.last_ts > self.max_gap_s:
            return f"time_jump: time jumps {ts - self.last_ts:.0f}s ahead (max {self.max_gap_s:.0f}s)"
        return ""

    def _near(self, ref: float, px: float) -> bool:
        return abs(px - ref) <= ref * self.band_pct / 100.0

    def _accept(self, ts: float, px: float) -> None:
        self.last_px = px
        self.last_ts = max(self.last_ts, ts)
        self.suspects.clear()

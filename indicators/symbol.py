"""Per-symbol live indicators: ticks -> 1-minute candles -> RSI / MACD / ATR, O(1) per tick."""

from __future__ import annotations

from collections.abc import Iterable

from indicators.atr import Atr
from indicators.candles import Candle, CandleBuilder
from indicators.macd import Macd
from indicators.rsi import Rsi


class SymbolIndicators:
    """Closed candles are committed; live values are peeks with the forming candle as next candle.

    Live attributes (None until warm): `rsi`, `macd`, `macd_signal`, `atr`; `price`/`price_ts` are
    the latest accepted tick.  `candles` counts committed candles (history, gap fills included).
    Timestamps are seconds (float), on every input.
    """

    __slots__ = (
        "_atr",
        "_macd",
        "_rsi",
        "_warm",
        "atr",
        "builder",
        "candles",
        "macd",
        "macd_signal",
        "price",
        "price_ts",
        "rsi",
    )

    def __init__(
        self,
        rsi_period: int = 14,
        macd_fast: int = 12,
        macd_slow: int = 26,
        macd_signal: int = 9,
        atr_period: int = 14,
        candle_seconds: int = 60,
    ) -> None:
        self.builder = CandleBuilder(candle_seconds)
        self._rsi = Rsi(rsi_period)
        self._macd = Macd(macd_fast, macd_slow, macd_signal)
        self._atr = Atr(atr_period)
        self.price: float | None = None
        self.price_ts: float | None = None
        self.rsi: float | None = None
        self.macd: float | None = None
        self.macd_signal: float | None = None
        self.atr: float | None = None
        self.candles = 0
        self._warm = False  # RSI, MACD signal and ATR all have a value (from a commit on, for good)

    @property
    def warm(self) -> bool:
        return (
            self.rsi is not None
            and self.macd is not None
            and self.macd_signal is not None
            and self.atr is not None
        )

    def on_tick(self, ts: float, price: float) -> None:
        """Add a trade/tick: commit the candles it closed, then refresh the live values."""
        b = self.builder
        f = b.forming
        # Hot path: the tick lands in the forming candle (all but ~1 tick per minute).  The candle
        # update is inlined here (same rule as CandleBuilder.on_tick) to save a call and a list.
        if ts < b.forming_end:
            if ts < f.start_ts:  # type: ignore[union-attr]
                b.late_ticks += 1
                return
            f.close = price  # type: ignore[union-attr]
            if price > f.high:  # type: ignore[union-attr]
                f.high = price  # type: ignore[union-attr]
            elif price < f.low:  # type: ignore[union-attr]
                f.low = price  # type: ignore[union-attr]
        else:
            late = b.late_ticks
            closed = b._roll(ts, price)  # what CandleBuilder.on_tick does with a tick at or past forming_end
            if b.late_ticks != late:
                return
            self._commit(closed)
            f = b.forming
        self.price = price
        self.price_ts = ts
        rsi, macd, atr = self._rsi, self._macd, self._atr
        if self._warm:
            # Warm (every tick after the warm-up): the three peeks inline, the same arithmetic as Rsi.peek,
            # Macd.peek and Atr.peek (tests/test_indicators.py checks the values are identical), without
            # three calls and a tuple on every tick, live and in a backtest.
            d = price - rsi._prev
            if d > 0.0:
                g = rsi._agk + rsi._a * d
                lo = rsi._alk
            else:
                g = rsi._agk
                lo = rsi._alk - rsi._a * d
            self.rsi = 100.0 * g / (g + lo) if lo > 0.0 else 100.0
            fast, slow, signal = macd._fast, macd._slow, macd._signal
            m = fast._kv + fast._a * price - (slow._kv + slow._a * price)
            self.macd, self.macd_signal = m, signal._kv + signal._a * m
            pc, high, low = atr._prev, f.high, f.low  # type: ignore[union-attr]
            tr = (high if high > pc else pc) - (low if low < pc else pc)  # type: ignore[operator]
            self.atr = (atr._base + tr) / atr._period
            return
        self.rsi = rsi.peek(price)
        mv = macd.peek(price)
        if mv is None:
            self.macd = self.macd_signal = None
        else:
            self.macd, self.macd_signal = mv[0], mv[1]
        self.atr = atr.peek(f.high, f.low, price)  # type: ignore[union-attr]

    def warm_up(self, candles: Iterable[tuple[float, float, float, float, float]]) -> None:
        """Commit history (start_ts, open, high, low, close), oldest first, before any live tick.

        Gaps are filled with flat candles like live data; candles at or before the last one are
        skipped.  Afterwards the live attributes show the last committed values.
        """
        b = self.builder
        if b.forming is not None:
            raise RuntimeError("warm_up() after live ticks")
        last = None
        for start_ts, o, h, lo, c in candles:
            fills = b.resume_after(start_ts, c)
            if fills is None:
                continue
            self._commit(fills)
            self._commit((Candle(start_ts, o, h, lo, c),))
            last = (start_ts, c)
        if last is None:
            return
        self.price, self.price_ts = last[1], last[0] + b.interval_s
        self.rsi = self._rsi.value
        m = self._macd.value
        self.macd, self.macd_signal = (None, None) if m is None else (m[0], m[1])
        self.atr = self._atr.value

    def _commit(self, closed: Iterable[Candle]) -> None:
        rsi, macd, atr = self._rsi, self._macd, self._atr
        for c in closed:
            rsi.update(c.close)
            macd.update(c.close)
            atr.update(c.high, c.low, c.close)
            self.candles += 1
        if not self._warm:  # once each has a value, an update never takes it away
            self._warm = rsi._v is not None and macd._signal._v is not None and atr._v is not None

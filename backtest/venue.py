"""The backtest's exchange: the paper venue's money rules (exchanges/paper/ledger.py) on recorded quotes,
with a latency, a spread, maintenance-margin tiers and funding.

What it does with an order intent is what the order worker and OKX do with it (workers/orders.py):

- an intent reaches the venue `latency_s` after the decision and executes on the quote standing then (the
  last tick at or before that time), so a decision never fills at a price it did not see coming;
- an entry is a market order of the intent's size rounded down to the lot; refused (cancelled, nothing
  filled) when the free cash cannot hold its margin and fee;
- a harvest is a reduce-only market order of the intent's fraction of what the venue holds, rounded down to
  the lot (below the minimum: nothing is sent, as the worker skips it);
- a full close is OKX's close-position: whatever the venue holds on the symbol, at market;
- a protect intent places (or resizes to the held size) a reduce-only stop at its trigger rounded to the
  tick; an unprotect cancels it; a stop triggers when the mark crosses it and fills at market;
- a buy takes the ask and a sell the bid: the data's own, else `exchange.paper_spread_bps` around the price;
- a position whose margin ratio falls to the maintenance rate of its tier is liquidated at the mark, losing
  its isolated margin; funding is paid or received at each funding time given.

Positions are netted per symbol, as at OKX in net mode: every position of the bot on a symbol is one
position at the venue. What happens is reported back as the exchange's orders and positions, which the
engine settles with the live rule table (workers/settlement.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from exchanges.base import ExchangePosition, Instrument, Order, OrderSide, OrderState
from exchanges.funding import funding_payment
from exchanges.paper import ledger
from statemachines.intents import IntentAction, OrderIntent

MaintenanceRate = Callable[[str, Decimal], Decimal]  # (instrument, contracts) -> maintenance margin rate


def flat_rate(rate: Decimal) -> MaintenanceRate:
    return lambda _inst, _size: rate


@dataclass(slots=True)
class Stop:
    symbol: str
    stop_id: str
    position_id: str
    sell: bool  # a long's stop sells
    trigger: float
    size: Decimal


@dataclass(slots=True)
class Held:
    """The venue's position on one symbol, with the float levels the tick path compares against."""

    pos: ledger.Pos
    liq: float  # liquidation mark (0: none)
    funding: Decimal = Decimal(0)  # paid (−) or received since it opened
    # The position's money as floats for the equity samples, converted once (the position never changes:
    # a fill makes a new one and a new Held).
    margin_f: float = field(init=False)
    avg_px_f: float = field(init=False)
    size_f: float = field(init=False)

    def __post_init__(self) -> None:
        p = self.pos
        self.margin_f, self.avg_px_f, self.size_f = float(p.margin), float(p.avg_px), float(p.size)


@dataclass(slots=True)
class Fill:
    """One fill the engine must hear of: the order as the exchange reports it, and the position after."""

    order: Order
    position: ExchangePosition | None
    position_id: str  # the bot's position the order was sent for
    ended_by: str = ""  # "protective stop filled" or "liquidated": the venue ended the position itself
    funding: Decimal = Decimal(0)  # funding the venue position paid or received, on its end


@dataclass(slots=True)
class Quote:
    """The last price of a symbol; its bid and ask as the data gave them (None: made from the spread)."""

    px: float
    bid: float | None
    ask: float | None


@dataclass
class SimVenue:
    instruments: Mapping[str, Instrument]
    balance: Decimal
    taker_fee: Decimal
    latency_s: float
    spread_bps: Decimal
    leverage: Decimal
    maintenance: MaintenanceRate = field(default=flat_rate(Decimal("0.004")))
    funding_times: Mapping[str, list[tuple[float, Decimal]]] = field(default_factory=dict)  # sorted

    def __post_init__(self) -> None:
        self.cash = self.balance  # free cash: the balance less the positions' margins (a property)
        self.pending: deque[tuple[float, OrderIntent]] = deque()
        self.quotes: dict[str, Quote] = {}
        self.held: dict[str, Held] = {}
        self.stops: dict[str, Stop] = {}  # by stop id
        self.orders: dict[str, Order] = {}  # by client order id
        self.fills: list[Fill] = []  # what happened since the engine last took them
        self.exit_fills: dict[str, list[tuple[Decimal, Decimal]]] = {}  # position id -> closing (size, px)
        self.funding_paid: dict[str, Decimal] = {}  # position id -> funding over its life
        self._funding_next = {s: 0 for s in self.funding_times}
        self._seq = 0
        self.liquidations = 0
        self._ct_val = {s: float(i.ct_val) for s, i in self.instruments.items()}

    @property
    def cash(self) -> Decimal:
        return self._cash

    @cash.setter
    def cash(self, value: Decimal) -> None:
        # Its float for the equity samples is kept with it: a Decimal's float() is a string conversion.
        self._cash = value
        self._cash_f = float(value)

    # --- from the engine ---

    def submit(self, intent_fields: Mapping[str, str], ts: float) -> None:
        """An order intent handed over with its transition; it arrives after the latency."""
        self.pending.append((ts + self.latency_s, OrderIntent.from_fields(dict(intent_fields))))

    def take_fills(self) -> list[Fill]:
        out, self.fills = self.fills, []
        return out

    def order(self, cl_ord_id: str) -> Order | None:
        return self.orders.get(cl_ord_id)

    def position(self, symbol: str, side: str) -> ExchangePosition | None:
        held = self.held.get(symbol)
        if held is None or held.pos.side != side:
            return None
        return self._exchange_position(symbol, held)

    def live_stops(self, symbol: str) -> frozenset[str]:
        return frozenset(s.stop_id for s in self.stops.values() if s.symbol == symbol)

    def equity(self) -> float:
        """Free cash + margins + unrealized PnL at the last prices."""
        total = self._cash_f
        for symbol, held in self.held.items():
            total += (
                held.margin_f
                + (self.quotes[symbol].px - held.avg_px_f) * held.size_f * self._ct_val[symbol] * held.pos.dir
            )
        return total

    # --- the clock ---

    def deliver(self, until: float) -> None:
        """Execute the intents that arrived by `until`, on the quotes standing before it."""
        pending = self.pending
        while pending and pending[0][0] <= until:
            due, intent = pending.popleft()
            self._execute(intent, due)

    def on_quote(self, symbol: str, ts: float, px: float, bid: float | None, ask: float | None) -> None:
        """A new price: stops that it crosses trigger, a position past its liquidation mark is liquidated,
        and funding due by `ts` is paid. Floats compare on the hot path; money is Decimal."""
        quote = self.quotes.get(symbol)
        if quote is None:
            self.quotes[symbol] = Quote(px, bid, ask)
        else:
            quote.px, quote.bid, quote.ask = px, bid, ask
        self.quote_moved(symbol, ts, px)

    def quote_moved(self, symbol: str, ts: float, px: float) -> None:
        """What a new price does once the symbol's quote holds it (the engine updates a known quote in place
        and calls this only when `stops`, `held` or `funding_times` is not empty)."""
        if self.stops:  # the stops this price crosses, then each fires (a fill changes no stop's trigger)
            crossed = [
                s for s in self.stops.values()
                if s.symbol == symbol and ((px <= s.trigger) if s.sell else (px >= s.trigger))
            ]  # fmt: skip
            for stop in crossed:
                self._trigger(stop, ts)
        held = self.held.get(symbol)
        if held is not None and held.liq and ((px <= held.liq) if held.pos.dir > 0 else (px >= held.liq)):
            self._liquidate(symbol, held, ts)
        if symbol in self._funding_next:
            self._fund(symbol, ts)

    # --- orders ---

    def _execute(self, intent: OrderIntent, ts: float) -> None:
        action = intent.action
        if action is IntentAction.PROTECT:
            self._protect(intent)
            return
        if action is IntentAction.UNPROTECT:
            self.stops.pop(intent.cl_ord_id, None)
            return
        if intent.cl_ord_id in self.orders:  # the exchange refuses a client id it has seen
            return
        inst = self.instruments[intent.symbol]
        held = self.held.get(intent.symbol)
        buy = intent.order_side == "buy"
        if action is IntentAction.OPEN:
            size = inst.round_size(intent.size)
            self._fill(intent, buy, size, ts, may_open=True)
            return
        closable = ledger.closable(held.pos if held else None, buy)
        if action is IntentAction.HARVEST:
            size = inst.round_size(closable * Decimal(repr(intent.fraction)))
            if size <= 0:
                return  # below the minimum: the worker sends nothing
        else:
            size = closable
        if size <= 0:
            self._record(intent, buy, OrderState.CANCELED, Decimal(0), ts)  # nothing to close
            self.fills.append(Fill(self.orders[intent.cl_ord_id], self.position(intent.symbol, intent.side),
                                   intent.position_id))  # fmt: skip
            return
        self._fill(intent, buy, size, ts, may_open=False)

    def _fill(self, intent: OrderIntent, buy: bool, size: Decimal, ts: float, *, may_open: bool,
              ended_by: str = "") -> None:  # fmt: skip
        symbol = intent.symbol
        inst = self.instruments[symbol]
        px = self._touch(symbol, buy)
        held = self.held.get(symbol)
        fill = None
        if size > 0:
            fill = ledger.apply_fill(held.pos if held else None, buy=buy, sz=size, px=px,
                                     ct_val=inst.ct_val, lever=self.leverage, fee_rate=self.taker_fee,
                                     may_open=may_open)  # fmt: skip
        if fill is None or (fill.margin_added and self.cash + fill.cash_delta < 0):
            order = self._record(intent, buy, OrderState.CANCELED, Decimal(0), ts)  # insufficient margin
            self.fills.append(Fill(order, self.position(symbol, intent.side), intent.position_id))
            return
        self.cash += fill.cash_delta
        funding = Decimal(0)
        if fill.pos is None:
            funding = held.funding if held else Decimal(0)
            self.held.pop(symbol, None)
        else:
            kept = held.funding if held and held.pos.side == fill.pos.side else Decimal(0)
            self.held[symbol] = Held(fill.pos, self._liq_px(symbol, fill.pos), kept)
        if fill.closed:
            self.exit_fills.setdefault(intent.position_id, []).append((fill.closed, px))
        order = self._record(intent, buy, OrderState.FILLED, size, ts, px=px, fee=fill.fee, pnl=fill.pnl)
        position = self.position(symbol, intent.side)
        self.fills.append(Fill(order, position, intent.position_id, ended_by=ended_by, funding=funding))
        if fill.pos is not None:
            self._resize_stops(symbol, fill.pos.size)

    def _touch(self, symbol: str, buy: bool) -> Decimal:
        """What a market order pays: the ask for a buy, the bid for a sell."""
        q = self.quotes[symbol]
        if q.bid is not None and q.ask is not None:
            return Decimal(repr(q.ask if buy else q.bid))
        bid, ask = ledger.quote_around(Decimal(repr(q.px)), self.spread_bps)
        return ask if buy else bid

    def _record(self, intent: OrderIntent, buy: bool, state: OrderState, filled: Decimal, ts: float, *,
                px: Decimal | None = None, fee: Decimal = Decimal(0),
                pnl: Decimal = Decimal(0)) -> Order:  # fmt: skip
        self._seq += 1
        order = Order(inst_id=intent.symbol, cl_ord_id=intent.cl_ord_id, ord_id=str(self._seq),
                      side=OrderSide.BUY if buy else OrderSide.SELL, state=state, size=filled, filled=filled,
                      avg_px=px, reduce_only=intent.action is not IntentAction.OPEN, fee=fee, pnl=pnl,
                      u_time_ms=int(ts * 1000))  # fmt: skip
        self.orders[intent.cl_ord_id] = order
        return order

    # --- protective stops ---

    def _protect(self, intent: OrderIntent) -> None:
        held = self.held.get(intent.symbol)
        if held is None or held.pos.side != intent.side:
            return  # the position is over: the job skips (a late stop is cancelled at once live)
        inst = self.instruments[intent.symbol]
        trigger = inst.round_price(Decimal(repr(intent.stop_px)))
        self.stops[intent.cl_ord_id] = Stop(intent.symbol, intent.cl_ord_id, intent.position_id,
                                            intent.side == "long", float(trigger), held.pos.size)  # fmt: skip

    def _resize_stops(self, symbol: str, size: Decimal) -> None:
        for stop in self.stops.values():
            if stop.symbol == symbol:
                stop.size = size

    def _trigger(self, stop: Stop, ts: float) -> None:
        """The stop fires: a reduce-only market order for what is held, carrying the stop's id."""
        self.stops.pop(stop.stop_id, None)
        held = self.held.get(stop.symbol)
        side = "long" if stop.sell else "short"
        if held is None or held.pos.side != side:
            return
        intent = OrderIntent(IntentAction.CLOSE, stop.position_id, stop.symbol, side, stop.stop_id)
        self._fill(intent, not stop.sell, min(stop.size, held.pos.size), ts, may_open=False,
                   ended_by="protective stop filled")

    # --- liquidation and funding ---

    def _liq_px(self, symbol: str, pos: ledger.Pos) -> float:
        inst = self.instruments[symbol]
        mmr = self.maintenance(symbol, pos.size)
        liq = ledger.liq_px(pos, inst.ct_val, mmr, self.taker_fee)
        return float(liq) if liq is not None else 0.0

    def _liquidate(self, symbol: str, held: Held, ts: float) -> None:
        """At the mark: the isolated margin is lost (PnL plus penalty); the symbol's stops go with it."""
        pos, quote = held.pos, self.quotes[symbol]
        mark = Decimal(repr(quote.px))
        loss, penalty = ledger.liquidation(pos, mark, self.instruments[symbol].ct_val)
        self.held.pop(symbol)
        self.liquidations += 1
        owners = {s.position_id for s in self.stops.values() if s.symbol == symbol}
        for stop_id in [s.stop_id for s in self.stops.values() if s.symbol == symbol]:
            del self.stops[stop_id]
        owner = next(iter(sorted(owners)), "")
        self._seq += 1
        order = Order(inst_id=symbol, cl_ord_id=f"liq{self._seq}", ord_id=str(self._seq),
                      side=OrderSide.SELL if pos.dir > 0 else OrderSide.BUY, state=OrderState.FILLED,
                      size=pos.size, filled=pos.size, avg_px=mark, reduce_only=True, fee=penalty, pnl=loss,
                      u_time_ms=int(ts * 1000))  # fmt: skip
        self.exit_fills.setdefault(owner, []).append((pos.size, mark))
        self.fills.append(Fill(order, None, owner, ended_by="liquidated", funding=held.funding))

    def _fund(self, symbol: str, ts: float) -> None:
        times, i = self.funding_times[symbol], self._funding_next[symbol]
        while i < len(times) and times[i][0] <= ts:
            held = self.held.get(symbol)
            if held is not None:
                pos, ct = held.pos, self.instruments[symbol].ct_val
                paid = funding_payment(pos.side, pos.size, ct, Decimal(repr(self.quotes[symbol].px)),
                                       times[i][1])  # fmt: skip
                self.cash += paid
                held.funding += paid
            i += 1
        self._funding_next[symbol] = i

    def _exchange_position(self, symbol: str, held: Held) -> ExchangePosition:
        p = held.pos
        return ExchangePosition(inst_id=symbol, pos_side="net", side=p.side, size=p.size, avg_px=p.avg_px,
                                lever=p.lever, liq_px=Decimal(repr(held.liq)) if held.liq else None,
                                fee=p.fee)  # fmt: skip

"""Fault injection for tests: a plan of misbehaviours and the decorator that plays them on a venue's methods.

    ex.inject("timeout", op="place_order")   # the next place_order is carried out, then OutcomeUnknown
    ex.inject("read_fail", count=3)          # the next 3 reads (any of READ_OPS) raise ExchangeUnavailable
    ex.inject("late", op="place_stop", seconds=2)  # OutcomeUnknown now; the stop is placed 2 s later

`faulty(op)` wraps each PaperExchange method; `FaultPlan` is what `inject` adds to.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from exchanges.base import ExchangeUnavailable, OutcomeUnknown
from exchanges.paper.ledger import venue_error

READ_OPS = ("positions", "balance", "pending_orders", "stops", "get_order", "recent_orders", "stop_fill",
            "find_stop")
ORDER_OPS = ("place_order", "close_position")  # what a fault hits when it names no op: any order request


@dataclass
class Fault:
    """An injected misbehaviour of the next `count` calls of the methods in `ops`.

    kind "partial"   (an order request) the order's first fill takes only `fraction` (default 0.5) of its
                     size, rounded down to the lot; then the rest stays live (`rest="live"`) or is cancelled
                     (`rest="cancel"`)
         "reject"    raise the venue error for `code` (default "51000"), `msg`; nothing is done
         "timeout"   `executed=True` (default): the request IS carried out, then OutcomeUnknown is raised
                     (the unknown-outcome case: query by client id before any retry); `executed=False`:
                     the request is lost, then OutcomeUnknown. On a read: ExchangeUnavailable
         "delay"     await asyncio.sleep(`seconds`, default 0.05) before the call is served
         "read_fail" raise ExchangeUnavailable (default ops: every read)
         "late"      the request is held up on its way: OutcomeUnknown now (its reply is lost), and the venue
                     carries it out `seconds` (default 1) later by its clock, at its next quote or
                     `land_held()`, as OKX may execute a request whose reply timed out. Meanwhile the
                     venue serves everything else
    """

    kind: str
    ops: tuple[str, ...]
    count: int = 1
    params: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    KINDS = ("partial", "reject", "timeout", "delay", "read_fail", "late")

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.held: list[tuple[float, Callable[[], Awaitable[Any]]]] = []  # "late" requests: (due, call)

    def add(self, kind: str, count: int = 1, op: str | tuple[str, ...] | None = None, **params: Any) -> Fault:
        if kind not in self.KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {self.KINDS}")
        if count < 1:
            raise ValueError("count must be at least 1")
        ops = (op,) if isinstance(op, str) else op or (READ_OPS if kind == "read_fail" else ORDER_OPS)
        fault = Fault(kind, tuple(ops), count, params)
        self.faults.append(fault)
        return fault

    def take(self, op: str) -> list[Fault]:
        """The faults hitting this call of `op`, each used up by one."""
        hit = [f for f in self.faults if op in f.ops]
        for f in hit:
            f.count -= 1
        self.faults = [f for f in self.faults if f.count > 0]
        return hit

    def hold(self, due: float, call: Callable[[], Awaitable[Any]]) -> None:
        self.held.append((due, call))

    def landing(self, now: float) -> list[Callable[[], Awaitable[Any]]]:
        """The held requests due by `now`, in the order they arrived; they leave the plan."""
        due = [call for at, call in self.held if at <= now]
        self.held = [(at, call) for at, call in self.held if at > now]
        return due

    def clear(self) -> None:
        self.faults.clear()
        self.held.clear()


class Faulty(Protocol):
    """What `faulty` needs of the venue: its plan, and where it leaves a "partial" fault for the call."""

    faults: FaultPlan
    _partial: Fault | None
    clock: Callable[[], float]


V = TypeVar("V", bound=Faulty)
P = ParamSpec("P")
T = TypeVar("T")
Method = Callable[Concatenate[V, P], Awaitable[T]]


def faulty(op: str) -> Callable[[Method[V, P, T]], Method[V, P, T]]:
    """Run the faults injected for `op` around the method: delay/reject/read failure before, timeout after.
    The methods have no await of their own, so `_partial` cannot leak from one call into another."""

    def wrap(fn: Method[V, P, T]) -> Method[V, P, T]:
        @functools.wraps(fn)
        async def run(self: V, /, *args: P.args, **kwargs: P.kwargs) -> T:
            faults = self.faults.take(op)
            for f in faults:
                if f.kind == "delay":
                    await asyncio.sleep(float(f.params.get("seconds", 0.05)))
            for f in faults:
                if f.kind == "read_fail" or (f.kind == "timeout" and op in READ_OPS):
                    raise ExchangeUnavailable(f"injected {f.kind} on {op}")
                if f.kind == "reject":
                    code, msg = str(f.params.get("code", "51000")), str(f.params.get("msg", "injected"))
                    raise venue_error(code, msg)
                if f.kind == "timeout" and not f.params.get("executed", True):
                    raise OutcomeUnknown(f"injected timeout on {op} (request lost)")
                if f.kind == "late":
                    seconds = float(f.params.get("seconds", 1.0))
                    self.faults.hold(self.clock() + seconds, functools.partial(fn, self, *args, **kwargs))
                    raise OutcomeUnknown(f"injected late {op}: carried out {seconds}s from now")
            self._partial = next((f for f in faults if f.kind == "partial"), None)
            try:
                result = await fn(self, *args, **kwargs)
            finally:
                self._partial = None
            if any(f.kind == "timeout" for f in faults):
                raise OutcomeUnknown(f"injected timeout on {op} (request executed)")
            return result

        return run

    return wrap

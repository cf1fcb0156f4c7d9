"""Counters kept in Redis, where the processes already write: what `scalper web`'s /metrics exports.

Each process counts what only it sees (a transition applied, an order's result and latency, a reconciler
correction, a dropped record, a WebSocket reconnect, a rate-limit reply) with HINCRBY commands added to a
write it does anyway: inside the store's transition script, on the pipeline that publishes an order's
outcome, on the reconciler's verdict, on the quarantine's flush. So the engine's tick path pays no round
trip for them, and every process's numbers are in one place, whichever process or machine made them.

    {prefix}:{SYMBOL}:metrics:transitions  "from|to|trigger" -> n       (statemachines/lua.py)
    {prefix}:metrics:orders                "action|result" -> n         (workers/orders.py)
    {prefix}:metrics:order-latency         "stage|bucket", "stage|sum", "stage|count"  (a histogram)
    {prefix}:metrics:corrections           kind -> n                    (workers/reconciler.py)
    {prefix}:metrics:dropped               "source|reason" -> n         (workers/quarantine.py)
    {prefix}:metrics:reconnects            stream -> n                  (exchanges/okx/counts.py)
    {prefix}:metrics:rate-limited          request kind -> n            (exchanges/okx/counts.py)

A histogram is one hash: per stage, the count of each bucket (the upper bound, "+Inf" last), the sum and
the count. Buckets are stored apart (one HINCRBY an observation, not one per bound) and made cumulative when
read (`read_histogram`), as Prometheus wants them.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

from statemachines.redis_text import as_str

SEP = "|"
# Seconds. Order latency runs from a millisecond (decision → sent, on loopback) to seconds (a slow venue).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INF = "+Inf"


def bucket_of(seconds: float, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> str:
    """The label of the smallest bucket holding `seconds` ("le" in Prometheus terms)."""
    i = bisect.bisect_left(bounds, seconds)
    return repr(bounds[i]) if i < len(bounds) else INF


def observe(pipe: Any, key: str, stage: str, seconds: float) -> None:
    """Three commands on the caller's pipeline: the bucket, the sum, the count."""
    seconds = max(0.0, seconds)
    pipe.hincrby(key, f"{stage}{SEP}{bucket_of(seconds)}", 1)
    pipe.hincrbyfloat(key, f"{stage}{SEP}sum", seconds)
    pipe.hincrby(key, f"{stage}{SEP}count", 1)


def read_histogram(raw: Mapping[Any, Any], bounds: tuple[float, ...] = LATENCY_BUCKETS
                   ) -> dict[str, tuple[list[tuple[str, float]], float]]:  # fmt: skip
    """A histogram hash -> stage -> (cumulative buckets [(le, n)], with "+Inf" last; sum)."""
    stages: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        stage, _, part = as_str(field).rpartition(SEP)
        stages.setdefault(stage, {})[part] = float(as_str(value))
    out = {}
    for stage, parts in sorted(stages.items()):
        running, buckets = 0.0, []
        for le in [*(repr(b) for b in bounds), INF]:
            running += parts.get(le, 0.0)
            buckets.append((le, running))
        out[stage] = (buckets, parts.get("sum", 0.0))
    return out


def read_counts(raw: Mapping[Any, Any], labels: int = 1) -> list[tuple[list[str], int]]:
    """A counter hash -> [(label values, n)]: fields "a|b" split into `labels` values."""
    out = []
    for field, value in sorted((as_str(f), int(as_str(v))) for f, v in raw.items()):
        parts = field.split(SEP, labels - 1)
        out.append(([*parts, *[""] * (labels - len(parts))], value))
    return out

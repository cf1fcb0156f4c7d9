"""/metrics: Prometheus metrics of the whole system, measured where they already are, in Redis.

Where each is measured (the choice, and why): every process keeps its counters in Redis, on a write it does
anyway, and this process's collector reads them at each scrape. So the engine's tick path pays no round
trip for them (a transition is counted by the Lua script that applies it), no process needs an HTTP port
of its own, a restarted process loses nothing, and every process's numbers are in one place, whichever
process or machine made them. The counters' keys and who writes them: statemachines/counters.py.

Counters (each only grows; `rate()` them):
- `scalper_transitions_total{symbol,from,to,trigger}`: transitions applied (the store's scripts);
- `scalper_orders_total{action,result}`: order jobs run, by result (placed, exists, refused, flat, skip,
  done, unknown, pending, error) (the order workers);
- `scalper_order_latency_seconds{stage}`: a histogram, decision_to_sent, sent_to_acknowledged,
  decision_to_acknowledged (the order workers; the decision is the job's enqueue, in the transition);
- `scalper_reconciler_corrections_total{kind}`: the reconciler's corrections, by trigger (the engine);
- `scalper_dropped_messages_total{source,reason}`: records dropped by a reader, e.g. ticks the tick guard
  refused (workers/tickguard.py), by source and reason code (the quarantine);
- `scalper_quarantined_records_total{source}`: the same records, by source only (older, kept);
- `scalper_ws_reconnects_total{stream}`: OKX WebSocket reconnects (the feed's public streams, the account
  process's private one);
- `scalper_rate_limited_total{kind}`: OKX rate-limit replies, by request kind (every process with a client);
- `scalper_trades_closed_total`: closed trades Redis holds.
Gauges are states read as they are: positions by state, exchange known, feed lag, engine leases, order jobs
by RQ registry, Redis memory, panic, realized PnL. They come from the dashboard's board (scalper/web/views.py)
when one was read within the last second, so a scrape beside an open dashboard reads nothing twice; the
closed trades behind the totals are read incrementally (scalper/web/closed.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from scalper.web.views import Views
from statemachines import counters

SHARED_READ_S = 1.0  # a board read this recently serves a scrape: the gauges are at most this old

# (family, help, metric hash name, labels)
COUNTERS = (
    ("scalper_orders", "Order jobs run, by action and result", "orders", ["action", "result"]),
    ("scalper_reconciler_corrections", "Reconciler corrections, by kind", "corrections", ["kind"]),
    ("scalper_dropped_messages", "Records a reader dropped, by source and reason", "dropped",
     ["source", "reason"]),
    ("scalper_ws_reconnects", "OKX WebSocket reconnects, by stream", "reconnects", ["stream"]),
    ("scalper_rate_limited", "OKX rate-limit replies, by request kind", "rate-limited", ["kind"]),
)  # fmt: skip


class RedisCollector(Collector):
    def __init__(self, views: Views) -> None:
        self.views = views

    def collect(self) -> Iterator[Metric]:
        # The dashboard's read of this second when there is one (a scrape then costs no read of its own).
        board = self.views.board(max_age_s=SHARED_READ_S)
        health, summary = board["health"], board["summary"]
        states = GaugeMetricFamily("scalper_positions", "Positions by lifecycle state", labels=["state"])
        for state, n in summary["by_state"].items():
            states.add_metric([state], n)
        yield states
        yield GaugeMetricFamily("scalper_exchange_known", "1 when the reconciler last read the exchange",
                                value=1 if health["exchange"]["state"] == "ok" else 0)  # fmt: skip
        lag = GaugeMetricFamily("scalper_feed_lag_seconds", "Age of the newest tick", labels=["symbol"])
        for symbol, feed in health["feeds"].items():
            if feed["lag_s"] is not None:
                lag.add_metric([symbol], feed["lag_s"])
        yield lag
        engines = GaugeMetricFamily("scalper_engine_lease", "1 per shard an engine holds", labels=["shard"])
        for shard in health["engines"]:
            engines.add_metric([shard], 1)
        yield engines
        orders = GaugeMetricFamily("scalper_order_jobs", "Order jobs by RQ registry", labels=["registry"])
        for registry, n in health["orders"].items():
            orders.add_metric([registry], n)
        yield orders
        yield GaugeMetricFamily("scalper_redis_used_memory_bytes", "Redis used_memory",
                                value=health["redis"]["used_memory_bytes"])  # fmt: skip
        yield GaugeMetricFamily("scalper_panic", "1 while the panic flag is set", value=int(health["panic"]))
        quarantined = CounterMetricFamily("scalper_quarantined_records", "Records a reader could not take",
                                          labels=["source"])  # fmt: skip
        for source, n in health["quarantined"].items():
            quarantined.add_metric([source], n)
        yield quarantined
        yield CounterMetricFamily("scalper_trades_closed", "Closed trades Redis holds",
                                  value=summary["all"]["trades"])  # fmt: skip
        pnl = GaugeMetricFamily("scalper_realized_pnl", "Realized PnL of the closed trades Redis holds",
                                labels=["kind"])  # fmt: skip
        for kind in ("net", "gross", "fees"):
            pnl.add_metric([kind], summary["all"][kind])
        yield pnl
        yield from self._counters()

    def _counters(self) -> Iterator[Metric]:
        """The counters the processes keep in Redis (statemachines/counters.py), in one round trip."""
        v = self.views
        symbols = sorted({*v.symbols, *v.store.symbols()})
        pipe = v.client.pipeline(transaction=False)
        for symbol in symbols:
            pipe.hgetall(v.keys.transitions(symbol))
        for _, _, name, _ in COUNTERS:
            pipe.hgetall(v.keys.metric(name))
        pipe.hgetall(v.keys.metric("order-latency"))
        replies = pipe.execute()
        transitions = CounterMetricFamily("scalper_transitions", "Transitions applied",
                                          labels=["symbol", "from", "to", "trigger"])  # fmt: skip
        for symbol, raw in zip(symbols, replies, strict=False):
            for labels, n in counters.read_counts(raw, 3):
                transitions.add_metric([symbol, *labels], n)
        yield transitions
        for (family, text, _, labels), raw in zip(COUNTERS, replies[len(symbols):], strict=False):
            metric = CounterMetricFamily(family, text, labels=labels)
            for values, n in counters.read_counts(raw, len(labels)):
                metric.add_metric(values, n)
            yield metric
        latency = HistogramMetricFamily("scalper_order_latency_seconds",
                                        "Order latency: decision -> sent -> acknowledged", labels=["stage"])
        for stage, (buckets, total) in counters.read_histogram(replies[-1]).items():
            latency.add_metric([stage], buckets, total)
        yield latency

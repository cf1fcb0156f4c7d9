"""/metrics: Prometheus metrics of the whole system, measured where they already are, in Redis.

Where each is measured: the web process reads them from Redis at each scrape (a custom collector), so the
engine's tick path pays nothing for them and every process's numbers are in one place, whichever process
or machine made them. Counters are the totals Redis keeps (quarantined records by source, trades closed);
gauges are states (positions by state, exchange known, feed lag, order queue, Redis memory, panic, realized
PnL). Metrics that only a process sees as it runs (order latency, WebSocket reconnects, rate-limit hits,
transitions by trigger) are not exported yet: see the README.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scalper.web.views import Views


class RedisCollector(Collector):
    def __init__(self, views: Views) -> None:
        self.views = views

    def collect(self) -> Iterator[Metric]:
        v = self.views
        health, summary = v.health(), v.summary()
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

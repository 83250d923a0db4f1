"""Metrics read when ``/metrics`` is scraped: this process's resources, and the registry
pool's counts (registry.instrument).

With ``--workers N`` every worker is a process of its own with its own metrics registry,
served on ``admin_port + i`` (node.serving): Prometheus scrapes each as a target, and the
``process_*`` samples carry a ``worker`` label, so a dashboard can sum the workers of a
node or tell them apart without relying on the port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from registry.instrument import InstrumentedPool, Timings


class WorkerProcessCollector(Collector):
    """prometheus_client's ``process_*`` metrics (CPU, memory, open descriptors, start
    time), each sample labelled with this process's worker index."""

    def __init__(self, worker: Callable[[], str]):
        self.worker = worker  # read at each scrape: set once the worker knows its index
        self._process = ProcessCollector(registry=None)

    def collect(self) -> Iterator[Metric]:
        worker = self.worker()
        for family in self._process.collect():
            family.samples = [
                s._replace(labels={**s.labels, "worker": worker}) for s in family.samples
            ]
            yield family


def _histogram(name: str, doc: str, label: str | None, timings: Timings) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    bounds = (*(repr(b) for b in timings.bounds), "+Inf")
    for value, counts in sorted(timings.counts.items()):
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([value] if label else [], buckets, timings.sums[value])
    return family


class PoolCollector(Collector):
    """The registry pool: connections in use and idle, the pool's bound, callers waiting
    for a connection, acquire latency, and query latency by named query."""

    def __init__(self, pool: Callable[[], object | None]):
        self.pool = pool  # the node's pool once the database is open; None before

    def collect(self) -> Iterator[Metric]:
        pool = self.pool()
        if not isinstance(pool, InstrumentedPool):
            return
        connections = GaugeMetricFamily(
            "idnode_registry_pool_connections",
            "Registry connections open, by state: in_use (handed out) or idle",
            labels=["state"],
        )
        idle = pool.get_idle_size()
        connections.add_metric(["in_use"], pool.get_size() - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "idnode_registry_pool_max_connections",
            "Most registry connections the pool opens (db_pool_max)",
            value=pool.get_max_size(),
        )
        yield GaugeMetricFamily(
            "idnode_registry_pool_waiting",
            "Callers waiting for a registry connection (all in use, or one being opened)",
            value=pool.stats.waiting,
        )
        yield _histogram(
            "idnode_registry_pool_acquire_seconds",
            "Time to get a registry connection from the pool, waiting included",
            None,
            pool.stats.acquire,
        )
        yield _histogram(
            "idnode_registry_query_seconds",
            "Registry queries by name (registry/sql/queries; other: unnamed SQL such as the "
            "readiness ping), from sending to the last row read; failed ones included",
            "query",
            pool.stats.queries,
        )

"""Cache metrics without costing the hot path.

A prometheus_client ``Counter.labels(...).inc()`` costs about a microsecond, a tenth of
a whole UDP cache hit. The hot path therefore bumps plain integers (``FrontStats``,
``CacheStats``) and ``CacheCollector`` turns them into Prometheus families only when
``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from node.resolution.cache.records import RecordCache

# Hits take microseconds; these buckets resolve them (the full path uses LATENCY_BUCKETS_S).
HIT_BUCKETS_S = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01)


class FrontStats:
    """Reply-cache counts and hit latencies of one front and operation."""

    __slots__ = ("counts", "folded", "hits", "misses", "total")

    def __init__(self) -> None:
        self.hits: dict[int, int] = {}  # response code -> replies served from the cache
        self.folded: dict[int, int] = {}  # how many of those idnode_requests already counts
        self.misses = 0  # cacheable requests answered on the full path
        self.counts = [0] * (len(HIT_BUCKETS_S) + 1)
        self.total = 0.0

    def hit(self, rc: int) -> None:
        self.hits[rc] = self.hits.get(rc, 0) + 1

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(HIT_BUCKETS_S, seconds)] += 1
        self.total += seconds

    def unfolded(self) -> list[tuple[int, int]]:
        """(rc, count) served since the last call: for adding to idnode_requests."""
        out = []
        for rc, count in list(self.hits.items()):
            delta = count - self.folded.get(rc, 0)
            if delta:
                out.append((rc, delta))
                self.folded[rc] = count
        return out


class CacheCollector(Collector):
    def __init__(
        self, cache: RecordCache, fronts: Callable[[], Mapping[tuple[str, str], FrontStats]]
    ):
        self.cache = cache
        self.fronts = fronts  # (front, op) -> stats; a callable: fronts start after the cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        c, s = self.cache, self.cache.stats
        fronts = dict(self.fronts())
        hits = CounterMetricFamily(
            "idnode_cache_hits", "Replies served ready-made from the cache", labels=["front", "op"]
        )
        misses = CounterMetricFamily(
            "idnode_cache_misses",
            "Cacheable requests answered on the full path",
            labels=["front", "op"],
        )
        latency = HistogramMetricFamily(
            "idnode_cache_hit_seconds",
            "Time to answer from the reply cache",
            labels=["front", "op"],
        )
        for (front, op), fs in sorted(fronts.items()):
            hits.add_metric([front, op], sum(fs.hits.values()))
            misses.add_metric([front, op], fs.misses)
            cumulative, buckets = 0, []
            for bound, count in zip((*HIT_BUCKETS_S, float("inf")), fs.counts, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            latency.add_metric([front, op], buckets, fs.total)
        yield hits
        yield misses
        yield latency
        lookups = CounterMetricFamily("idnode_cache_lookups", "Record lookups", labels=["result"])
        lookups.add_metric(["hit"], s.hits)
        lookups.add_metric(["miss"], s.misses)
        yield lookups
        for name, doc, value in (
            (
                "idnode_cache_negative_hits",
                "Lookups answered from a cached not-found",
                s.negative_hits,
            ),
            ("idnode_cache_registry_reads", "Registry reads made for cache misses", s.reads),
            (
                "idnode_cache_single_flight_joins",
                "Misses that waited for another request's read",
                s.joins,
            ),
            ("idnode_cache_evictions", "Entries evicted to stay within the bounds", s.evictions),
            (
                "idnode_cache_invalidations",
                "Entries dropped because their handle was written",
                s.invalidations,
            ),
            ("idnode_cache_flushes", "Whole-cache flushes (listener (re)connected)", s.flushes),
            (
                "idnode_cache_stale_served",
                "Records served past their TTL, the registry unreachable",
                s.stale_served,
            ),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        for name, doc, value in (
            ("idnode_cache_entries", "Handles in the cache (found or not)", len(c.entries)),
            ("idnode_cache_bytes", "Estimated memory held by the cache", c.bytes),
            (
                "idnode_cache_coherent",
                "1 while the invalidation listener is connected",
                int(c.coherent),
            ),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge

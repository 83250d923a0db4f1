"""Request counts and timings kept in plain numbers on a hot path, added to
``idnode_requests_total`` and ``idnode_request_seconds`` at each scrape.

A labelled ``Counter.inc()`` and ``Histogram.observe()`` each take a lock; together they
cost a tenth of an HTTP cache hit answered by the connection (node.fronts.http.fastlane).
A ``RequestTally`` counts the same requests with a dict and a list and folds them into
the very series the slow path feeds, through ``NodeMetrics.before_scrape``: a scrape sees
every request answered before it, as if each had been observed on its own.
"""

from __future__ import annotations

from bisect import bisect_left

from node.runtime.metrics import LATENCY_BUCKETS_S, NodeMetrics


class RequestTally:
    __slots__ = ("_child", "_folded", "_metrics", "_op", "buckets", "count", "rcs", "seconds")

    def __init__(self, metrics: NodeMetrics, front: str, op: str):
        self._metrics = metrics
        self._op = (front, op)
        self.rcs: dict[int, int] = {}  # response code -> requests
        self.count = 0
        # Per bucket of idnode_request_seconds, as Histogram.observe() picks it (the
        # first upper bound >= the time), the last one +Inf.
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.seconds = 0.0
        self._child = metrics.latency.labels(front, op)
        self._folded: tuple[dict[int, int], list[int], float] = ({}, [0] * len(self.buckets), 0.0)
        metrics.before_scrape.append(self.fold)

    def add(self, rc: int, seconds: float) -> None:
        rcs = self.rcs
        rcs[rc] = rcs.get(rc, 0) + 1
        self.count += 1
        self.buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.seconds += seconds

    def fold(self) -> None:
        """What was counted since the last fold, into the Prometheus series."""
        rcs, buckets, seconds = self._folded
        front, op = self._op
        for rc, n in list(self.rcs.items()):
            if n > rcs.get(rc, 0):
                self._metrics.requests.labels(front, op, str(rc)).inc(n - rcs.get(rc, 0))
                rcs[rc] = n
        # prometheus_client offers no bulk observe: its histogram child keeps one value
        # per bucket (non-cumulative, as here) and their sum.
        child = self._child
        for i, n in enumerate(self.buckets):
            if n > buckets[i]:
                child._buckets[i].inc(n - buckets[i])
                buckets[i] = n
        if self.seconds != seconds:
            child._sum.inc(self.seconds - seconds)
            self._folded = (rcs, buckets, self.seconds)

"""Prometheus metrics on a registry passed in (never the process-global one), so tests
and several nodes in one process each read their own values."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from node.runtime.accesslog import AccessLog
from node.runtime.gauges import GaugeSet

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _BeforeScrape(Collector):
    """Runs hooks at the start of every scrape, before the other collectors: the hot
    paths keep plain counts, folded into the Prometheus counters here."""

    def __init__(self, hooks: list[Callable[[], None]]):
        self.hooks = hooks

    def collect(self) -> Iterator[Metric]:
        for hook in self.hooks:
            hook()
        return iter(())


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry, version: str, role: str):
        self.registry = registry
        self.before_scrape: list[Callable[[], None]] = []
        registry.register(_BeforeScrape(self.before_scrape))  # first: it runs first
        Info("idnode_build", "idnode build", registry=registry).info(
            {"version": version, "role": role}
        )
        self.ready = Gauge("idnode_ready", "1 when the registry is reachable", registry=registry)
        self.requests = Counter(
            "idnode_requests", "Requests answered", ["front", "op", "rc"], registry=registry
        )
        self.latency = Histogram(
            "idnode_request_seconds",
            "Time to answer a request",
            ["front", "op"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.malformed = Counter(
            "idnode_malformed_requests",
            "Requests that could not be decoded",
            ["front"],
            registry=registry,
        )
        self.trailing_bytes = Counter(
            "idnode_trailing_bytes_requests",
            "Resolution requests with bytes after a complete body (ignored, as the reference does)",
            ["front"],
            registry=registry,
        )
        self.dropped = Counter(
            "idnode_dropped_requests",
            "Requests dropped unanswered",
            ["front", "reason"],
            registry=registry,
        )
        self.registry_errors = Counter(
            "idnode_registry_errors", "Registry operations that failed", ["op"], registry=registry
        )
        # Connections (node.runtime.conns, node.runtime.listen, node.runtime.httpserve).
        self.connections_open = Gauge(
            "idnode_connections_open",
            "Client connections open, by front",
            ["front"],
            registry=registry,
        )
        self.connections_refused = Counter(
            "idnode_connections_refused",
            "Connections closed on arrival, by front and reason (too_many_connections, "
            "too_many_from_source, fd_reserve)",
            ["front", "reason"],
            registry=registry,
        )
        self.connections_timed_out = Counter(
            "idnode_connections_timed_out",
            "Connections closed because the client was too slow, by front and reason "
            "(header_timeout: request line and headers not sent in time; write_timeout: "
            "replies not read)",
            ["front", "reason"],
            registry=registry,
        )
        self.accept_errors = Counter(
            "idnode_accept_errors",
            "Connections the kernel could not hand over, by front and error (EMFILE, ENFILE: "
            "out of file descriptors)",
            ["front", "error"],
            registry=registry,
        )
        self.writes = Counter(
            "idnode_handle_writes",
            "Committed handle writes",
            ["action", "source"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "idnode_auth_failures", "Failed authentications", ["front", "reason"], registry=registry
        )
        self.invalidation_lag = Histogram(
            "idnode_cache_invalidation_lag_seconds",
            "From a write's statement in PostgreSQL to this node hearing of it (NOTIFY)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        # The HTTP front's fast lane (node.fronts.http.fastlane).
        self.http_fast_lane = Counter(
            "idnode_http_fast_lane_replies",
            "HTTP cache hits written by the connection itself, without aiohttp's request "
            "handling (counted in idnode_requests_total and idnode_cache_hits_total too)",
            registry=registry,
        )
        self._counted: dict[tuple[str, str, str], Callable[[], None]] = {}
        self._timed: dict[tuple[str, str], Callable[[float], None]] = {}
        self.auth_rate_limited = Counter(
            "idnode_auth_rate_limited",
            "Requests refused because their client, or the identity they name, failed "
            "authentication too often",
            ["front"],
            registry=registry,
        )
        # Costly authentication checks (node.auth.gate) and REST sessions.
        self.auth_checks = Counter(
            "idnode_auth_checks",
            "Password and key checks run in the authentication worker threads (run), or "
            "refused because auth_checks_queue_max checks were waiting (busy)",
            ["outcome"],
            registry=registry,
        )
        self.auth_checks_waiting = Gauge(
            "idnode_auth_checks_waiting",
            "Password and key checks waiting for an authentication worker thread",
            registry=registry,
        )
        self.auth_keys_skipped = Counter(
            "idnode_auth_keys_skipped",
            "Stored HS_SECKEY / HS_PUBKEY values an authentication did not try, by reason: "
            "cost (over the node's bounds), unreadable, cap (past auth_max_keys_tried), "
            "budget (the attempt's time budget was spent)",
            ["reason"],
            registry=registry,
        )
        self.http_sessions_refused = Counter(
            "idnode_http_sessions_refused",
            "POST /api/sessions refused: per_source (the client holds its share of "
            "unauthenticated sessions) or full (every session is authenticated)",
            ["reason"],
            registry=registry,
        )
        # Forwarding (node.resolution.forward) and docking (node.docking).
        self.forwarded = Counter(
            "idnode_forwarded_requests",
            "Requests for prefixes served elsewhere, by outcome (answered, not_found, "
            "upstream_failed, unverified, recursion, refused: client not allowed recursion)",
            ["front", "result"],
            registry=registry,
        )
        self.upstream_exchanges = Histogram(
            "idnode_upstream_exchange_seconds",
            "Queries sent upstream (to the top-level or a prefix's servers), by result",
            ["result"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.forged_replies = Counter(
            "idnode_upstream_forged_replies",
            "Replies from upstream discarded as not answering our request, by what differed",
            ["mismatch"],
            registry=registry,
        )
        self.forward_signatures = Counter(
            "idnode_forwarded_signatures",
            "Records fetched from upstream, by how their signature checked",
            ["verdict"],
            registry=registry,
        )
        self.upstream_breakers_open = Gauge(
            "idnode_upstream_breakers_open",
            "Upstream servers not asked for now after failing repeatedly",
            registry=registry,
        )
        self.docking_operations = Counter(
            "idnode_docking_operations",
            "Docking operations sent to the top-level node, by action and result",
            ["action", "result"],
            registry=registry,
        )
        self.docking_outbox = Gauge(
            "idnode_docking_outbox_depth",
            "Docking operations waiting to be acknowledged by the top-level node",
            registry=registry,
        )
        # Certified native replies (node.fronts.native.certify).
        self.signed_replies = Counter(
            "idnode_native_signed_replies",
            "Replies to certified (CERT) native requests, by outcome: signed (by the signing "
            "threads), reused (a signature kept for the same signed bytes), unsigned (an error "
            "to an unauthenticated caller), rate_limited and queue_full (RC 3, unsigned)",
            ["outcome"],
            registry=registry,
        )
        self.sign_queue = Gauge(
            "idnode_native_sign_queue",
            "Replies waiting for or being signed by the signing threads",
            registry=registry,
        )
        # The native UDP front's limits (node.fronts.native.udp).
        self.udp_too_large = Counter(
            "idnode_udp_replies_too_large",
            "UDP replies over udp_max_reply_bytes, sent instead as one small RC 2 asking the "
            "client to retry over TCP",
            registry=registry,
        )
        self.replies_rate_limited = Counter(
            "idnode_replies_rate_limited",
            "Replies over their source network's rate limit, by front and what was done "
            "instead: dropped, or slipped (sent as one small RC 2 asking for TCP)",
            ["front", "action"],
            registry=registry,
        )
        # This process (process_*, labelled with ``worker``: its index under --workers,
        # set by node.serving), the registry pool, and the periodic registry gauges
        # (node.runtime.gauges, fed once the node has started).
        self.worker = "0"
        self.gauges = GaugeSet(registry, lambda: self.worker)
        # The access log (node.runtime.accesslog): off until the node sets it from settings.
        self.access = AccessLog()

    def count_request(self, front: str, op: str, rc: str) -> None:
        """``requests.labels(front, op, rc).inc()``, the labelled child looked up once:
        ``labels()`` validates and locks on every call, a measurable share of a cached
        HTTP reply."""
        key = (front, op, rc)
        inc = self._counted.get(key)
        if inc is None:
            inc = self._counted[key] = self.requests.labels(front, op, rc).inc
        inc()

    def time_request(self, front: str, op: str, seconds: float) -> None:
        observe = self._timed.get((front, op))
        if observe is None:
            observe = self._timed[(front, op)] = self.latency.labels(front, op).observe
        observe(seconds)

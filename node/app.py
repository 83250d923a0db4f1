"""Wiring: one Node owns the database, the resolver, the fronts and the admin port."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry

from node import __version__
from node.auth import (
    AuthChain,
    AuthGate,
    Authorizer,
    BasicScheme,
    ChallengeVerifier,
    ClientCertScheme,
    SecretKeyVerifier,
    SessionScheme,
    SessionStore,
    parse_admin_list,
)
from node.auth.bearer import BearerScheme
from node.client.tree import UpstreamUnavailable
from node.demo.seed import seed_demo
from node.docking.service import DockingService
from node.fronts.health import health_app, read_metrics_token
from node.fronts.http import HttpServices, http_app
from node.fronts.http.access import access_log_routes
from node.fronts.http.app import Extension
from node.fronts.http.batches import batch_routes
from node.fronts.http.compat import compat_routes
from node.fronts.http.console import console_routes
from node.fronts.http.history import history_routes
from node.fronts.http.hot import HotReplies
from node.fronts.http.imports import import_routes
from node.fronts.http.manage import manage_routes
from node.fronts.http.page.routes import page_routes
from node.fronts.http.search import search_routes
from node.fronts.http.sessions import session_routes
from node.fronts.http.templates import template_routes
from node.fronts.native.admin import NativeAdmin
from node.fronts.native.auth import NativeAuth
from node.fronts.native.handler import NativeHandler
from node.fronts.native.server import NativeServer
from node.fronts.native.wiring import native_auth
from node.resolution.cache.listener import InvalidationListener
from node.resolution.cache.records import CachePolicy, RecordCache
from node.resolution.cache.stats import CacheCollector, FrontStats
from node.resolution.forward.build import (
    RecursionPolicy,
    build_forwarding,
    foreign_keys,
    routed_reader,
)
from node.resolution.outcomes import Found
from node.resolution.prefixes import PrefixRefresher, ServedPrefixes
from node.resolution.resolver import Resolver
from node.resolution.site import Site, site_address
from node.runtime.accesslog import AccessLog
from node.runtime.conns import ConnectionGate, FdBudget, raise_open_files_limit
from node.runtime.database import Database, node_database
from node.runtime.gauges import PeriodicGauges
from node.runtime.httpserve import serve_http
from node.runtime.listen import Acceptor, bind_port, tcp_listener
from node.runtime.loop import tune_gc
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import peer_keys
from node.runtime.tls import server_ssl_context
from node.secrets.vault import SecretVault, open_vault
from node.settings import Settings
from node.signing.expiry import signing_cert_expiry
from node.signing.signer import RecordSigner, build_signer
from node.signing.trust import trust_roots
from node.templates.catalog import TemplateCatalog
from node.writes.service import WriteService
from protocol.handle import normalise
from protocol.keys import PublicKey
from protocol.values import HandleValue
from registry.docking import DockingOutbox
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.node")


class Node:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic  # rate-limit windows and caches; tests step it
        self.metrics = NodeMetrics(CollectorRegistry(), __version__, settings.role)
        self.metrics.access = AccessLog.from_settings(settings)
        # Failed authentications per client network and per identity, counted across the
        # HTTP and native fronts alike (a client cannot double its guesses by switching
        # protocol), and the worker threads every costly check runs in (node.auth.gate).
        self.auth_limiter = AuthGate(
            max_failures=settings.http_auth_max_failures,
            identity_max_failures=settings.auth_identity_max_failures,
            window_s=settings.http_auth_failure_window_s,
            queue_max=settings.auth_checks_queue_max,
            trusted_proxies=settings.http_trusted_proxies,
            metrics=self.metrics,
            monotonic=monotonic,
        )
        self._stack = AsyncExitStack()
        self.db: Database | None = None
        self.resolver: Resolver | None = None
        self.recursion: RecursionPolicy | None = None  # with forwarding: who may use it
        self.docking: DockingService | None = None  # with an upstream: registering there
        self.templates: TemplateCatalog | None = None
        self.admin_port: int | None = None
        self.handle_port: int | None = None
        self.site: Site | None = None
        self.native: NativeServer | None = None
        self.fd_budget: FdBudget | None = None  # set at start, once the open-files limit is raised
        self.writes: WriteService | None = None
        self.vault: SecretVault | None = None
        self.authorizer: Authorizer | None = None
        self.native_auth: NativeAuth | None = None
        self.signer: RecordSigner | None = None
        self.http_port: int | None = None
        self.http: HttpServices | None = None
        self.sessions: SessionStore | None = None  # REST challenge-response sessions
        self.cache: RecordCache | None = None
        self.listener: InvalidationListener | None = None
        self.prefix_refresher: PrefixRefresher | None = None
        self.demo_counts: dict[str, int] | None = None  # what --demo added at start
        self.handler: NativeHandler | None = None
        # Routes other fronts add to the HTTP app (sessions, the record page); set before start.
        self.http_extensions: list[Extension] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def start(self) -> None:
        s = self.settings
        ssl_context = server_ssl_context(s)  # bad TLS files stop us before anything starts
        try:
            self.db = await self._stack.enter_async_context(node_database(s, metrics=self.metrics))
            self.metrics.gauges.pool = self.db.registry.pool
            self.resolver = Resolver(
                self.db.registry,
                ServedPrefixes(s.prefixes),
                client_timeout_s=s.resolve_client_timeout_s,
            )
            await self._start_listener(self.db.dsn)  # before any read: no change missed
            if s.sign_records:
                # Key files are decrypted once here (blocking), never per write.
                await self.reload_signer()
            self.vault = await asyncio.to_thread(open_vault, s)  # unwraps the secrets key once
            self.templates = TemplateCatalog(self._template_values)
            self.writes = WriteService(
                self.db.registry,
                self.metrics,
                vault=self.vault,
                signer=self.signer,
                templates=self.templates,
                group_max=s.write_group_max,
            )
            self.writes.on_commit = self._committed
            if s.demo:
                self.demo_counts = dict(
                    await seed_demo(
                        self.db.registry,
                        self.now(),
                        writes=self.writes,
                        only_under=s.prefixes,
                        top_level=s.role == "top-level",
                    )
                )
                log.info("demo data: %s", self.demo_counts)
            await self.resolver.refresh_prefixes()
            if s.upstream or s.role == "top-level":
                self._start_forwarding(await asyncio.to_thread(self._trust_roots))
            before, limit = raise_open_files_limit()
            raised = f" (raised from {before})" if limit != before else ""
            log.info("open files limit %d%s; fd_reserve %d", limit, raised, s.fd_reserve)
            self.fd_budget = FdBudget(s.fd_reserve)  # shared by the HTTP and native TCP gates
            token_file = s.metrics_token_file
            token = read_metrics_token(token_file) if token_file is not None else None
            runner = web.AppRunner(
                health_app(
                    self.db.registry,
                    self.metrics,
                    s.db_timeout_s,
                    metrics_token=token,
                    embedded=self.db.supervisor,
                )
            )
            await runner.setup()
            self._stack.push_async_callback(runner.cleanup)

            # With workers (node.serving) a replacement binds its predecessor's admin
            # port while that one still drains: SO_REUSEPORT lets both hold it for that moment.
            # Not gated: probes and scrapes get through while clients are refused.
            async def start_admin() -> Acceptor:
                sock = tcp_listener(s.admin_bind, s.admin_port, reuse_port=s.workers > 1)
                return await serve_http(
                    runner,
                    sock,
                    "admin",
                    self.metrics,
                    header_timeout_s=s.http_header_timeout_s,
                    keepalive_timeout_s=s.http_keepalive_timeout_s,
                )

            admin = await bind_port("admin", s.admin_bind, s.admin_port, start_admin)
            self._stack.callback(admin.close)  # before runner.cleanup (last in, first out)
            self.admin_port = admin.port
            # HTTP first, so the site info the native front publishes names its port.
            await self._start_http(ssl_context)
            await self._start_native()
            await self._start_gauges()
            if s.upstream:
                self._start_docking()
        except BaseException:
            await self._stack.aclose()
            raise
        self.metrics.ready.set(1)
        log.info(
            "idnode %s ready: role=%s admin=%s:%d handle=%d http=%d database=%s",
            __version__,
            s.role,
            s.admin_bind,
            self.admin_port,
            self.handle_port,
            self.http_port,
            "embedded " + str(s.data_dir) if s.embedded else "external",
        )

    async def _start_listener(self, dsn: str) -> None:
        """The change feed: cache invalidations (when caching) and prefix changes."""
        s = self.settings
        assert self.db is not None and self.resolver is not None
        if s.cache_enabled:
            policy = CachePolicy(
                max_entries=s.cache_max_entries,
                max_bytes=s.cache_max_bytes,
                ttl_cap_s=s.cache_ttl_cap_s,
                negative_ttl_s=s.cache_negative_ttl_s,
                stale_max_s=s.cache_stale_max_s,
                stale_recheck_s=s.cache_stale_recheck_s,
            )
            self.cache = RecordCache(
                routed_reader(self.db.registry.get_handle_raw, self.resolver),
                policy,
                monotonic=self.monotonic,
                clock=self.clock,
                foreign=foreign_keys(self.resolver.served),
                unavailable=(DatabaseUnavailable, UpstreamUnavailable),
            )
            self.resolver.cache = self.cache
            self.metrics.registry.register(CacheCollector(self.cache, self._front_stats))
            self.metrics.before_scrape.append(self._fold_native_hits)
        resolver = self.resolver

        async def refreshed() -> None:
            await resolver.refresh_prefixes()
            if self.docking is not None:
                self.docking.wake()  # a prefix enabled or disabled: dock or withdraw it

        refresher = self.prefix_refresher = PrefixRefresher(refreshed)
        self._stack.push_async_callback(refresher.stop)
        self.listener = InvalidationListener(
            dsn,
            self.cache,
            on_lag=self.metrics.invalidation_lag.observe,
            clock=self.clock,
            connect_timeout_s=s.db_timeout_s,
            on_prefixes=refresher.request,
        )
        await self.listener.start()  # coherent before any front answers
        self._stack.push_async_callback(self.listener.stop)

    def _committed(self, key: str) -> None:
        """A write committed here: this node's cache and template catalog forget the
        handle before the write is acknowledged (other nodes hear of it via NOTIFY)."""
        if self.cache is not None:
            self.cache.invalidate(key)
        if self.templates is not None:
            self.templates.forget(key)

    async def _template_values(self, name: str) -> tuple[HandleValue, ...] | None:
        """A template record, wherever it is published: this registry first (whatever
        prefixes are served at the moment, e.g. while the demo seeds), else the tree."""
        assert self.resolver is not None and self.db is not None
        local = await self.db.registry.get_handle(normalise(name))
        if local is not None:
            return local.values
        found = await self.resolver.resolve(
            name, (), (), self.clock(), public_only=True, forward=True
        )
        return found.values if isinstance(found, Found) else None

    def _start_forwarding(self, roots: tuple[PublicKey, ...]) -> None:
        """Prefixes served elsewhere are resolved through the tree (upstream set), and a
        top-level follows referrals for old clients (node.resolution.forward)."""
        assert self.resolver is not None
        self.resolver.forwarding = build_forwarding(
            self.settings,
            self.resolver,
            self.metrics,
            trust_roots=roots,
            monotonic=self.monotonic,
            clock=self.clock,
        )
        self.recursion = RecursionPolicy(self.settings.recursion_networks)

    def _fold_native_hits(self) -> None:
        """idnode_requests counts every request: add the native replies served from the
        cache (HTTP hits pass through the HTTP middleware, which counts them itself)."""
        if self.handler is None:
            return
        for transport, stats in self.handler.front_stats.items():
            for rc, count in stats.unfolded():
                self.metrics.requests.labels(transport, "resolution", str(rc)).inc(count)

    def _front_stats(self) -> dict[tuple[str, str], FrontStats]:
        stats: dict[tuple[str, str], FrontStats] = {}
        if self.handler is not None:
            stats.update({(t, "resolution"): fs for t, fs in self.handler.front_stats.items()})
        if self.http is not None and self.http.hot is not None:
            stats[("http", "resolution")] = self.http.hot.stats
        return stats

    async def reload_signer(self) -> None:
        """(Re)read the key store: after ``idnode keys rotate`` new writes sign with the
        new current key and ``0.NA/<prefix>`` publishes every key's certificate."""
        assert self.resolver is not None
        signer = await asyncio.to_thread(build_signer, self.settings, int(self.clock()))
        self.signer = signer
        self.resolver.prefix_certs = lambda p: signer.cert_values(p, int(self.clock()))
        if self.writes is not None:
            self.writes.signer = signer
        if self.docking is not None:
            self.docking.wake()  # new certificates to publish upstream

    async def _start_gauges(self) -> None:
        """Registry sizes, disk and certificate lifetimes, measured once before ready and
        then periodically (node.runtime.gauges), never per request or per scrape."""
        assert self.db is not None and self.resolver is not None
        resolver = self.resolver

        def expiry(now: int) -> dict[str, int]:
            return signing_cert_expiry(self.signer, resolver.served.all(), now)

        gauges = PeriodicGauges(
            self.metrics.gauges,
            self.db.registry,
            clock=self.clock,
            data_dir=self.settings.data_dir,
            certs=expiry,
        )
        await gauges.start()
        self._stack.push_async_callback(gauges.stop)

    def _trust_roots(self) -> tuple[PublicKey, ...]:
        """What the record page verifies against: trust_root_file, else the embedded root."""
        if self.settings.trust_root_file is not None:
            return tuple(trust_roots(self.settings))
        if self.signer is not None and self.signer.root_public is not None:
            return (self.signer.root_public,)
        return ()

    async def _start_native(self) -> None:
        s = self.settings
        assert self.resolver is not None
        site = await asyncio.to_thread(
            Site.create, s, handle_port=s.handle_port, http_port=self.http_port
        )
        handler = NativeHandler(
            self.resolver,
            site,
            self.metrics,
            clock=self.clock,
            cache=self.cache,
            auth=self._native_auth(lambda: handler.site),
            admin=self._native_admin(),
            authorizer=self.authorizer,
            recursion=self.recursion,
            signed_replies_per_s=s.native_signed_replies_per_s,
            sign_queue_max=s.native_sign_queue_max,
            rate_limit_exempt_networks=s.rate_limit_exempt_networks,
            monotonic=self.monotonic,
        )
        self.handler = handler
        self._stack.callback(handler.close)  # pushed before native.stop: runs after it
        native = NativeServer(
            handler, self.metrics, s, reuse_port=s.workers > 1, fds=self.fd_budget
        )
        self.handle_port = await bind_port(
            "native Handle (UDP and TCP)",
            s.bind,
            s.handle_port,
            lambda: native.start(s.bind, s.handle_port),
        )
        self._stack.push_async_callback(native.stop, s.shutdown_timeout_s)
        if self.handle_port != s.handle_port:
            site = site.with_ports(s, handle_port=self.handle_port, http_port=self.http_port)
            handler.site = site
        self.resolver.site = self.site = site
        self.native = native
        if s.public_address is None and s.bind in ("0.0.0.0", "::"):
            log.warning(
                "HS_SITE advertises %s, the address of this host's outward interface (bound to "
                "every interface, public_address unset): set public_address if clients reach "
                "this node at another address (behind NAT, in a container)",
                site_address(s),
            )

    def _start_docking(self) -> None:
        """Register this node's prefixes at the top-level node (node.docking)."""
        assert self.db is not None and self.handler is not None and self.resolver is not None
        resolver, handler = self.resolver, self.handler

        def certs(prefix: str) -> tuple[HandleValue, ...]:
            return resolver.prefix_certs(prefix) if resolver.prefix_certs is not None else ()

        registry = self.db.registry
        self.docking = DockingService(
            self.settings,
            registry,
            DockingOutbox(registry.pool, target=registry.target),
            lambda: handler.site,
            certs,
            self.metrics,
            clock=self.clock,
        )
        self.docking.start()
        self._stack.push_async_callback(self.docking.stop)

    def _native_auth(self, site: Callable[[], Site]) -> NativeAuth:
        assert self.db is not None and self.vault is not None and self.resolver is not None
        self.native_auth = native_auth(
            self.settings,
            self.db.registry,
            self.vault,
            self.resolver,
            self.auth_limiter,
            site,
            self.metrics,
            clock=self.clock,
            monotonic=self.monotonic,
        )
        return self.native_auth

    def _native_admin(self) -> NativeAdmin:
        assert self.db is not None and self.resolver is not None
        assert self.writes is not None and self.authorizer is not None
        return NativeAdmin(
            self.db.registry, self.resolver.served, self.writes, self.authorizer, self.now
        )

    async def _start_http(self, ssl_context: ssl.SSLContext | None) -> None:
        s = self.settings
        assert self.db is not None and self.resolver is not None and self.writes is not None
        registry = self.db.registry
        assert self.vault is not None
        verifier = SecretKeyVerifier(
            registry,
            self.vault,
            self.auth_limiter,
            monotonic=self.monotonic,
            max_keys_tried=s.auth_max_keys_tried,
        )
        self.sessions = SessionStore(
            s.http_sessions_max,
            s.http_session_idle_timeout_s,
            exempt=s.rate_limit_exempt_networks,
        )
        bearer = BearerScheme(self.vault, self.clock)
        chain = AuthChain(
            [
                BasicScheme(verifier),
                bearer,
                ClientCertScheme(registry, enabled=s.tls_client_ca_file is not None),
                SessionScheme(
                    self.sessions,
                    ChallengeVerifier(
                        registry, self.auth_limiter, max_keys_tried=s.auth_max_keys_tried
                    ),
                    monotonic=self.monotonic,
                ),
            ],
            self.auth_limiter,
            self.metrics,
            plain_policy=s.http_plain_credentials,
            monotonic=self.monotonic,
        )
        authorizer = self.authorizer = Authorizer(self.resolver, parse_admin_list(s.server_admins))
        self.http = HttpServices(
            s,
            self.resolver,
            self.writes,
            chain,
            authorizer,
            self.metrics,
            self.clock,
            sessions=self.sessions,
            trust_roots=await asyncio.to_thread(self._trust_roots),
            hot=None,
            recursion=self.recursion,
            bearer=bearer,
        )
        if self.cache is not None:
            self.http.hot = HotReplies(self.cache, self.http.may_recurse)
        extensions = [
            access_log_routes(),
            session_routes(),
            import_routes(),
            history_routes(),
            search_routes(),
            manage_routes(),
            batch_routes(),
            template_routes(),
            compat_routes(),
            console_routes(),
            *self.http_extensions,
            page_routes,  # catch-all: last
        ]
        runner = web.AppRunner(
            http_app(self.http, extensions=extensions), shutdown_timeout=s.shutdown_timeout_s
        )
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        assert self.fd_budget is not None
        gate = ConnectionGate(
            "http",
            self.metrics,
            max_connections=s.http_max_connections,
            per_source=s.http_max_connections_per_source,
            keys=peer_keys(s.rate_limit_exempt_networks),
            fds=self.fd_budget,
        )

        async def start_http() -> Acceptor:
            # The workers of one node share the port (node.serving): SO_REUSEPORT.
            sock = tcp_listener(s.bind, s.http_port, reuse_port=s.workers > 1)
            return await serve_http(
                runner,
                sock,
                "http",
                self.metrics,
                header_timeout_s=s.http_header_timeout_s,
                keepalive_timeout_s=s.http_keepalive_timeout_s,
                body_idle_timeout_s=s.http_body_idle_timeout_s,
                gate=gate,
                ssl_context=ssl_context,
            )

        acceptor = await bind_port("HTTP", s.bind, s.http_port, start_http)
        self._stack.callback(acceptor.close)  # before runner.cleanup (last in, first out)
        self.http_port = acceptor.port
        if ssl_context is not None:
            log.info(
                "HTTP API on port %d serves HTTPS only (TLS 1.2+); client certificates: %s",
                self.http_port,
                f"requested, verified against {s.tls_client_ca_file}"
                if s.tls_client_ca_file
                else "not requested",
            )

    async def stop(self) -> None:
        self.metrics.ready.set(0)
        await self._stack.aclose()
        log.info("idnode stopped")


async def serve(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[Node], None] | None = None,
) -> None:
    """Run a node until SIGINT or SIGTERM (or ``stop`` is set), then shut down cleanly.
    SIGHUP re-reads the signing keys (after ``idnode keys rotate``) without stopping
    resolution. ``on_ready`` runs once the node serves (a worker reports its ports)."""
    node = Node(settings, clock=clock)
    if stop is None:
        stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before start: a SIGTERM that arrives while starting (after "ready" is logged, or
    # while the embedded PostgreSQL comes up) stops the node cleanly once it has started,
    # instead of killing it and leaving its PostgreSQL behind.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        raise
    tune_gc()
    reloads: set[asyncio.Task[None]] = set()

    def reload_keys() -> None:
        task = loop.create_task(_reload_keys(node))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_keys)
    try:
        if on_ready is not None:
            on_ready(node)
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await node.stop()


async def _reload_keys(node: Node) -> None:
    try:
        await node.reload_signer()
    except Exception as exc:  # a bad key store must not take the serving node down
        log.error("signing keys not reloaded, still using the previous key: %s", exc)
        return
    log.info(
        "signing keys reloaded: new writes sign with key %s",
        node.signer.key.kid if node.signer else "-",
    )

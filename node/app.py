"""Wiring: one Node owns the database, the resolver, the fronts and the admin port."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry

from . import __version__
from .admin import admin_app
from .database import Database, node_database
from .handler import NativeHandler
from .metrics import NodeMetrics
from .native import NativeServer
from .resolver import Resolver, ServedPrefixes
from .seed import seed_demo
from .settings import Settings
from .site import Site

log = logging.getLogger("idnode.node")


def _bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


class Node:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.metrics = NodeMetrics(CollectorRegistry(), __version__, settings.role)
        self._stack = AsyncExitStack()
        self.db: Database | None = None
        self.resolver: Resolver | None = None
        self.admin_port: int | None = None
        self.handle_port: int | None = None
        self.site: Site | None = None
        self.native: NativeServer | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def start(self) -> None:
        s = self.settings
        try:
            self.db = await self._stack.enter_async_context(node_database(s))
            self.resolver = Resolver(self.db.registry, ServedPrefixes(s.prefixes))
            if s.demo:
                counts = await seed_demo(self.db.registry, self.now())
                log.info("demo data seeded: %s", counts)
            await self.resolver.refresh_prefixes()
            runner = web.AppRunner(
                admin_app(self.db.registry, self.metrics, s.db_timeout_s), access_log=None
            )
            await runner.setup()
            self._stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, s.bind, s.admin_port, reuse_address=True).start()
            self.admin_port = _bound_port(runner)
            await self._start_native()
        except BaseException:
            await self._stack.aclose()
            raise
        self.metrics.ready.set(1)
        log.info(
            "idnode %s ready: role=%s admin=%s:%d handle=%d database=%s",
            __version__, s.role, s.bind, self.admin_port, self.handle_port,
            "embedded " + str(s.data_dir) if s.embedded else "external",
        )

    async def _start_native(self) -> None:
        s = self.settings
        assert self.resolver is not None
        site = await asyncio.to_thread(Site.create, s, handle_port=s.handle_port, http_port=None)
        handler = NativeHandler(self.resolver, site, self.metrics, clock=self.clock)
        native = NativeServer(
            handler, self.metrics, max_inflight=s.udp_max_inflight,
            max_connections=s.tcp_max_connections, idle_timeout_s=s.tcp_idle_timeout_s,
        )
        self.handle_port = await native.start(s.bind, s.handle_port)
        self._stack.push_async_callback(native.stop, s.shutdown_timeout_s)
        if self.handle_port != s.handle_port:
            site = site.with_ports(s, handle_port=self.handle_port, http_port=None)
            handler.site = site
        self.resolver.site = self.site = site
        self.native = native

    async def stop(self) -> None:
        self.metrics.ready.set(0)
        await self._stack.aclose()
        log.info("idnode stopped")


async def serve(settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
    """Run a node until SIGINT or SIGTERM, then shut down cleanly."""
    node = Node(settings, clock=clock)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await node.stop()

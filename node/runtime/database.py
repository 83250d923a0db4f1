"""Opening the registry database: a configured URL, or the embedded private server.

The node owns the embedded server (it holds the data-dir lock, starts the server and
stops it at shutdown). The CLI borrows it: it connects to the running node's server
through its socket, or starts the server itself and stops it again when done, unless
a node took it over in the meantime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from node.runtime.metrics import NodeMetrics
from node.runtime.supervise import EmbeddedSupervisor
from node.settings import Settings
from registry.connect import open_registry
from registry.datadir import NodeLock
from registry.embedded import EmbeddedPostgres
from registry.errors import DataDirLocked
from registry.store import Registry

log = logging.getLogger("idnode.database")


@dataclass
class Database:
    registry: Registry
    dsn: str
    embedded: EmbeddedPostgres | None
    # Restarts the embedded server if it dies while the node serves (node.runtime.supervise).
    supervisor: EmbeddedSupervisor | None = None


def _embedded(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        settings.data_dir, run_as=settings.embedded_user, bin_dir=settings.postgres_bin_dir
    )


def _initialise_and_start(pg: EmbeddedPostgres) -> None:
    pg.initialise()  # no-op when the cluster exists
    pg.start()  # adopts a server left running by a node killed with -9


@asynccontextmanager
async def node_database(
    settings: Settings, *, metrics: NodeMetrics | None = None
) -> AsyncIterator[Database]:
    """The serving node's database: lock the data dir, start (or adopt) the embedded
    server and keep it running, apply migrations; undo all of it on exit. ``metrics``
    gets the embedded server's restart counter and up gauge."""
    lock: NodeLock | None = None
    pg: EmbeddedPostgres | None = None
    supervisor: EmbeddedSupervisor | None = None
    if settings.embedded:
        lock = NodeLock(settings.data_dir)
        lock.acquire()
        pg = _embedded(settings)
    try:
        if pg is not None:
            await asyncio.to_thread(_initialise_and_start, pg)
            dsn = pg.dsn
            supervisor = EmbeddedSupervisor(pg)
            supervisor.start()
            if metrics is not None:
                supervisor.register(metrics.registry)
        else:
            assert settings.database_url is not None
            dsn = settings.database_url
        registry = await open_registry(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout_s=settings.db_timeout_s,
        )
        try:
            for mig in await registry.migrate():
                log.info("applied migration %04d_%s", mig.version, mig.name)
            yield Database(registry, dsn, pg, supervisor)
        finally:
            await registry.close()
    finally:
        if supervisor is not None:
            await supervisor.stop()  # before stopping the server, or it would restart it
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        if lock is not None:
            lock.release()


@asynccontextmanager
async def cli_database(
    settings: Settings, *, apply_migrations: bool = True
) -> AsyncIterator[Database]:
    """A short-lived connection for an operator command."""
    pg: EmbeddedPostgres | None = None
    started_here = False
    if settings.embedded:
        pg = _embedded(settings)
        if not await asyncio.to_thread(pg.is_running):
            await asyncio.to_thread(_initialise_and_start, pg)
            started_here = True
        dsn = pg.dsn
    else:
        assert settings.database_url is not None
        dsn = settings.database_url
    try:
        registry = await open_registry(dsn, min_size=1, max_size=2, timeout_s=settings.db_timeout_s)
        try:
            if apply_migrations:
                await registry.migrate()
            yield Database(registry, dsn, pg)
        finally:
            await registry.close()
    finally:
        if pg is not None and started_here:
            await asyncio.to_thread(_stop_unless_node_runs, settings, pg)


def _stop_unless_node_runs(settings: Settings, pg: EmbeddedPostgres) -> None:
    lock = NodeLock(settings.data_dir)
    try:
        lock.acquire()
    except DataDirLocked:
        return  # a node started meanwhile and adopted the server: leave it running
    try:
        pg.stop()
    finally:
        lock.release()

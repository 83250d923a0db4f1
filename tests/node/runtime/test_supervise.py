"""node.runtime.supervise: the embedded PostgreSQL comes back after its postmaster dies,
on a real server in a data dir of the test's own (the whole node around it:
tests/node/runtime/test_supervise_node.py)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from itertools import islice
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from node.runtime.supervise import EmbeddedSupervisor, backoff_delays
from registry.embedded import EmbeddedPostgres
from tests.node.wait_support import until

WAIT_S = 60.0  # a restart replays the WAL; the box may be busy


@pytest.fixture
async def pg(idnode_data_dir: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(idnode_data_dir)
    await asyncio.to_thread(server.initialise)
    await asyncio.to_thread(server.start)
    yield server  # idnode_data_dir stops whatever runs there afterwards


def _sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


async def _answers(pg: EmbeddedPostgres) -> int:
    conn = await asyncpg.connect(pg.dsn)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


def test_backoff_doubles_from_half_a_second_to_thirty() -> None:
    assert list(islice(backoff_delays(), 9)) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


async def test_a_killed_postmaster_is_restarted(pg: EmbeddedPostgres) -> None:
    metrics = CollectorRegistry()
    supervisor = EmbeddedSupervisor(pg)
    supervisor.register(metrics)
    supervisor.start()
    try:
        assert _sample(metrics, "idnode_embedded_postgres_up") == 1
        assert _sample(metrics, "idnode_embedded_postgres_restarts_total") == 0
        assert supervisor.status_words() is None
        killed = pg.postmaster_pid()
        assert killed is not None
        os.kill(killed, signal.SIGKILL)

        await until(lambda: not supervisor.up, WAIT_S)
        words = supervisor.status_words()
        assert words is not None
        assert re.fullmatch(
            r"embedded PostgreSQL not running, restart 1 (in [\d.]+ s|under way)", words
        ), words
        assert _sample(metrics, "idnode_embedded_postgres_up") == 0

        await until(lambda: supervisor.up, WAIT_S)
        assert supervisor.restarts == 1
        assert _sample(metrics, "idnode_embedded_postgres_restarts_total") == 1
        assert _sample(metrics, "idnode_embedded_postgres_up") == 1
        assert pg.postmaster_pid() not in (None, killed)
        assert await _answers(pg) == 1
    finally:
        await supervisor.stop()


async def test_attempts_go_on_until_the_server_can_start(pg: EmbeddedPostgres) -> None:
    """A server that cannot start (a broken postgresql.conf) is retried with backoff,
    each attempt counted, and comes back once the operator fixes it."""
    conf = pg.cluster_dir / "postgresql.conf"
    good = conf.read_text(encoding="utf-8")
    # Read at start only: the running server is not affected until it is restarted.
    conf.write_text(good + "\nshared_buffers = 'plenty'\n", encoding="utf-8")
    supervisor = EmbeddedSupervisor(pg, first_delay_s=0.05, max_delay_s=0.2)
    supervisor.start()
    try:
        pid = pg.postmaster_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # Two attempts made and failed (the second is over: it read the broken file too).
        await until(lambda: supervisor.restarts >= 2 and not supervisor.restarting, WAIT_S)
        assert not supervisor.up
        words = supervisor.status_words()
        assert words is not None
        assert re.fullmatch(
            rf"embedded PostgreSQL not running, restart {supervisor.restarts + 1} in [\d.]+ s",
            words,
        ), words
        conf.write_text(good, encoding="utf-8")
        await until(lambda: supervisor.up, WAIT_S)
        assert supervisor.restarts >= 3
        assert await _answers(pg) == 1
    finally:
        await supervisor.stop()


async def test_a_server_that_dies_again_soon_goes_on_with_the_backoff(
    pg: EmbeddedPostgres,
) -> None:
    supervisor = EmbeddedSupervisor(pg, first_delay_s=0.05)
    supervisor.start()
    try:
        for restarts, delay in ((1, 0.05), (2, 0.1)):
            pid = pg.postmaster_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await until(lambda: not supervisor.up, WAIT_S)
            assert supervisor.delay_s == delay  # the second outage does not start over
            await until(lambda n=restarts: supervisor.up and supervisor.restarts == n, WAIT_S)
    finally:
        await supervisor.stop()


async def test_stopping_the_supervisor_lets_the_server_stay_stopped(
    pg: EmbeddedPostgres,
) -> None:
    """The node's shutdown: the supervisor stops first, then the server, which no late
    attempt starts again."""
    supervisor = EmbeddedSupervisor(pg)
    supervisor.start()
    await supervisor.stop()
    await asyncio.to_thread(pg.stop)
    assert supervisor.up and supervisor.restarts == 0
    assert not await asyncio.to_thread(pg.is_running)


async def test_stop_waits_for_a_restart_under_way(pg: EmbeddedPostgres) -> None:
    supervisor = EmbeddedSupervisor(pg, first_delay_s=0.01)
    supervisor.start()
    pid = pg.postmaster_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await until(lambda: supervisor.restarts == 1, WAIT_S)  # the attempt has begun
    await supervisor.stop()
    # The attempt ran to its end (the server is up), instead of being left running on
    # its own, where it could start the server after the node had stopped it.
    assert await asyncio.to_thread(pg.is_running)
    await asyncio.to_thread(pg.stop)
    assert not await asyncio.to_thread(pg.is_running)

"""A real ``idnode serve`` whose PostgreSQL goes away: the embedded server is restarted
by the node itself, and /readyz says in words what is down meanwhile; an external one
is named with where it was sought and why it cannot be reached.

Every wait polls /readyz (or the log) against a bound; nothing sleeps for time.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from registry.embedded import EmbeddedPostgres
from tests.node.process_support import NodeProcess
from tests.pgproxy_support import PgProxy

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]
HTTP_PORT = re.compile(r" ready: .* http=(\d+)")
ROLL = "88.118.2/ROLL-2026-000123"  # demo data
WAIT_S = 90.0  # a restart replays the WAL; the box may be busy
SUPERVISOR_WORDS = re.compile(
    r"registry: embedded PostgreSQL not running, restart 1 (in [\d.]+ s|under way)"
)


def _http_port(node: NodeProcess) -> int:
    for line in list(node.lines):
        m = HTTP_PORT.search(line)
        if m:
            return int(m[1])
    raise AssertionError("no HTTP port in the ready line:\n" + node.output)


async def _get(port: int, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        if reply.content_type == "application/json":
            return reply.status, await reply.json()
        return reply.status, await reply.text()


async def _readyz_until_ready(admin: int) -> list[str]:
    """Poll /readyz until it says ready; the reasons it gave meanwhile, in order."""
    reasons: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while True:
        status, body = await _get(admin, "/readyz")
        if status == 200:
            return reasons
        assert status == 503, (status, body)
        if not reasons or reasons[-1] != body["reason"]:
            reasons.append(body["reason"])
        assert time.monotonic() < deadline, f"not ready again within {WAIT_S:g} s: {reasons}"
        await asyncio.sleep(0.02)


async def test_a_killed_postmaster_is_restarted_by_the_node(idnode_data_dir: Path) -> None:
    node = await asyncio.to_thread(
        NodeProcess(["--data-dir", str(idnode_data_dir), *FREE, "--demo"]).start
    )
    try:
        admin, http = node.ports["admin"], _http_port(node)
        assert (await _get(admin, "/readyz"))[0] == 200
        pg = EmbeddedPostgres(idnode_data_dir)
        killed = pg.postmaster_pid()
        assert killed is not None

        os.kill(killed, signal.SIGKILL)
        # Down first (the supervisor's words), then ready again: wait for the first 503,
        # bounded, then for the way back.
        deadline = time.monotonic() + WAIT_S
        while (await _get(admin, "/readyz"))[0] == 200:
            assert time.monotonic() < deadline, "/readyz never noticed the dead server"
            await asyncio.sleep(0.02)
        reasons = await _readyz_until_ready(admin)

        assert any(SUPERVISOR_WORDS.fullmatch(r) for r in reasons), reasons
        for reason in reasons:  # the supervisor's words, or the registry's: never a repr
            assert SUPERVISOR_WORDS.fullmatch(reason) or reason.startswith(
                "registry unreachable at socket "
            ), reason
            assert "Error" not in reason and "Errno" not in reason, reason
        assert pg.postmaster_pid() not in (None, killed)

        status, record = await _get(http, f"/api/handles/{ROLL}")
        assert status == 200, record
        assert record["handle"] == ROLL
        _, metrics = await _get(admin, "/metrics")
        assert "idnode_embedded_postgres_restarts_total 1.0" in metrics
        assert "idnode_embedded_postgres_up 1.0" in metrics
        log = node.output
        assert log.count("has exited; restarting it") == 1, log[-3000:]
        assert log.count("embedded PostgreSQL restarted (attempt 1,") == 1, log[-3000:]
    finally:
        code = await asyncio.to_thread(node.signal, signal.SIGTERM)
    assert code == 0, node.output[-3000:]
    # Stopped with the node, and not started again behind its back.
    assert not await asyncio.to_thread(EmbeddedPostgres(idnode_data_dir).is_running)


async def test_readyz_names_an_unreachable_external_registry(
    database_url: str, tmp_path: Path
) -> None:
    proxy = await PgProxy(database_url).start()
    node = NodeProcess(
        ["--data-dir", str(tmp_path / "node"), *FREE],
        env={"IDNODE_DATABASE_URL": proxy.dsn, "IDNODE_DB_TIMEOUT_S": "2"},
    )
    try:
        await asyncio.to_thread(node.start)
        admin = node.ports["admin"]
        assert (await _get(admin, "/readyz"))[0] == 200
        await proxy.refuse()
        proxy.drop_connections()
        expected = (
            f"registry unreachable at 127.0.0.1:{proxy.port}/{proxy.database}: connection refused"
        )
        # The pool may first find its dropped connection ("the connection was lost").
        reasons: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while expected not in reasons:
            status, body = await _get(admin, "/readyz")
            assert status == 503, body
            reasons.append(body["reason"])
            assert time.monotonic() < deadline, reasons
            await asyncio.sleep(0.02)
        for reason in reasons:
            assert reason.startswith(f"registry unreachable at 127.0.0.1:{proxy.port}/"), reason
            assert "Error" not in reason and "Errno" not in reason, reason
        # Only the embedded server is the node's to restart: no such metrics here.
        _, metrics = await _get(admin, "/metrics")
        assert "idnode_embedded_postgres" not in metrics
    finally:
        await proxy.resume()
        await asyncio.to_thread(node.stop)
        await proxy.stop()

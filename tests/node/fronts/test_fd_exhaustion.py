"""Idle sockets cannot take the node down: ``idnode serve`` under a low open-files limit
(256, soft and hard), flooded with connections it must keep open.

With fd_reserve free descriptors kept, new HTTP and native TCP connections are refused
(counted) before the process runs out, so /readyz keeps answering and the registry keeps
its connections. Should the descriptors run out all the same (a flood of the health port,
which is never refused), the listeners pause and resume instead of dying, and the log
says so in one line, not a traceback per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.node.conftest import read_message
from tests.node.fronts.connections_support import (
    Conn,
    LimitedNodeProcess,
    close_all,
    connect,
    get_request,
    http_get,
    read_response,
    sample,
)
from tests.node.native_support import ABC, request_bytes
from tests.node.wait_support import until

NOFILE = 256
FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]


def node_process(database_url: str, data_dir: Path, fd_reserve: int) -> LimitedNodeProcess:
    return LimitedNodeProcess(
        ["--data-dir", str(data_dir), *FREE, "--demo"],
        env={"IDNODE_DATABASE_URL": database_url, "IDNODE_FD_RESERVE": str(fd_reserve)},
        nofile=NOFILE,
    ).start()


async def flood(port: int, count: int) -> list[Conn]:
    """``count`` connections to ``port`` (the kernel completes them whatever the node
    does; the node then keeps or closes each)."""
    conns = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            conns.append(await connect(port))
    return conns


async def native_resolves(port: int) -> bool:
    reader, writer = await connect(port)
    try:
        writer.write(request_bytes(ABC))
        await read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    finally:
        await close_all([(reader, writer)])
    return True


async def test_the_fd_reserve_keeps_readyz_answering(database_url: str, tmp_path: Path) -> None:
    node = node_process(database_url, tmp_path, fd_reserve=64)
    hogs: list[Conn] = []
    try:
        assert f"open files limit {NOFILE}" in node.output
        hogs += await flood(node.http_port, 300)
        status, _ = await asyncio.to_thread(http_get, node.ports["admin"], "/readyz")
        assert status == 200
        _, metrics = await asyncio.to_thread(http_get, node.ports["admin"], "/metrics")
        refused = "idnode_connections_refused_total"
        assert sample(metrics, refused, front="http", reason="fd_reserve") > 0
        await close_all(hogs)
        hogs = []
        await released(node, "http")
        status, _ = await asyncio.to_thread(http_get, node.http_port, "/api/prefixes")
        assert status == 200
    finally:
        await close_all(hogs)
        node.stop()
    assert "Traceback" not in node.output
    refusals = [line for line in node.lines if "refusing new connections" in line]
    assert 1 <= len(refusals) <= 3, refusals  # one line per 10 s at most


async def test_native_tcp_keeps_the_fd_reserve(database_url: str, tmp_path: Path) -> None:
    node = node_process(database_url, tmp_path, fd_reserve=64)
    hogs: list[Conn] = []
    try:
        hogs += await flood(node.ports["handle"], 300)
        status, _ = await asyncio.to_thread(http_get, node.ports["admin"], "/readyz")
        assert status == 200
        _, metrics = await asyncio.to_thread(http_get, node.ports["admin"], "/metrics")
        refused = "idnode_connections_refused_total"
        assert sample(metrics, refused, front="tcp", reason="fd_reserve") > 0
        await close_all(hogs)
        hogs = []
        await released(node, "tcp")
        assert await native_resolves(node.ports["handle"])  # its listener lives on
    finally:
        await close_all(hogs)
        node.stop()
    assert "Traceback" not in node.output


async def test_running_out_pauses_the_listeners_and_logs_one_line(
    database_url: str, tmp_path: Path
) -> None:
    # The health port is never refused (probes must get through), so a flood of it can
    # still take every descriptor: then accepting pauses, on every port, and resumes.
    node = node_process(database_url, tmp_path, fd_reserve=64)
    hogs: list[Conn] = []
    waiting: list[Conn] = []
    try:
        hogs += await flood(node.ports["admin"], 400)
        await until(lambda: logged(node, "admin: cannot accept connections (EMFILE"))
        # Connections made now wait in the kernel's queue for the listener to resume.
        waiting += await flood(node.http_port, 3)
        for _, writer in waiting:
            writer.write(get_request("/api/prefixes"))
        await until(lambda: logged(node, "HTTP: cannot accept connections (EMFILE"))
        await close_all(hogs)
        hogs = []
        replies = [await read_response(reader) for reader, _ in waiting]
        assert [r.status if r else None for r in replies] == [200, 200, 200]
        _, metrics = await asyncio.to_thread(http_get, node.ports["admin"], "/metrics")
        errors = "idnode_accept_errors_total"
        assert sample(metrics, errors, front="admin", error="EMFILE") > 0
        assert sample(metrics, errors, front="http", error="EMFILE") > 0
    finally:
        await close_all(hogs + waiting)
        node.stop()
    assert "Traceback" not in node.output
    exhausted = [line for line in node.lines if "EMFILE" in line]
    assert 2 <= len(exhausted) <= 4, exhausted


async def released(node: LimitedNodeProcess, front: str, timeout_s: float = 15.0) -> None:
    """Wait for the node to have closed every connection of ``front`` the flood's clients
    closed: it does so as it reads their EOFs, so a connection made before then may still
    find the reserve taken and be refused, as it should be."""

    async def open_now() -> float:
        _, metrics = await asyncio.to_thread(http_get, node.ports["admin"], "/metrics")
        return sample(metrics, "idnode_connections_open", front=front)

    async def spin() -> None:
        while await open_now() > 0:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(spin(), timeout_s)


def logged(node: LimitedNodeProcess, text: str) -> bool:
    return any(text in line for line in node.lines)

"""Native TCP under abuse, against a real node: one source holding connections cannot
lock the others out (tcp_max_connections_per_source under the global
tcp_max_connections), and a client that sends requests but never reads the replies is
disconnected after tcp_write_timeout_s instead of holding its connection for ever."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from protocol.message import decode
from tests.node.conftest import StartNode, read_message, tcp_exchange
from tests.node.fronts.connections_support import (
    HOG,
    POLITE,
    Conn,
    close_all,
    connect,
    counted,
    refused,
    timed_out,
)
from tests.node.native_support import ABC, indexes_of, request_bytes
from tests.node.wait_support import until

NO_EXEMPTIONS = {"rate_limit_exempt_networks": ""}


async def answered(conn: Conn) -> bool:
    """Whether the node answers a resolution on ``conn`` (False: it closed it)."""
    reader, writer = conn
    try:
        writer.write(request_bytes(ABC))
        await writer.drain()
        await read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


async def test_one_source_holding_connections_leaves_room_for_others(
    start_node: StartNode,
) -> None:
    node = await start_node(
        tcp_max_connections=16, tcp_max_connections_per_source=4, **NO_EXEMPTIONS
    )
    assert node.handle_port is not None
    hog = [await connect(node.handle_port, source=HOG) for _ in range(16)]
    try:
        kept = [await answered(conn) for conn in hog]
        # A polite client still gets through while the hog holds what it may.
        reply = decode(await tcp_exchange(POLITE, node.handle_port, request_bytes(ABC)))
        assert indexes_of(reply) == [1, 2, 100]
        assert kept.count(True) == 4
        assert refused(node, "tcp", "too_many_from_source") == 12
    finally:
        await close_all(hog)


async def test_the_global_cap_still_holds(start_node: StartNode) -> None:
    node = await start_node(
        tcp_max_connections=4, tcp_max_connections_per_source=100, **NO_EXEMPTIONS
    )
    assert node.handle_port is not None
    held = [await connect(node.handle_port, source=HOG) for _ in range(4)]
    try:
        assert all([await answered(conn) for conn in held])
        late = await connect(node.handle_port)
        try:
            assert not await answered(late)
        finally:
            await close_all([late])
        assert refused(node, "tcp", "too_many_connections") == 1
    finally:
        await close_all(held)
    # Connections given back (once the node has seen them close) make room again.
    await until(lambda: counted(node, "idnode_connections_open", front="tcp") == 0, poll_s=0.01)
    reply = decode(await tcp_exchange(POLITE, node.handle_port, request_bytes(ABC)))
    assert indexes_of(reply) == [1, 2, 100]


async def test_a_client_that_never_reads_is_disconnected(start_node: StartNode) -> None:
    node = await start_node(tcp_write_timeout_s=0.5)
    assert node.handle_port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.handle_port))
    _, writer = await asyncio.open_connection(sock=sock)
    requests = request_bytes(ABC) * 200

    async def send_and_never_read() -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(requests)
                await writer.drain()  # blocks once the node stops reading from us

    flood = asyncio.create_task(send_and_never_read())
    try:
        # Polled, not spun: each look collects every metric, on the node's own loop.
        await until(lambda: timed_out(node, "tcp", "write_timeout") == 1, 30, poll_s=0.05)
        await asyncio.wait_for(flood, 30)  # our writes fail: the node dropped us
    finally:
        flood.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    # Others are served on.
    reply = decode(await tcp_exchange(POLITE, node.handle_port, request_bytes(ABC)))
    assert indexes_of(reply) == [1, 2, 100]

"""The HTTP port under abuse, against a real node and raw sockets: connection caps (global
and per source, refused at once with a 503 and counted), a deadline for the request line
and headers (slowloris), the keep-alive timeout, malformed request lines logged as one
rate-limited line, and a Server header that names no library version. Keep-alive and
pipelining still work."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from node.demo.dataset import SILK_MILL
from tests.node.conftest import StartNode
from tests.node.fronts.connections_support import (
    HOG,
    close_all,
    connect,
    counted,
    ended,
    get_request,
    read_response,
    refused,
    timed_out,
)
from tests.node.http_support import admin_of
from tests.node.native_support import ABC
from tests.node.wait_support import until

NO_EXEMPTIONS = {"rate_limit_exempt_networks": ""}
RECORD = f"/api/handles/{ABC}"


async def polite_get(port: int, path: str = RECORD) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as reply,
    ):
        await reply.read()
        return reply.status


async def test_one_source_cannot_hold_every_connection(start_node: StartNode) -> None:
    node = await start_node(http_max_connections_per_source=4, **NO_EXEMPTIONS)
    assert node.http_port is not None
    hog = [await connect(node.http_port, source=HOG) for _ in range(10)]
    try:
        await until(lambda: refused(node, "http", "too_many_from_source") == 6)
        for _, writer in hog:
            writer.write(get_request(RECORD))
        replies = [await read_response(reader) for reader, _ in hog]
        statuses = sorted(r.status for r in replies if r is not None)
        assert statuses == [200] * 4 + [503] * 6
        refusal = next(r for r in replies if r is not None and r.status == 503)
        assert b"too many connections from your address" in refusal.body
        assert await polite_get(node.http_port) == 200
    finally:
        await close_all(hog)


async def test_the_global_cap_refuses_at_once(start_node: StartNode) -> None:
    node = await start_node(http_max_connections=3, **NO_EXEMPTIONS)
    assert node.http_port is not None
    held = [await connect(node.http_port, source=HOG) for _ in range(3)]
    try:
        late = await connect(node.http_port)
        reply = await read_response(late[0])  # sent before we ask anything
        await close_all([late])
        assert reply is not None and reply.status == 503
        assert b"too many connections" in reply.body
        assert refused(node, "http", "too_many_connections") == 1
    finally:
        await close_all(held)
    await until(lambda: counted(node, "idnode_connections_open", front="http") == 0)
    assert await polite_get(node.http_port) == 200


async def test_a_slow_request_line_is_cut_off(start_node: StartNode) -> None:
    node = await start_node(http_header_timeout_s=0.3)
    assert node.http_port is not None
    reader, writer = await connect(node.http_port)
    try:
        writer.write(b"GET /api/hand")  # ... and nothing more
        rest = await ended(reader)
        assert rest.startswith(b"HTTP/1.1 408 ")
    finally:
        await close_all([(reader, writer)])
    silent = await connect(node.http_port)  # connects, sends nothing
    try:
        assert await ended(silent[0]) == b""
    finally:
        await close_all([silent])
    assert timed_out(node, "http", "header_timeout") == 2


def put_head(handle: str, length: int) -> bytes:
    auth = admin_of(SILK_MILL)["Authorization"]
    return (
        f"PUT /api/handles/{handle} HTTP/1.1\r\nHost: idnode.test\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_a_request_body_that_stops_arriving_is_cut_off(start_http_node: StartNode) -> None:
    """A slow POST: headers in time, then a body that pauses. Without the limit aiohttp
    waits for it as long as the client likes, holding the handler and the connection."""
    node = await start_http_node(http_body_idle_timeout_s=0.3)
    assert node.http_port is not None
    body = b'[{"index": 1, "type": "URL", "data": "https://example.com/slow"}]'
    reader, writer = await connect(node.http_port)
    try:
        writer.write(put_head("88.118.2/SLOW-BODY", len(body)) + body[:10])
        assert await ended(reader) == b""  # closed, no reply: none may be half-written
    finally:
        await close_all([(reader, writer)])
    assert timed_out(node, "http", "body_timeout") == 1
    assert await polite_get(node.http_port, "/api/handles/88.118.2/SLOW-BODY") == 404


async def test_a_body_that_keeps_coming_is_not_cut_off(start_http_node: StartNode) -> None:
    """Each pause shorter than the limit, the whole upload longer than it: accepted."""
    node = await start_http_node(http_body_idle_timeout_s=1.0)
    assert node.http_port is not None
    body = b'[{"index": 1, "type": "URL", "data": "https://example.com/steady"}]'
    reader, writer = await connect(node.http_port)
    try:
        writer.write(put_head("88.118.2/STEADY-BODY", len(body)))
        for i in range(0, len(body), 4):  # ~17 pieces, 0.1 s apart: 1.7 s in all
            writer.write(body[i : i + 4])
            await writer.drain()
            await asyncio.sleep(0.1)  # the client's own pace, not a wait for the node
        reply = await read_response(reader)
        assert reply is not None and reply.status in (200, 201), reply
    finally:
        await close_all([(reader, writer)])
    assert timed_out(node, "http", "body_timeout") == 0


async def test_an_idle_keep_alive_connection_is_closed(start_node: StartNode) -> None:
    node = await start_node(http_keepalive_timeout_s=0.3, http_header_timeout_s=30)
    assert node.http_port is not None
    reader, writer = await connect(node.http_port)
    try:
        writer.write(get_request(RECORD))
        reply = await read_response(reader)
        assert reply is not None and reply.status == 200
        assert await ended(reader) == b""  # idle past the keep-alive timeout
    finally:
        await close_all([(reader, writer)])


async def test_keep_alive_and_pipelining_still_work(start_node: StartNode) -> None:
    node = await start_node(http_header_timeout_s=5)
    assert node.http_port is not None
    reader, writer = await connect(node.http_port)
    try:
        writer.write(get_request(RECORD) + get_request("/api/handles/88.118.2/NOPE"))
        first, second = await read_response(reader), await read_response(reader)
        assert first is not None and first.status == 200 and ABC.encode() in first.body
        assert second is not None and second.status == 404
        writer.write(get_request(RECORD, close=True))  # the same connection, later
        third = await read_response(reader)
        assert third is not None and third.status == 200
    finally:
        await close_all([(reader, writer)])


MALFORMED = [
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    b"GET / HTTP/1.1 trailing\r\n\r\n",
    b"GET " + b"x" * 10_000 + b" HTTP/1.1\r\n\r\n",
]


async def test_malformed_requests_log_one_line_not_a_traceback_each(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    node = await start_node()
    assert node.http_port is not None
    caplog.set_level(logging.INFO)
    caplog.clear()
    for i in range(50):
        reader, writer = await connect(node.http_port)
        writer.write(MALFORMED[i % len(MALFORMED)])
        reply = await read_response(reader)
        await close_all([(reader, writer)])
        assert reply is not None and reply.status in (400, 414, 431), i
        assert reply.headers["server"] == "idnode"
    assert counted(node, "idnode_malformed_requests_total", front="http") == 50
    logged = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(logged) <= 2, [r.getMessage() for r in logged]
    assert all(r.exc_info is None for r in logged)
    assert "Traceback" not in caplog.text


async def test_the_server_header_names_no_version(start_node: StartNode) -> None:
    node = await start_node()
    for port, path in ((node.http_port, RECORD), (node.admin_port, "/healthz")):
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as reply,
        ):
            assert reply.status == 200
            assert reply.headers["Server"] == "idnode"
    # Replies made before any route is found (an unknown method) too.
    reader, writer = await connect(node.http_port)  # type: ignore[arg-type]
    try:
        writer.write(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await read_response(reader)
        assert reply is not None and reply.headers["server"] == "idnode"
    finally:
        await close_all([(reader, writer)])
    assert asyncio.get_running_loop()  # the node above runs on this loop

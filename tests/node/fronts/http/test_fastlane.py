"""The HTTP fast lane (node.fronts.http.fastlane, node.runtime.fastlane) against a real
node with the demo data, over raw sockets: a kept ``GET /api/handles/...`` reply is
written by the connection itself, byte for byte what aiohttp writes for the same kept
reply (Date aside); a miss of a plain path is read and written there too, what follows
it held until its reply is out; and anything else is left to aiohttp in order: records
not found, other methods, credentials, preconditions, partial and malformed requests,
HTTP/1.0, ``Connection: close``. Which path answered is told by the lane's own counter
(``idnode_http_fast_lane_replies_total``); aiohttp's reply of a kept reply is asked for
with ``If-Modified-Since``, a precondition the lane leaves to aiohttp and the REST API
ignores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import orjson
import pytest

from node.app import Node
from node.runtime.accesslog import AccessLog
from tests.node.conftest import StartNode
from tests.node.http_support import A_HANDLE, B_HANDLE, A, Api, admin_of, basic, url_value
from tests.node.native_support import notifications_off, settle

ROLL = "/api/handles/" + A_HANDLE
YARN = "/api/handles/" + B_HANDLE
NOPE = "/api/handles/88.118.2/NO-SUCH-ROLL"
NEW = "/api/handles/88.118.2/NEW-ROLL"  # not there: a registry read, 404 (never kept)
# A precondition the lane leaves to aiohttp, which ignores it: the full path's bytes.
VIA_AIOHTTP = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"
TIMEOUT_S = 10.0
_DATE = re.compile(rb"\r\nDate: [^\r]*")

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Raw:
    status: int
    head: bytes  # status line and fields as sent, the Date value blanked
    fields: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        values = [v for k, v in self.fields if k.lower() == name.lower()]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def names(self) -> list[str]:
        return [k for k, _ in self.fields]


def request(path: str, *fields: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: idnode.test", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_reply(reader: asyncio.StreamReader, *, bodiless: bool = False) -> Raw:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    fields = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    status = int(status_line.split(" ")[1])
    length = int({k.lower(): v for k, v in fields}.get("content-length", "0"))
    body = b""
    if not bodiless and status not in (204, 304):
        body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT_S)
    return Raw(status, _DATE.sub(b"\r\nDate: -", head), fields, body)


async def ended(reader: asyncio.StreamReader) -> bytes:
    """What arrives until the node closes the connection (bounded)."""

    async def rest() -> bytes:
        got = b""
        try:
            while chunk := await reader.read(65536):
                got += chunk
        except ConnectionError:
            pass
        return got

    return await asyncio.wait_for(rest(), TIMEOUT_S)


@asynccontextmanager
async def connection(node: Node) -> AsyncIterator[Conn]:
    assert node.http_port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", node.http_port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):  # the node closed it first
            await writer.wait_closed()


async def ask(conn: Conn, data: bytes, *, bodiless: bool = False) -> Raw:
    reader, writer = conn
    writer.write(data)
    return await read_reply(reader, bodiless=bodiless)


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def lane(node: Node) -> float:
    return sample(node, "idnode_http_fast_lane_replies_total")


def handle_in(reply: Raw) -> str:
    text = reply.body.decode()
    if text.startswith("/**/"):
        text = text[text.index("(") + 1 : -2]
    handle: str = orjson.loads(text)["handle"]
    return handle


async def reading_blocked(db: asyncpg.Connection) -> None:
    """Until a read of the handles table waits for a lock."""

    async def spin() -> None:
        while not await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE '%FROM handles WHERE%'"
        ):
            pass

    await asyncio.wait_for(spin(), TIMEOUT_S)


@asynccontextmanager
async def handles_locked(node: Node) -> AsyncIterator[asyncpg.Connection]:
    """The handles table locked, every registry read of it waiting, until the block ends."""
    assert node.db is not None
    db = await asyncpg.connect(node.db.dsn)
    try:
        async with db.transaction():
            await db.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
            yield db
    finally:
        await db.close()


@pytest.fixture
async def node(http_node: Node) -> Node:
    """The demo node once it has heard the notifications of its own demo writes."""
    await settle(http_node)
    return http_node


# --- the same bytes ---------------------------------------------------------------------


async def test_a_hit_is_written_as_aiohttp_writes_the_kept_reply(node: Node) -> None:
    async with connection(node) as conn:
        miss = await ask(conn, request(ROLL, VIA_AIOHTTP))  # the full path; the reply is kept
        assert lane(node) == 0
        fast = await ask(conn, request(ROLL))
        assert lane(node) == 1
        slow = await ask(conn, request(ROLL, VIA_AIOHTTP))
        assert lane(node) == 1
    assert fast.status == slow.status == miss.status == 200
    assert fast.head == slow.head and fast.body == slow.body
    assert fast.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert fast.names() == [
        "Content-Type",
        "X-Content-Type-Options",
        "Cache-Control",
        "Access-Control-Allow-Origin",
        "Access-Control-Expose-Headers",
        "ETag",
        "Content-Length",
        "Date",
        "Server",
    ]
    assert fast.get("Server") == "idnode" and fast.get("Content-Length") == str(len(fast.body))
    # The full path's reply: the same bytes and fields (its order is its own).
    assert miss.body == fast.body
    assert sorted(miss.names()) == sorted(fast.names())
    assert all(miss.get(name) == fast.get(name) for name in fast.names() if name != "Date")
    assert handle_in(fast) == A_HANDLE


async def test_hits_are_counted_as_the_middleware_counts_them(node: Node) -> None:
    def counts() -> tuple[float, ...]:
        return (
            sample(node, "idnode_requests_total", front="http", op="resolution", rc="1"),
            sample(node, "idnode_request_seconds_count", front="http", op="resolution"),
            sample(node, "idnode_cache_hits_total", front="http", op="resolution"),
            sample(node, "idnode_cache_hit_seconds_count", front="http", op="resolution"),
            lane(node),
        )

    async with connection(node) as conn:
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        before = counts()
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        slow = counts()
        await ask(conn, request(ROLL))
        fast = counts()
    assert [b - a for a, b in zip(before, slow, strict=True)] == [1, 1, 1, 1, 0]
    assert [b - a for a, b in zip(slow, fast, strict=True)] == [1, 1, 1, 1, 1]


async def test_many_requests_on_one_connection(node: Node) -> None:
    async with connection(node) as conn:
        first = await ask(conn, request(ROLL, VIA_AIOHTTP))
        for _ in range(100):
            reply = await ask(conn, request(ROLL, "Connection: keep-alive"))
            assert reply.body == first.body
        assert lane(node) == 100
        reader, writer = conn
        writer.write(request(ROLL) * 50)  # pipelined, in one write
        for _ in range(50):
            assert (await read_reply(reader)).body == first.body
        assert lane(node) == 150


async def test_pipelined_requests_are_answered_in_order(node: Node, api: Api) -> None:
    await api.get(ROLL, headers={"If-Modified-Since": "x"})  # kept, by aiohttp
    async with connection(node) as conn:
        reader, writer = conn
        writer.write(
            request(ROLL)  # a hit
            + request(YARN, VIA_AIOHTTP)  # aiohttp's: it answers everything after it
            + request(ROLL, "Content-Length: 5", "Content-Type: text/plain", method="POST")
            + b"hello"
            + request(ROLL, method="HEAD")
            + request(ROLL + "?callback=cb")
        )
        replies = [
            await read_reply(reader),
            await read_reply(reader),
            await read_reply(reader),
            await read_reply(reader, bodiless=True),
            await read_reply(reader),
        ]
        assert [r.status for r in replies] == [200, 200, 405, 200, 200]
        assert [handle_in(replies[i]) for i in (0, 1, 4)] == [A_HANDLE, B_HANDLE, A_HANDLE]
        assert replies[3].body == b"" and replies[3].get("Content-Length") == str(
            len(replies[0].body)
        )
        assert lane(node) == 1  # only the first: the others followed aiohttp's
        # aiohttp has answered them all: the next hit is the lane's again.
        assert (await ask(conn, request(ROLL))).body == replies[0].body
        assert lane(node) == 2


async def test_a_hit_waits_for_the_miss_before_it(node: Node) -> None:
    """A hit arriving while aiohttp still reads the registry for the request before it
    is answered after that one: the read is held by a lock on the handles table."""
    async with connection(node) as conn, connection(node) as other:
        await ask(conn, request(ROLL, VIA_AIOHTTP))  # kept
        reader, writer = conn
        async with handles_locked(node) as db:
            writer.write(request(NEW))
            await reading_blocked(db)
            writer.write(request(ROLL))
            # A round trip on another connection: the node has read the hit by now.
            assert (await ask(other, request(ROLL))).status == 200
            assert lane(node) == 1  # that one only
        miss, hit = await read_reply(reader), await read_reply(reader)
    assert (miss.status, hit.status) == (404, 200)
    assert b"NEW-ROLL" in miss.body and handle_in(hit) == A_HANDLE


async def test_head_sends_the_headers_of_get_and_no_body(node: Node) -> None:
    async with connection(node) as conn:
        get = await ask(conn, request(ROLL, VIA_AIOHTTP))
        get = await ask(conn, request(ROLL))
        fast = await ask(conn, request(ROLL, method="HEAD"), bodiless=True)
        assert lane(node) == 2
        slow = await ask(conn, request(ROLL, VIA_AIOHTTP, method="HEAD"), bodiless=True)
        assert lane(node) == 2
        # No stray body: the next reply on the connection reads cleanly.
        after = await ask(conn, request(ROLL))
    assert fast.head == slow.head == get.head
    assert after.body == get.body and lane(node) == 3


# --- conditional requests ---------------------------------------------------------------


async def test_if_none_match_naming_the_etag_gets_304(node: Node) -> None:
    async with connection(node) as conn:
        miss = await ask(conn, request(ROLL, VIA_AIOHTTP))
        etag = miss.get("ETag")
        assert etag is not None and etag.startswith('"') and etag.endswith('"')
        hit = await ask(conn, request(ROLL))
        assert hit.get("ETag") == etag  # the full path and a hit agree
        fast = await ask(conn, request(ROLL, f"If-None-Match: {etag}"))
        assert lane(node) == 2
        slow = await ask(conn, request(ROLL, f"If-None-Match: {etag}", VIA_AIOHTTP))
        assert lane(node) == 2
        for field in (f"W/{etag}", '"other", ' + etag, "*"):
            reply = await ask(conn, request(ROLL, f"If-None-Match: {field}"))
            assert reply.status == 304, field
        other = await ask(conn, request(ROLL, 'If-None-Match: "other"'))
        assert lane(node) == 6
        # The full path (auth=true never reads a kept reply) validates the same way.
        full = await ask(conn, request(ROLL + "?auth=true"))
        full_304 = await ask(conn, request(ROLL + "?auth=true", f"If-None-Match: {etag}"))
        assert lane(node) == 6
    assert fast.status == 304 and fast.body == b""
    assert fast.head == slow.head
    assert fast.head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert fast.get("ETag") == etag and fast.get("Cache-Control") == hit.get("Cache-Control")
    assert fast.get("Content-Type") is None and fast.get("Content-Length") is None
    assert other.status == 200 and other.body == hit.body
    assert full.body == hit.body and full.get("ETag") == etag
    assert full_304.status == 304 and full_304.get("ETag") == etag


# --- JSONP --------------------------------------------------------------------------------


async def test_jsonp_hits_are_wrapped_per_request(node: Node) -> None:
    path = ROLL + "?index=1&callback=app.show"
    async with connection(node) as conn:
        plain = await ask(conn, request(ROLL + "?index=1"))  # kept; the callback is not
        fast = await ask(conn, request(path))
        assert lane(node) == 1
        slow = await ask(conn, request(path, VIA_AIOHTTP))
        etag = fast.get("ETag")
        not_modified = await ask(conn, request(path, f"If-None-Match: {etag}"))
        assert lane(node) == 2
    assert fast.head == slow.head and fast.body == slow.body
    assert fast.body == b"/**/app.show(" + plain.body + b");"
    assert fast.get("Content-Type") == "application/javascript; charset=utf-8"
    assert etag is not None and etag != plain.get("ETag")
    assert not_modified.status == 304 and not_modified.get("ETag") == etag


# --- the access log -----------------------------------------------------------------------


async def test_hits_are_in_the_access_log_like_any_request(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    encoded = "/api/handles/" + A_HANDLE.replace("/", "%2F")
    async with connection(node) as conn:
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        await ask(conn, request(encoded))  # kept apart: another raw path
        node.metrics.access = AccessLog("all")
        caplog.set_level(logging.INFO, "idnode.access")
        await ask(conn, request(ROLL))
        await ask(conn, request(encoded + "?callback=cb", "X-Forwarded-For: 203.0.113.7"))
        assert lane(node) == 2
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "idnode.access"]
    for line in lines:
        assert line.pop("latency_ms") >= 0
    common = {"front": "http", "op": "resolution", "handle": A_HANDLE, "rc": 1}
    assert lines == [
        {**common, "client": "127.0.0.1"},
        {**common, "client": "203.0.113.7"},  # from a trusted proxy (loopback)
    ]


# --- left to aiohttp ----------------------------------------------------------------------


async def test_credentials_go_to_the_full_path(node: Node) -> None:
    async with connection(node) as conn:
        kept = await ask(conn, request(ROLL, VIA_AIOHTTP))
        await ask(conn, request(ROLL))
        assert lane(node) == 1
        wrong = basic("300:88.118.2/ADMIN", "wrong")["Authorization"]
        refused = await ask(conn, request(ROLL, f"Authorization: {wrong}"))
        admin = admin_of(A)["Authorization"]
        private = await ask(conn, request(ROLL, f"authorization: {admin}"))
        assert lane(node) == 1
    assert refused.status == 401
    assert private.status == 200 and private.get("Cache-Control") == "private, no-store"
    assert kept.get("Cache-Control") != "private, no-store"


async def test_a_request_sent_byte_by_byte(node: Node) -> None:
    async with connection(node) as conn:
        whole = await ask(conn, request(ROLL))
        reader, writer = conn
        for byte in request(ROLL):
            writer.write(bytes([byte]))
            await writer.drain()
        split = await read_reply(reader)
        before = lane(node)
        again = await ask(conn, request(ROLL))
        assert lane(node) == before + 1  # aiohttp is done with it: the lane answers again
    assert split.head == again.head and split.body == again.body == whole.body


async def test_a_malformed_request_after_a_hit(node: Node) -> None:
    async with connection(node) as conn:
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        reader, writer = conn
        writer.write(request(ROLL) + b"GET / HTTP/1.1 trailing\r\n\r\n" + request(ROLL))
        hit = await read_reply(reader)
        bad = await read_reply(reader)
        rest = await ended(reader)
    assert hit.status == 200 and lane(node) == 1
    assert bad.status == 400 and bad.get("Server") == "idnode"
    assert rest == b""  # the connection ends: nothing answered after the 400
    assert sample(node, "idnode_malformed_requests_total", front="http") == 1


async def test_connection_close_ends_the_connection(node: Node) -> None:
    async with connection(node) as conn:
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        last = await ask(conn, request(ROLL, "Connection: close"))
        rest = await ended(conn[0])
    assert last.status == 200 and last.get("Connection") == "close"
    assert rest == b"" and lane(node) == 0


async def test_http_1_0_goes_to_aiohttp(node: Node) -> None:
    async with connection(node) as conn:
        kept = await ask(conn, request(ROLL, VIA_AIOHTTP))
        old = await ask(conn, request(ROLL, version="1.0"))
        rest = await ended(conn[0])
    assert old.head.startswith(b"HTTP/1.0 200 OK\r\n") and old.body == kept.body
    assert rest == b"" and lane(node) == 0


async def test_handles_not_kept_are_never_answered_here(node: Node) -> None:
    async with connection(node) as conn:
        for _ in range(2):
            assert (await ask(conn, request(NOPE))).status == 404  # read here, then aiohttp's
        assert lane(node) == 0


# --- misses read here -----------------------------------------------------------------------


def counts(node: Node) -> tuple[float, ...]:
    return (
        sample(node, "idnode_requests_total", front="http", op="resolution", rc="1"),
        sample(node, "idnode_request_seconds_count", front="http", op="resolution"),
        sample(node, "idnode_cache_hits_total", front="http", op="resolution"),
        sample(node, "idnode_cache_misses_total", front="http", op="resolution"),
        lane(node),
    )


async def test_a_miss_is_read_and_written_as_aiohttp_writes_it(node: Node) -> None:
    async with connection(node) as conn:
        before = counts(node)
        miss = await ask(conn, request(YARN))
        read = counts(node)
        slow = await ask(conn, request(YARN, VIA_AIOHTTP))  # aiohttp's, from the kept reply
        head = await ask(conn, request(ROLL, method="HEAD"), bodiless=True)  # HEAD: a miss
        get = await ask(conn, request(ROLL, VIA_AIOHTTP))
    assert miss.status == 200 and handle_in(miss) == B_HANDLE
    assert miss.head == slow.head and miss.body == slow.body
    assert head.head == get.head and head.body == b""
    # Counted as the middleware counts a request, and as a miss of the cache, not a hit.
    assert [b - a for a, b in zip(before, read, strict=True)] == [1, 1, 0, 1, 1]
    assert lane(node) == 2


async def test_what_follows_a_miss_waits_for_its_reply(node: Node) -> None:
    """A hit pipelined after a miss whose registry read is held by a lock goes out after
    the miss's reply, as do the requests aiohttp answers after them."""
    async with connection(node) as conn, connection(node) as other:
        await ask(conn, request(ROLL, VIA_AIOHTTP))  # kept
        reader, writer = conn
        async with handles_locked(node) as db:
            writer.write(request(YARN))
            await reading_blocked(db)
            writer.write(request(ROLL) + request(ROLL, VIA_AIOHTTP) + request(ROLL))
            # A round trip on another connection: the node has read them all by now.
            assert (await ask(other, request(ROLL))).status == 200
            assert lane(node) == 1  # that one only: the rest wait for YARN
        replies = [await read_reply(reader) for _ in range(4)]
    assert [handle_in(r) for r in replies] == [B_HANDLE, A_HANDLE, A_HANDLE, A_HANDLE]
    # YARN and the hit after it from the lane; then aiohttp's, and the one after it.
    assert lane(node) == 3


async def test_a_client_gone_during_a_read_costs_nothing_more(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async with handles_locked(node) as db, connection(node) as (_, writer):
        writer.write(request(YARN) + request(ROLL) * 100)
        await reading_blocked(db)
    async with connection(node) as conn:  # the node reads on, and serves on
        assert handle_in(await ask(conn, request(YARN))) == B_HANDLE
    # YARN read for the client that left (counted, as aiohttp counts a request whose
    # client left), then for the next; the hundred held behind it, never.
    assert sample(node, "idnode_requests_total", front="http", op="resolution", rc="1") == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_write_acknowledged_is_seen_by_the_next_get(node: Node, api: Api) -> None:
    assert node.db is not None
    async with notifications_off(node.db.dsn), connection(node) as conn:  # the PUT invalidates
        await ask(conn, request(ROLL, VIA_AIOHTTP))
        old = await ask(conn, request(ROLL))
        assert lane(node) == 1 and b"https://example.com/v2" not in old.body
        put = await api.put(
            ROLL + "?index=1", [url_value(1, "https://example.com/v2")], headers=admin_of(A)
        )
        assert put.status == 200, put.text
        new = await ask(conn, request(ROLL))  # the same connection, kept alive: a miss
        assert b"https://example.com/v2" in new.body and new.get("ETag") != old.get("ETag")
        assert (await ask(conn, request(ROLL))).body == new.body
        assert lane(node) == 3  # the miss read here too
        # A PUT and a GET pipelined: the GET waits for the PUT's reply.
        body = orjson.dumps([url_value(1, "https://example.com/v3")])
        put_request = request(
            ROLL + "?index=1",
            f"Authorization: {admin_of(A)['Authorization']}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            method="PUT",
        )
        reader, writer = conn
        writer.write(put_request + body + request(ROLL))
        assert (await read_reply(reader)).status == 200
        after = await read_reply(reader)
        assert b"https://example.com/v3" in after.body
        assert lane(node) == 3


# --- deadlines ------------------------------------------------------------------------------


async def test_the_header_deadline_and_keep_alive_timer_still_hold(
    start_http_node: StartNode,
) -> None:
    node = await start_http_node(http_header_timeout_s=0.4, http_keepalive_timeout_s=1.0)
    await settle(node)

    async def partial_request_cut_off() -> None:
        """A connection sending half a request line gets its 408 one header timeout
        after its first byte: the clock of this test."""
        async with connection(node) as (reader, writer):
            writer.write(b"GET /api/hand")
            assert (await ended(reader)).startswith(b"HTTP/1.1 408 ")

    async with connection(node) as conn:
        kept = await ask(conn, request(ROLL, VIA_AIOHTTP))
    async with connection(node) as conn:
        # After each reply of the lane, the header deadline is off and the keep-alive
        # timer restarts: the connection outlives both, measured from its start.
        for _ in range(3):
            assert (await ask(conn, request(ROLL))).body == kept.body
            await partial_request_cut_off()  # 0.4 s; 1.2 s in all, past the keep-alive
        assert lane(node) == 3
        # A partial request after the lane's reply is cut off at its own deadline.
        conn[1].write(b"GET /api/hand")
        assert (await ended(conn[0])).startswith(b"HTTP/1.1 408 ")
    timed_out = sample(
        node, "idnode_connections_timed_out_total", front="http", reason="header_timeout"
    )
    assert timed_out == 4
    # Idle past the keep-alive timeout after a reply of the lane: closed.
    async with connection(node) as conn:
        await ask(conn, request(ROLL))
        assert lane(node) == 4
        assert await ended(conn[0]) == b""

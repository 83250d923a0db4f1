"""Which request heads a connection may answer itself (node.runtime.fastlane), and how
it follows the bytes it hands to aiohttp: what it cannot read with certainty is never
answered, and what it cannot frame with certainty ends the following; then a
connection with a lane of fixed replies over a real socket (order, a failing lane). The
HTTP front's lane is tested against a real node in tests/node/fronts/http/test_fastlane.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from node.runtime.fastlane import Framing, QuickAnswers, body_length, quick_request
from node.runtime.httpserve import QUICK_ANSWERS, guard_app, serve_http
from node.runtime.listen import tcp_listener
from node.runtime.metrics import NodeMetrics

PREFIX = b"/api/handles/"
TARGET = b"/api/handles/88.118.2/ROLL-1"


def head(*fields: str, line: bytes = b"GET " + TARGET + b" HTTP/1.1") -> bytes:
    return line + b"".join(b"\r\n" + f.encode("latin-1") for f in fields) + b"\r\n\r\n"


def quick(data: bytes, prefix: bytes = PREFIX) -> tuple[bytes, bool, bytes | None] | None:
    """quick_request's answer but the header lines, checked apart."""
    request = quick_request(data, 0, data.index(b"\r\n\r\n"), prefix)
    if request is None:
        return None
    target, bodiless, inm, fields = request
    assert data.startswith(data[: data.index(b"\r\n")] + fields + b"\r\n\r\n")
    return target, bodiless, inm


def test_a_plain_get_or_head_qualifies() -> None:
    assert quick(head("Host: x")) == (TARGET, False, None)
    assert quick(head(line=b"HEAD " + TARGET + b" HTTP/1.1")) == (TARGET, True, None)
    browser = head(
        "Host: x",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64)",
        "Accept: application/json, */*;q=0.8",
        "Accept-Encoding: gzip, deflate",
        "Connection: Keep-Alive",
        "Origin: https://example.org",
        "cookie: a=b",
    )
    assert quick(browser) == (TARGET, False, None)
    query = b"/api/handles/88.118.2/A%2FB?index=1&type=URL&callback=cb"
    assert quick(head("Host: x", line=b"GET " + query + b" HTTP/1.1")) == (query, False, None)


def test_if_none_match_is_passed_on_as_sent() -> None:
    assert quick(head("Host: x", 'If-None-Match:  "AbC", W/"d"  ')) == (
        TARGET,
        False,
        b'"AbC", W/"d"',
    )
    # One field only: two are left to aiohttp, which joins them.
    assert quick(head('If-None-Match: "a"', 'If-None-Match: "b"')) is None


@pytest.mark.parametrize(
    "fields",
    [
        ("Authorization: Basic eDp5",),
        ("AUTHORIZATION: Handle sessionId=x",),
        ("Connection: close",),
        ("Connection: keep-alive, Upgrade", "Upgrade: websocket"),
        ("Content-Length: 0",),
        ("Transfer-Encoding: chunked",),
        ("Expect: 100-continue",),
        ("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",),
        ("If-Match: *",),
        ("Range: bytes=0-1",),
    ],
)
def test_fields_asking_for_more_than_a_ready_reply(fields: tuple[str, ...]) -> None:
    assert quick(head("Host: x", *fields)) is None


@pytest.mark.parametrize(
    "data",
    [
        head(line=b"GET " + TARGET + b" HTTP/1.0"),
        head(line=b"get " + TARGET + b" HTTP/1.1"),
        head(line=b"POST " + TARGET + b" HTTP/1.1"),
        head(line=b"GET  " + TARGET + b" HTTP/1.1"),
        head(line=b"GET http://x" + TARGET + b" HTTP/1.1"),
        head(line=b"GET " + TARGET + b"#frag HTTP/1.1"),
        head(line=b"GET " + TARGET + b"\xc3\xa9 HTTP/1.1"),
        head(line=b"GET " + TARGET + b"|x HTTP/1.1"),
        head(line=b"GET /api/prefixes HTTP/1.1"),
        head("Host : x"),  # space before the colon
        head("Host: x", " folded"),  # obs-fold
        head("no colon"),
        head("Host: caf\xe9"),  # obs-text: aiohttp's to judge
        head("Host: a\x00b"),
        b"GET " + TARGET + b" HTTP/1.1\nHost: x\r\n\r\n",  # a bare LF
        head("X: " + "y" * 9000),
        head(*[f"X-{i}: y" for i in range(200)]),
    ],
)
def test_what_is_not_read_with_certainty_is_left_to_aiohttp(data: bytes) -> None:
    assert quick(data) is None


def test_a_head_is_read_where_it_is_in_the_buffer() -> None:
    one, two = head("Host: x"), head("Host: y", line=b"HEAD " + TARGET + b" HTTP/1.1")
    data = one + two
    assert quick_request(data, len(one), len(data) - 4, PREFIX) == (
        TARGET,
        True,
        None,
        b"\r\nHost: y",
    )
    assert quick_request(data, 0, len(one) - 4, b"/api/other/") is None


def test_body_lengths_aiohttp_frames_the_same_way() -> None:
    assert body_length(head("Host: x")[:-4]) == 0
    assert body_length(head("Content-Length: 12", line=b"PUT /x HTTP/1.1")[:-4]) == 12
    assert body_length(head("Connection: keep-alive", "content-length:  3 ")[:-4]) == 3
    assert body_length(head(line=b"OPTIONS * HTTP/1.1")[:-4]) == 0


@pytest.mark.parametrize(
    "data",
    [
        head("Content-Length: 1", "Content-Length: 1"),
        head("Content-Length: +1"),
        head("Content-Length: 1, 1"),
        head("Transfer-Encoding: chunked"),
        head("Upgrade: websocket", "Connection: Upgrade"),
        head("Connection: close"),
        head(line=b"CONNECT example.org:443 HTTP/1.1"),
        head(line=b"GET / HTTP/1.0"),
        head(line=b"GET / HTTP/1.1 trailing"),
        b"\r\n" + head(),
    ],
)
def test_what_cannot_be_framed_with_certainty(data: bytes) -> None:
    assert body_length(data[:-4]) is None


PIPELINE = (
    head("Host: x")
    + head("Content-Length: 5", line=b"POST /api/sessions HTTP/1.1")
    + b"\r\n\r\nx"  # a body holding a blank line: not a request
    + head(line=b"HEAD / HTTP/1.1")
)


def test_framing_counts_requests_whole_or_byte_by_byte() -> None:
    whole = Framing()
    whole.feed(PIPELINE)
    assert (whole.requests, whole.between) == (3, True)

    split = Framing()
    boundaries = []
    for i in range(len(PIPELINE)):
        split.feed(PIPELINE[i : i + 1])
        if split.between:
            boundaries.append(i + 1)
    first = len(head("Host: x"))
    second = PIPELINE.index(b"HEAD")
    assert boundaries == [first, second, len(PIPELINE)]
    assert split.requests == 3 and not split.lost


def test_framing_is_lost_for_good() -> None:
    chunked = Framing()
    chunked.feed(head("Host: x") + head("Transfer-Encoding: chunked", line=b"POST / HTTP/1.1"))
    assert chunked.lost and not chunked.between and chunked.requests == 1
    chunked.feed(head("Host: x"))
    assert chunked.lost and chunked.requests == 1

    endless = Framing()
    endless.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20_000)
    assert endless.lost and not endless.between


# --- a connection with a lane (node.runtime.httpserve), over a real socket -----------


class FixedLane:
    """Answers ``/q/ok`` with fixed bytes, raises for ``/q/boom``, leaves the rest."""

    prefix = b"/q/"

    def answer(
        self,
        target: bytes,
        bodiless: bool,
        if_none_match: bytes | None,
        fields: bytes,
        peer: str | None,
    ) -> bytes | None:
        if target == b"/q/boom":
            raise RuntimeError("a bug in the lane")
        if target == b"/q/ok":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlane"
        return None


async def from_aiohttp(request: web.Request) -> web.Response:
    return web.Response(text="aiohttp")


@asynccontextmanager
async def served(lane: QuickAnswers) -> AsyncIterator[int]:
    app = web.Application()
    guard_app(app)
    app[QUICK_ANSWERS] = lane
    app.router.add_get("/{tail:.*}", from_aiohttp)
    runner = web.AppRunner(app)
    await runner.setup()
    metrics = NodeMetrics(CollectorRegistry(), "test", "test")
    acceptor = await serve_http(
        runner,
        tcp_listener("127.0.0.1", 0),
        "http",
        metrics,
        header_timeout_s=5.0,
        keepalive_timeout_s=5.0,
    )
    try:
        yield acceptor.port
    finally:
        acceptor.close()
        await runner.cleanup()


async def bodies(port: int, *batches: bytes, replies: int) -> list[bytes]:
    """Each batch written once the replies to the ones before it are in."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[bytes] = []
    try:
        for batch in batches:
            writer.write(batch)
            for _ in range(batch.count(b"\r\n\r\n")):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
                got.append(await reader.readexactly(length))
    finally:
        writer.close()
    assert len(got) == replies
    return got


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_the_lane_answers_until_aiohttp_has_a_request_then_after_it() -> None:
    async with served(FixedLane()) as port:
        got = await bodies(
            port,
            get("/q/ok") + get("/x") + get("/q/ok"),  # after one for aiohttp: aiohttp's too
            get("/q/ok"),  # aiohttp has answered all: the lane's again
            replies=4,
        )
    assert got == [b"lane", b"aiohttp", b"aiohttp", b"lane"]


async def test_a_failing_lane_leaves_the_connection_to_aiohttp(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(FixedLane()) as port:
        got = await bodies(port, get("/q/ok"), get("/q/boom"), get("/q/ok"), replies=3)
    assert got == [b"lane", b"aiohttp", b"aiohttp"]
    failed = [r for r in caplog.records if "fast lane failed" in r.getMessage()]
    assert len(failed) == 1 and "a bug in the lane" in failed[0].getMessage()

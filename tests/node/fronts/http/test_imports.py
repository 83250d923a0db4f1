"""POST /api/imports over real HTTP against a node with the demo data: results stream
back while the body is still being sent, one enterprise cannot import into another's
prefix, and the body is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from jsonschema import Draft202012Validator

from node.app import Node
from node.fronts.http.openapi_imports import IMPORT_LINE
from node.templates.shipped import ROLL
from tests.node.bulk_support import roll_fields, roll_handle
from tests.node.http_support import A, Api, B, Reply, StartNode, admin_of, check_openapi

NDJSON = {"Content-Type": "application/x-ndjson"}
LINE = Draft202012Validator(IMPORT_LINE)


def record(n: int, prefix: str = "88.118.2", **changes: str) -> bytes:
    fields = {**roll_fields(n), **changes}
    line = {"handle": roll_handle(n, prefix), "template": ROLL.handle, "fields": fields}
    return orjson.dumps(line) + b"\n"


def base(node: Node) -> str:
    return f"http://127.0.0.1:{node.http_port}"


async def post(
    node: Node, body: Any, headers: dict[str, str], query: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base(node)}/api/imports{query}", data=body, headers=headers) as resp,
    ):
        text = await resp.text()
        if resp.status != 200:  # an ErrorReply, as documented
            check_openapi("POST", "/api/imports", Reply(resp.status, resp.headers, text))
            return resp.status, [orjson.loads(text)]
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        return resp.status, documented([orjson.loads(line) for line in text.splitlines()])


def documented(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each streamed line is one of the documented kinds."""
    for line in lines:
        LINE.validate(line)
    return lines


async def test_results_stream_while_the_body_is_still_coming(start_http_node: StartNode) -> None:
    node = await start_http_node(import_chunk_rows=50)
    first_chunk_seen = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"".join(record(n) for n in range(50))  # one whole chunk
        # The rest only once the first chunk's progress line came back: a server that
        # read the whole body before answering would wait here for ever.
        await asyncio.wait_for(first_chunk_seen.wait(), 60)
        yield record(50, widthCm="900") + record(51, prefix="88.118.3") + record(52)

    lines: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base(node)}/api/imports?job=stream-1", data=body(), headers={**NDJSON, **admin_of(A)}
        ) as resp,
    ):
        assert resp.status == 200
        async for raw in resp.content:
            lines.append(orjson.loads(raw))
            if lines[-1]["type"] == "progress":
                first_chunk_seen.set()
    assert [x["type"] for x in documented(lines)] == [
        "progress",
        "rejected",
        "rejected",
        "progress",
        "summary",
    ]
    assert lines[0] == {
        "type": "progress",
        "throughLine": 50,
        "rows": 50,
        "loaded": 50,
        "existing": 0,
        "rejected": 0,
    }
    width, foreign = lines[1], lines[2]
    assert (width["line"], width["handle"]) == (51, roll_handle(50))
    assert width["problems"] == [
        {"field": "widthCm", "index": 2006, "value": "900", "rule": "above the maximum 400 cm"}
    ]
    assert (foreign["line"], foreign["handle"]) == (52, roll_handle(51, "88.118.3"))
    assert "300:88.118.2/ADMIN is not an admin of prefix 88.118.3" in foreign["reason"]
    summary = lines[-1]
    assert (summary["job"], summary["loaded"], summary["rejected"], summary["state"]) == (
        "stream-1",
        51,
        2,
        "done",
    )
    api = Api(aiohttp.ClientSession(), base(node))
    try:
        got = (await api.get(f"/api/handles/{roll_handle(52)}")).json
        types = {v["type"] for v in got["values"]}
        assert {"TEMPLATE", "rollNumber", "HS_SIGNATURE"} <= types  # signed by the node
        missing = await api.get(f"/api/handles/{roll_handle(51, '88.118.3')}")
        assert missing.status == 404
    finally:
        await api.session.close()


async def test_enterprises_import_only_under_their_own_prefixes(http_node: Node) -> None:
    mixed = record(1) + record(2, prefix="88.118.3") + record(3)
    status, lines = await post(http_node, mixed, {**NDJSON, **admin_of(B)}, "?job=b-1")
    assert status == 200
    rejected = [x for x in lines if x["type"] == "rejected"]
    assert [x["line"] for x in rejected] == [1, 3]
    assert all("is not an admin of prefix 88.118.2" in x["reason"] for x in rejected)
    assert lines[-1]["loaded"] == 1 and lines[-1]["rejected"] == 2
    # The same job id, resumed by another enterprise's admin: not theirs.
    status, reply = await post(http_node, mixed, {**NDJSON, **admin_of(A)}, "?job=b-1")
    assert status == 409 and "belongs to another admin" in reply[0]["message"]
    # Sent again by its owner: done already, nothing happens twice.
    status, lines = await post(http_node, mixed, {**NDJSON, **admin_of(B)}, "?job=b-1")
    assert lines[-1]["resumed"] is True and lines[-1]["thisRun"]["rows"] == 0


async def test_refusals_before_the_stream(start_http_node: StartNode) -> None:
    node = await start_http_node(import_max_bytes=2000)
    body = b"".join(record(n) for n in range(10))  # ~6 KB
    assert len(body) > 2000
    status, reply = await post(node, body, {**NDJSON, **admin_of(A)})
    assert status == 413 and "import_max_bytes" in reply[0]["message"]
    status, reply = await post(node, record(1), NDJSON)
    assert status == 401
    status, reply = await post(node, record(1), {"Content-Type": "text/csv", **admin_of(A)})
    assert status == 415
    status, reply = await post(node, record(1), {**NDJSON, **admin_of(A)}, "?job=a%20b")
    assert status == 400

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: found out on the way
        for n in range(10):
            yield record(n)

    status, lines = await post(node, chunked(), {**NDJSON, **admin_of(A)})
    assert status == 200 and lines[-1]["type"] == "error"
    assert "exceeds 2000 bytes" in lines[-1]["message"]

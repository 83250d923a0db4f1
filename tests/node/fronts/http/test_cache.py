"""The HTTP front's reply cache (node/http/hot.py) over real HTTP against a real node
with the demo data: anonymous ``GET /api/handles/...`` replies kept and served again,
JSONP wrapped per request, ``pretty`` kept apart, credentials and ``auth=true`` never
answered from it, writes seen at once. Every reply is checked against the OpenAPI
document (``Api``); hits are proved by the node's counters, and by data changed in
PostgreSQL behind the cache's back.
"""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from node.app import Node
from node.client.native import NativeClient
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from tests.node.http_support import (
    A_HANDLE,
    A,
    Api,
    Reply,
    admin_of,
    basic,
    url_value,
)
from tests.node.native_support import notifications_off, settle

ROLL = "/api/handles/" + A_HANDLE
ROLL_KEY = A_HANDLE.upper()
ADMIN = "/api/handles/88.118.2/ADMIN"
# Headers a hit must send exactly as the full path did (Date and the like may differ).
KEPT_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Cache-Control",
    "X-Content-Type-Options",
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
)


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def hits(node: Node) -> float:
    return sample(node, "idnode_cache_hits_total", front="http", op="resolution")


def misses(node: Node) -> float:
    return sample(node, "idnode_cache_misses_total", front="http", op="resolution")


def reads(node: Node) -> float:
    return sample(node, "idnode_cache_registry_reads_total")


def served(node: Node, rc: int = 1) -> float:
    return sample(node, "idnode_requests_total", front="http", op="resolution", rc=str(rc))


def headers(reply: Reply) -> dict[str, str | None]:
    return {name: reply.headers.get(name) for name in KEPT_HEADERS}


def urls(reply: Reply) -> list[str]:
    return [v["data"]["value"] for v in reply.json["values"] if v["type"] == "URL"]


class Counts:
    """Hits, misses and registry reads since it was made."""

    def __init__(self, node: Node):
        self.node = node
        self.start = (hits(node), misses(node), reads(node))

    def __call__(self) -> tuple[float, float, float]:
        now = (hits(self.node), misses(self.node), reads(self.node))
        return tuple(b - a for a, b in zip(self.start, now, strict=False))  # type: ignore[return-value]


@pytest.fixture
async def node(http_node: Node) -> Node:
    """The demo node once it has heard the notifications of its own demo writes."""
    await settle(http_node)
    return http_node


async def sql_change_unnotified(node: Node, key: str, values: list[HandleValue]) -> None:
    """Change a row behind the cache's back: the notify trigger off for this one
    transaction, so no node hears of it. Then a notification as a barrier: they arrive
    in commit order, so once that one is heard any of the change would have been."""
    assert node.db is not None and node.listener is not None
    before = node.listener.notifications
    conn = await asyncpg.connect(node.db.dsn)
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE handles DISABLE TRIGGER handles_notify_update")
            status = await conn.execute(
                'UPDATE handles SET "values" = $1, version = version + 1 WHERE handle_key = $2',
                encode_values(values),
                key,
            )
            assert status == "UPDATE 1"
            await conn.execute("ALTER TABLE handles ENABLE TRIGGER handles_notify_update")
    finally:
        await conn.close()
    await settle(node)
    assert node.listener.notifications == before + 1  # the barrier only


# --- hits ---------------------------------------------------------------------------------


async def test_anonymous_get_twice_is_a_hit_with_the_same_reply(node: Node, api: Api) -> None:
    counts = Counts(node)
    first = await api.get(ROLL)
    assert first.status == 200 and counts() == (0, 1, 1)
    second = await api.get(ROLL)
    assert counts() == (1, 1, 1)  # no registry read
    assert second.text == first.text
    assert headers(second) == headers(first)
    assert second.headers["Content-Type"] == "application/json; charset=utf-8"
    assert second.headers["Cache-Control"] == "public, max-age=86400"
    assert served(node) == 2  # the middleware counts hits like any request
    # Same handle in another spelling: its own entry (the reply echoes the spelling),
    # answered from the same row.
    lower = await api.get("/api/handles/" + A_HANDLE.lower())
    assert lower.json["handle"] == A_HANDLE.lower() and counts() == (1, 2, 1)
    # "No value matches" (RC 200) is kept as well.
    first = await api.get(ROLL + "?index=9999")
    second = await api.get(ROLL + "?index=9999")
    assert (first.status, first.json["responseCode"]) == (200, 200)
    assert second.text == first.text and headers(second) == headers(first)
    assert counts() == (2, 3, 1)
    assert served(node, ResponseCode.VALUES_NOT_FOUND) == 2


async def test_jsonp_hits_wrap_the_kept_json_per_request(node: Node, api: Api) -> None:
    counts = Counts(node)
    plain = await api.get(ROLL + "?index=1")
    one = await api.get(ROLL + "?index=1&callback=app.one")
    other = await api.get(ROLL + "?callback=$other_2&index=1")  # anywhere in the query
    assert counts() == (2, 1, 1)
    for reply, name in ((one, "app.one"), (other, "$other_2")):
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/javascript; charset=utf-8"
        assert reply.text == f"/**/{name}({plain.text});"
        assert reply.headers["Cache-Control"] == plain.headers["Cache-Control"]
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert [v["index"] for v in plain.json["values"]] == [1]
    # A JSONP miss keeps the bare JSON: JSONP hits wrap it, a plain request gets JSON.
    jsonp_miss = await api.get(ROLL + "?type=URL&callback=cb")
    assert counts() == (2, 2, 1)
    jsonp_hit = await api.get(ROLL + "?type=URL&callback=cb")
    bare = await api.get(ROLL + "?type=URL")
    assert counts() == (4, 2, 1)
    assert jsonp_hit.text == jsonp_miss.text and headers(jsonp_hit) == headers(jsonp_miss)
    assert bare.headers["Content-Type"] == "application/json; charset=utf-8"
    assert f"/**/cb({bare.text});" == jsonp_miss.text


async def test_jsonp_with_no_other_parameter_shares_the_plain_entry(node: Node, api: Api) -> None:
    """``?callback=x`` minus the callback is the bare path: the same entry as a GET
    without a query (the key is the raw path and query minus the callback)."""
    counts = Counts(node)
    plain = await api.get(ROLL)
    wrapped = await api.get(ROLL + "?callback=app.one")
    assert wrapped.text == f"/**/app.one({plain.text});"
    assert wrapped.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert counts() == (1, 1, 1), (
        "GET ?callback=app.one after a plain GET of the same handle was not a hit "
        f"(hits, misses, reads = {counts()}): node/http/hot.py shape_of keys it as "
        "'<path>?' (query emptied by removing the callback), the plain GET as '<path>'"
    )


async def test_jsonp_reply_is_the_same_on_a_miss_and_a_hit(node: Node, api: Api) -> None:
    """Whatever the full path takes for a JSONP callback (the decoded query: here a
    percent-encoded parameter name), a hit for the same request must wrap alike."""
    first = await api.get(ROLL + "?%63allback=cb")
    second = await api.get(ROLL + "?%63allback=cb")
    assert first.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert first.text.startswith("/**/cb(")
    assert (second.headers["Content-Type"], second.text) == (
        first.headers["Content-Type"],
        first.text,
    ), (
        "the second identical GET ?%63allback=cb was answered from the cache without the "
        "JSONP wrapper: node/http/hot.py shape_of looks for 'callback' in the raw query, "
        "the full path reads the decoded one"
    )


async def test_pretty_is_a_separate_entry(node: Node, api: Api) -> None:
    counts = Counts(node)
    plain = await api.get(ROLL)
    pretty = await api.get(ROLL + "?pretty=true")
    assert counts() == (0, 2, 1)  # not answered from the compact entry
    again = await api.get(ROLL + "?pretty=true")
    assert counts() == (1, 2, 1)
    assert again.text == pretty.text and headers(again) == headers(pretty)
    assert pretty.text.startswith('{\n  "responseCode": 1,\n  "handle": ')
    assert pretty.text == orjson.dumps(plain.json, option=orjson.OPT_INDENT_2).decode()
    compact = await api.get(ROLL)
    assert compact.text == plain.text and "\n" not in compact.text and counts() == (2, 2, 1)
    wrapped = await api.get(ROLL + "?pretty=true&callback=show")
    assert wrapped.text == f"/**/show({pretty.text});" and counts() == (3, 2, 1)


# --- bypasses -------------------------------------------------------------------------------


async def test_requests_with_authorization_never_hit(node: Node, api: Api) -> None:
    counts = Counts(node)
    anonymous = await api.get(ADMIN)
    assert [v["index"] for v in anonymous.json["values"]] == [
        2,
        100,
        400,
    ]  # HS_SECKEY is not public
    assert (await api.get(ADMIN)).text == anonymous.text and counts() == (1, 1, 1)
    for _ in range(2):
        admin = await api.get(ADMIN, headers=admin_of(A))
        assert [v["index"] for v in admin.json["values"]] == [2, 100, 300, 400]
        assert admin.headers["Cache-Control"] == "private, no-store"
    assert counts()[0:2] == (1, 1)  # neither answered from nor added to the kept replies
    # Wrong credentials are refused, not answered from the anonymous entry.
    refused = await api.get(ADMIN, headers=basic("300:88.118.2/ADMIN", "wrong"))
    assert (refused.status, refused.json["responseCode"]) == (401, 403) and counts()[0] == 1
    # An unsupported scheme, too: any Authorization header takes the full path.
    odd = await api.get(ADMIN, headers={"Authorization": "Digest abc"})
    assert odd.status == 403 and counts()[0] == 1
    forged = await api.get(ADMIN, headers={"Authorization": "Bearer abc"})
    assert forged.status == 401 and counts()[0] == 1
    # Anonymous callers still get the public values, from the cache.
    again = await api.get(ADMIN)
    assert again.text == anonymous.text and counts()[0] == 2
    assert "300" not in [str(v["index"]) for v in again.json["values"]]


AUTHORITATIVE = [
    "?auth=true",
    "?auth",
    "?auth=yes",
    "?pretty&auth=1",
    "?index=1&auth=TRUE",
    "?%61uth=true",
]


async def test_auth_true_reads_the_registry(node: Node, api: Api) -> None:
    counts = Counts(node)
    old = await api.get(ROLL)
    assert (await api.get(ROLL)).text == old.text and counts() == (1, 1, 1)
    assert (await api.get(ROLL + "?auth=false")).status == 200  # not authoritative: kept
    assert (await api.get(ROLL + "?auth=false")).text == old.text and counts() == (2, 2, 1)
    old_urls = urls(old)
    changed = [HandleValue(1, "URL", b"https://example.com/changed-in-sql")]
    await sql_change_unnotified(node, ROLL_KEY, changed)
    # The cache did not hear of it: anonymous GETs still get the kept replies...
    for query in ("", "?auth=false"):
        stale = await api.get(ROLL + query)
        assert stale.text == old.text and urls(stale) == old_urls
    assert counts()[0] == 4
    # ...while an authoritative read goes to the registry, every time.
    for query in AUTHORITATIVE * 2:
        fresh = await api.get(ROLL + query)
        assert fresh.status == 200
        assert urls(fresh) == ["https://example.com/changed-in-sql"], (
            f"GET {ROLL}{query} was answered from the cache: {urls(fresh)}"
        )
    assert counts()[0] == 4


# --- writes ---------------------------------------------------------------------------------


async def test_put_through_the_api_is_seen_by_the_next_get(node: Node, api: Api) -> None:
    assert node.handle_port is not None
    native = NativeClient("127.0.0.1", node.handle_port)
    counts = Counts(node)
    for _ in range(2):
        assert urls(await api.get(ROLL)) != ["https://example.com/v2"]
        assert (await api.get(ROLL + "?index=1&callback=cb")).status == 200
        await native.resolve(A_HANDLE, (1,))
    assert counts()[0:2] == (2, 2)  # the native front's hits are counted apart
    assert sample(node, "idnode_cache_hits_total", front="udp", op="resolution") == 1

    assert node.db is not None
    async with notifications_off(node.db.dsn):  # the PUT itself must invalidate
        put = await api.put(
            ROLL + "?index=1", [url_value(1, "https://example.com/v2")], headers=admin_of(A)
        )
        assert put.status == 200, put.text
        after = await api.get(ROLL)
        assert urls(after) == ["https://example.com/v2"]
        jsonp = await api.get(ROLL + "?index=1&callback=cb")
        assert orjson.loads(jsonp.text[len("/**/cb(") : -2])["values"] == after.json["values"][:1]
        reply = await native.resolve(A_HANDLE, (1,))
        assert isinstance(reply.body, ResolutionReply)
        assert [v.data for v in reply.body.values] == [b"https://example.com/v2"]
        # The new record is kept in turn.
        before = hits(node)
        assert (await api.get(ROLL)).text == after.text and hits(node) == before + 1

        deleted = await api.delete(ROLL, headers=admin_of(A))
        assert deleted.status == 200, deleted.text
        gone = await api.get(ROLL)
        assert (gone.status, gone.json["responseCode"]) == (404, 100)
        assert (await api.get(ROLL + "?index=1")).status == 404

        # A handle created by PUT ends its kept not-found.
        path = "/api/handles/88.118.2/CACHE-NEW"
        for _ in range(2):
            r = await api.get(path)
            assert (r.status, r.json["responseCode"]) == (404, 100)
        created = await api.put(
            path, [url_value(1, "https://example.com/new")], headers=admin_of(A)
        )
        assert created.status in (200, 201), created.text
        r = await api.get(path)
        assert r.status == 200 and urls(r) == ["https://example.com/new"]

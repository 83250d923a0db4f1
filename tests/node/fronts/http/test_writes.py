"""PUT and DELETE semantics over real HTTP: overwrite, idempotent create, index=
partial updates, mintNewSuffix, deletes with index, history, atomicity and the
bad-input table (400 + a Handle response code + a message; nothing written)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.node.http_support import (
    A,
    Api,
    admin_of,
    admin_value,
    db_state,
    history_of,
    url_value,
)

H = "/api/handles/88.118.2/WRITE-1"


async def _values(api: Api, path: str) -> dict[int, Any]:
    # The node's HS_SIGNATURE (index 400) is tested in test_signing.py.
    return {
        v["index"]: v["data"]["value"]
        for v in (await api.get(path)).json["values"]
        if v["type"] != "HS_SIGNATURE"
    }


async def test_create_overwrite_and_history(api: Api, database_url: str) -> None:
    rec = [admin_value("88.118.2"), url_value(1, "https://example.com/v1")]
    r = await api.put(H, rec, headers=admin_of(A))
    assert (r.status, r.json) == (200, {"responseCode": 1, "handle": "88.118.2/WRITE-1"})
    rec2 = [admin_value("88.118.2"), url_value(1, "https://example.com/v2"), url_value(2, "x")]
    assert (
        await api.put(H, {"handle": "88.118.2/write-1", "values": rec2}, headers=admin_of(A))
    ).status == 200
    assert await _values(api, H) == {
        1: "https://example.com/v2",
        2: "x",
        100: rec[0]["data"]["value"],
    }
    assert await history_of(database_url, "88.118.2/WRITE-1") == [
        ("create", "300:88.118.2/ADMIN"),
        ("modify", "300:88.118.2/ADMIN"),
    ]


async def test_create_only_is_idempotent_and_conflicts(api: Api, database_url: str) -> None:
    rec = [admin_value("88.118.2"), url_value(1, "https://example.com/once")]
    r = await api.put(H + "?overwrite=false", rec, headers=admin_of(A))
    assert r.status == 201
    state = await db_state(database_url)
    # A client that timed out retries: the same content is success, and nothing changes.
    r = await api.put(H + "?overwrite=false", rec, headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (201, 1)
    assert await db_state(database_url) == state
    r = await api.put(
        H + "?overwrite=false", [url_value(1, "https://example.com/other")], headers=admin_of(A)
    )
    assert (r.status, r.json["responseCode"]) == (409, 101)
    assert await db_state(database_url) == state


async def test_index_partial_updates(api: Api, database_url: str) -> None:
    await api.put(
        H, [admin_value("88.118.2"), url_value(1, "a"), url_value(2, "b")], headers=admin_of(A)
    )
    r = await api.put(H + "?index=2", [url_value(2, "b2")], headers=admin_of(A))
    assert r.status == 200
    r = await api.put(
        H + "?index=3&index=4", [url_value(3, "c"), url_value(4, "d")], headers=admin_of(A)
    )
    assert r.status == 200
    r = await api.put(
        H + "?index=various", {"index": 5, "type": "URL", "data": "e"}, headers=admin_of(A)
    )
    assert r.status == 200
    assert {k: v for k, v in (await _values(api, H)).items() if k < 100} == {
        1: "a",
        2: "b2",
        3: "c",
        4: "d",
        5: "e",
    }
    state = await db_state(database_url)
    r = await api.put(H + "?index=1&overwrite=false", [url_value(1, "z")], headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (409, 201)
    r = await api.put(
        H + "?index=1&overwrite=false", [url_value(1, "a")], headers=admin_of(A)
    )  # same: fine
    assert r.status == 201
    r = await api.put(H + "?index=6", [url_value(7, "mismatch")], headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 202) and "index=" in r.json["message"]
    r = await api.put(
        "/api/handles/88.118.2/NOT-THERE?index=1", [url_value(1, "a")], headers=admin_of(A)
    )
    assert (r.status, r.json["responseCode"]) == (404, 100)
    assert await db_state(database_url) == state


async def test_mint_new_suffix(api: Api) -> None:
    r = await api.put(
        "/api/handles/88.118.2/ROLL-?mintNewSuffix=true",
        [admin_value("88.118.2"), url_value(1, "m")],
        headers=admin_of(A),
    )
    assert r.status == 201
    minted = r.json["handle"]
    assert re.fullmatch(
        r"88\.118\.2/ROLL-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        minted,
    )
    assert (await api.get("/api/handles/" + minted)).status == 200
    r = await api.put(
        "/api/handles/88.118.2/?mintNewSuffix", [url_value(1, "m")], headers=admin_of(A)
    )
    assert (
        r.status == 201 and r.json["handle"].startswith("88.118.2/") and r.json["handle"] != minted
    )


async def test_delete_values_and_handle(api: Api, database_url: str) -> None:
    await api.put(
        H,
        [admin_value("88.118.2"), url_value(1, "a"), url_value(2, "b"), url_value(3, "c")],
        headers=admin_of(A),
    )
    r = await api.delete(H + "?index=2&index=3", headers=admin_of(A))
    assert (r.status, r.json) == (200, {"responseCode": 1, "handle": "88.118.2/WRITE-1"})
    assert set(await _values(api, H)) == {1, 100}
    r = await api.delete(H + "?index=9", headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 200)
    r = await api.delete(H, headers=admin_of(A))
    assert r.status == 200
    assert (await api.get(H)).status == 404
    assert (await api.delete(H, headers=admin_of(A))).status == 404
    actions = [a for a, _ in await history_of(database_url, "88.118.2/WRITE-1")]
    assert actions == ["create", "modify", "delete"]


async def test_multi_value_put_is_atomic(api: Api, database_url: str) -> None:
    await api.put(H, [admin_value("88.118.2"), url_value(1, "keep")], headers=admin_of(A))
    state = await db_state(database_url)
    bad = [
        admin_value("88.118.2"),
        url_value(1, "new"),
        url_value(2, "new"),
        {"index": 3, "type": "URL", "data": {"format": "hex", "value": "xyz"}},
    ]
    r = await api.put(H, bad, headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 202) and "value 3" in r.json["message"]
    assert await db_state(database_url) == state
    assert (await _values(api, H))[1] == "keep"


def _big(n: int) -> list[dict[str, Any]]:
    return [url_value(i + 1, "u") for i in range(n)]


JSON = {"Content-Type": "application/json"}
BAD_INPUT = [
    # (path suffix, raw body, extra headers, status, rc, message fragment)
    ("88.118.2/BAD", b"[{", JSON, 400, 4, "not valid JSON"),
    ("88.118.2/BAD", b'"just a string"', JSON, 400, 4, "array"),
    ("88.118.2/BAD", b'{"foo": 1}', JSON, 400, 4, "values"),
    ("88.118.2/BAD", b"", JSON, 400, 4, "empty"),
    ("88.118.2/BAD", b'[{"index":"one","type":"URL","data":"x"}]', JSON, 400, 202, "index"),
    (
        "88.118.2/BAD",
        b'[{"index":1,"type":"URL","data":{"format":"nope","value":"x"}}]',
        JSON,
        400,
        202,
        "nope",
    ),
    (
        "88.118.2/BAD",
        b'[{"index":1,"type":"URL","data":"a"},{"index":1,"type":"URL","data":"b"}]',
        JSON,
        400,
        202,
        "more than once",
    ),
    (
        "88.118.2/BAD",
        b'[{"index":1,"type":"URL","data":"a","permissions":"11"}]',
        JSON,
        400,
        202,
        "permissions",
    ),
    ("88.118.2/BAD", b'[{"index":1,"type":"","data":"a"}]', JSON, 400, 202, "type"),
    ("88.118.2/BAD", b'[{"index":300,"type":"HS_SECKEY","data":""}]', JSON, 400, 202, "empty"),
    (
        "88.118.2/BAD",
        b'[{"index":1,"type":"URL","data":"a"}]',
        {"Content-Type": "text/plain"},
        415,
        4,
        "Content-Type",
    ),
    ("88.118.2/BAD", b'{"handle":"88.118.2/OTHER","values":[]}', JSON, 400, 4, "names handle"),
    ("88.118.2/BAD?overwrite=perhaps", b"[]", JSON, 400, 4, "overwrite"),
    ("88.118.2/BAD?index=x", b"[]", JSON, 400, 4, "index"),
    ("88.118.2", b'[{"index":1,"type":"URL","data":"a"}]', JSON, 400, 102, "no '/'"),
    (
        "88.118.2/A%09B",
        b'[{"index":1,"type":"URL","data":"a"}]',
        JSON,
        400,
        102,
        "control character",
    ),
    ("88.118.2/%FF", b'[{"index":1,"type":"URL","data":"a"}]', JSON, 400, 102, "UTF-8"),
    ("88..118/X", b'[{"index":1,"type":"URL","data":"a"}]', JSON, 400, 102, "empty segment"),
    (
        "99.9/X",
        b'[{"index":1,"type":"URL","data":"a"}]',
        JSON,
        400,
        301,
        "prefix 99.9 is not registered on this node",
    ),
]


@pytest.mark.parametrize("path, body, headers, status, rc, fragment", BAD_INPUT)
async def test_bad_input_is_refused_and_nothing_written(
    api: Api,
    database_url: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    rc: int,
    fragment: str,
) -> None:
    before = await db_state(database_url)
    r = await api.call("PUT", "/api/handles/" + path, raw=body, headers={**admin_of(A), **headers})
    assert (r.status, r.json["responseCode"]) == (status, rc), r.text
    assert fragment in r.json["message"]
    assert await db_state(database_url) == before


async def test_limits_too_many_values_and_oversized_body(
    start_http_node: Any, database_url: str
) -> None:
    import aiohttp

    # Unsigned: a 1000-value record cannot carry an HS_SIGNATURE (test_signing.py).
    node = await start_http_node(sign_records=False)
    async with aiohttp.ClientSession() as session:
        await _check_limits(Api(session, f"http://127.0.0.1:{node.http_port}"), database_url)


async def _check_limits(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    r = await api.put("/api/handles/88.118.2/BIG", _big(1001), headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 202) and "1000" in r.json["message"]
    huge = [{"index": 1, "type": "NOTE", "data": "x" * (1024 * 1024)}]
    r = await api.put("/api/handles/88.118.2/BIG", huge, headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (413, 4) and "http_max_body_bytes" in r.json[
        "message"
    ]
    # A partial update that would push the record over the limit is refused too.
    full = [admin_value("88.118.2"), *(url_value(i, "u") for i in range(1000, 1999))]  # 1000 values
    assert (await api.put("/api/handles/88.118.2/BIG", full, headers=admin_of(A))).status == 200
    mid = await db_state(database_url)
    r = await api.put(
        "/api/handles/88.118.2/BIG?index=various",
        [url_value(i, "u") for i in range(2000, 2003)],
        headers=admin_of(A),
    )
    assert (r.status, r.json["responseCode"]) == (400, 202)
    assert await db_state(database_url) == mid != before


async def test_small_body_limit_setting(start_http_node: Any) -> None:
    import aiohttp

    node = await start_http_node(http_max_body_bytes=256)
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        r = await api.put("/api/handles/88.118.2/S", [url_value(1, "x" * 300)], headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (413, 4) and "256 bytes" in r.json["message"]

        # chunked (no Content-Length): still cut at the limit
        async def chunks() -> Any:
            yield b'[{"index":1,"type":"URL","data":"'
            yield b"y" * 400
            yield b'"}]'

        async with session.put(
            api.url("/api/handles/88.118.2/S"),
            data=chunks(),
            headers={**admin_of(A), "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413

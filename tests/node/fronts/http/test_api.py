"""The REST API over real HTTP against a real node: resolution, every data format, the
status mapping, paths with '/' and UTF-8, JSONP, pretty, CORS, listing, caching."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from protocol.handle import parse_handle
from protocol.jsonvalues import site_to_json, values_from_json
from protocol.keys import encode_public_key, public_key_to_jwk
from tests.node.http_support import (
    A_HANDLE,
    OPERATOR,
    A,
    Api,
    B,
    admin_of,
    admin_value,
    basic,
    url_value,
)

ROLL = "/api/handles/" + A_HANDLE


async def test_resolution_shape_and_echo(api: Api) -> None:
    r = await api.get("/api/handles/88.118.2/roll-2026-000123")  # lookup folds ASCII case
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json
    assert list(body) == ["responseCode", "handle", "values"]
    assert body["responseCode"] == 1 and body["handle"] == "88.118.2/roll-2026-000123"  # as asked
    first = body["values"][0]
    assert list(first) == ["index", "type", "data", "ttl", "timestamp"]  # no default permissions
    assert first == {**first, "index": 1, "type": "URL", "ttl": 86400}
    assert all("timestamp" in v and "references" not in v for v in body["values"])
    assert r.headers["Cache-Control"] == "public, max-age=86400"
    assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_index_and_type_filters(api: Api) -> None:
    r = await api.get(ROLL + "?index=1&type=TEMPLATE")
    assert [v["index"] for v in r.json["values"]] == [1, 1001]
    r = await api.get(ROLL + "?type=url.&index=100")  # subtype match, case-insensitive, union
    assert [v["type"] for v in r.json["values"]] == ["URL", "HS_ADMIN"]
    r = await api.get(ROLL + "?index=9999")
    assert (r.status, r.json["responseCode"], r.json["values"]) == (200, 200, [])
    r = await api.get(ROLL + "?index=abc")
    assert (r.status, r.json["responseCode"]) == (400, 4) and "index" in r.json["message"]


@pytest.mark.parametrize(
    "path, handle",
    [
        ("/api/handles/88.118.2%2FROLL-2026-000123", "88.118.2/ROLL-2026-000123"),
        ("/api/handles/88.118.2/ROLL-2026-000123", "88.118.2/ROLL-2026-000123"),
        # a UTF-8 suffix, percent-encoded as browsers send it
        ("/api/handles/88.118.5/%E7%BC%B8%E5%8F%B7-20260315-07", "88.118.5/缸号-20260315-07"),
        # a suffix holding '/', raw or as %2F
        (
            "/api/handles/88.118.3/01/06901234567892/10/LOT2026A",
            "88.118.3/01/06901234567892/10/LOT2026A",
        ),
        (
            "/api/handles/88.118.3/01%2F06901234567892%2F10%2FLOT2026A",
            "88.118.3/01/06901234567892/10/LOT2026A",
        ),
    ],
)
async def test_path_encodings(api: Api, path: str, handle: str) -> None:
    r = await api.get(path)
    assert r.status == 200, r.text
    assert r.json["handle"] == handle


async def test_flag_without_value_is_true_and_pretty_and_jsonp(api: Api) -> None:
    r = await api.get(ROLL + "?index=1&pretty")
    assert r.text.startswith('{\n  "responseCode": 1')
    r = await api.get(ROLL + "?index=1&callback=app.onHandle")
    assert r.headers["Content-Type"].startswith("application/javascript")
    assert r.text.startswith("/**/app.onHandle({") and r.text.endswith("});")
    assert orjson.loads(r.text[len("/**/app.onHandle(") : -2])["responseCode"] == 1
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = await api.get(ROLL + "?publicOnly=maybe")
    assert (r.status, r.json["responseCode"]) == (400, 4)


@pytest.mark.parametrize("callback", ["alert(1)//", "a b", "1abc", "x</script>", "a" * 200, ""])
async def test_jsonp_callback_is_validated(api: Api, callback: str) -> None:
    from urllib.parse import quote

    r = await api.get(ROLL + "?callback=" + quote(callback, safe=""))
    assert r.status == 400 and r.headers["Content-Type"].startswith("application/json")
    assert r.json["responseCode"] == 4 and "callback" in r.json["message"]


async def test_cors_preflight_and_headers(api: Api) -> None:
    r = await api.call(
        "OPTIONS",
        "/api/handles/88.118.2/X",
        headers={
            "Origin": "https://mes.example.com",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = await api.get("/api/handles/88.118.2/NOPE")
    assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_every_format_round_trips(http_node: Node, api: Api) -> None:
    assert http_node.site is not None
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    site = site_to_json(http_node.site.info)
    values = [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com/é"}},
        {"index": 2, "type": "BLOB", "data": {"format": "base64", "value": "AAEC/w=="}},
        {"index": 3, "type": "RAW", "data": {"format": "hex", "value": "00ff10"}},
        admin_value("88.118.2"),
        {
            "index": 200,
            "type": "HS_VLIST",
            "data": {
                "format": "vlist",
                "value": [
                    {"handle": "88.118.2/ADMIN", "index": 300},
                    {"handle": "88.118.5/ADMIN", "index": 300},
                ],
            },
        },
        {"index": 5, "type": "HS_SITE", "data": {"format": "site", "value": site}},
        {
            "index": 6,
            "type": "HS_PUBKEY",
            "data": {"format": "key", "value": public_key_to_jwk(key)},
        },
        {
            "index": 7,
            "type": "NOTE",
            "data": "plain string data",
            "ttl": "2030-01-01T00:00:00Z",
            "permissions": "1111",
            "references": [{"handle": "88.118.2/OTHER", "index": 1}],
        },
    ]
    r = await api.put("/api/handles/88.118.2/FORMATS", values, headers=admin_of(A))
    assert (r.status, r.json) == (200, {"responseCode": 1, "handle": "88.118.2/FORMATS"})
    got = {v["index"]: v for v in (await api.get("/api/handles/88.118.2/FORMATS")).json["values"]}
    assert got[1]["data"] == values[0]["data"]
    assert got[2]["data"] == {"format": "base64", "value": "AAEC/w=="}
    assert got[3]["data"] == {
        "format": "base64",
        "value": base64.b64encode(b"\x00\xff\x10").decode(),
    }
    assert got[100]["data"] == values[3]["data"]
    assert got[200]["data"] == values[4]["data"]
    assert got[5]["data"] == {"format": "site", "value": site}
    assert got[6]["data"]["format"] == "key"
    from protocol.keys import public_key_from_jwk

    assert encode_public_key(public_key_from_jwk(got[6]["data"]["value"])) == encode_public_key(key)
    assert got[7]["ttl"] == "2030-01-01T00:00:00Z" and got[7]["permissions"] == "1111"
    assert got[7]["references"] == [{"handle": "88.118.2/OTHER", "index": 1}]
    # A GET reply is a valid PUT body: copy the record through the API.
    r = await api.put("/api/handles/88.118.2/FORMATS-COPY", list(got.values()), headers=admin_of(A))
    assert r.status == 200
    copy = (await api.get("/api/handles/88.118.2/FORMATS-COPY")).json["values"]

    # Same data, except the HS_SIGNATURE: the node re-signs the copy (for its own handle).
    def unsigned(vs: Any) -> list[Any]:
        return [v["data"] for v in vs if v["type"] != "HS_SIGNATURE"]

    assert unsigned(copy) == unsigned(got.values())


async def test_status_mapping_table(http_node: Node, api: Api) -> None:
    """Every response code the API can produce, by a real request, with its status."""
    op = basic("300:88.118/ADMIN", OPERATOR.admin_secret)
    site = site_to_json(http_node.site.info) if http_node.site else None
    cases = []

    async def case(rc: int, status: int, reply: object) -> None:
        cases.append((rc, status))
        assert (reply.status, reply.json["responseCode"]) == (status, rc), reply.text  # type: ignore[attr-defined]

    await case(1, 200, await api.get(ROLL))
    await case(
        1,
        201,
        await api.put(
            "/api/handles/88.118.2/S-1?overwrite=false", [url_value(1, "u")], headers=admin_of(A)
        ),
    )
    await case(200, 200, await api.get(ROLL + "?index=7777"))
    await case(100, 404, await api.get("/api/handles/88.118.2/NO-SUCH"))
    await case(
        101,
        409,
        await api.put(
            "/api/handles/88.118.2/S-1?overwrite=false", [url_value(1, "v")], headers=admin_of(A)
        ),
    )
    await case(
        201,
        409,
        await api.put(
            "/api/handles/88.118.2/S-1?index=1&overwrite=false",
            [url_value(1, "v")],
            headers=admin_of(A),
        ),
    )
    await case(
        4,
        400,
        await api.put(
            "/api/handles/88.118.2/S-2",
            raw=b"[{",
            headers={**admin_of(A), "Content-Type": "application/json"},
        ),
    )
    await case(102, 400, await api.get("/api/handles/88.118.2"))
    await case(
        202,
        400,
        await api.put(
            "/api/handles/88.118.2/S-2",
            [{"index": 1, "type": "URL", "data": {"format": "nope", "value": "x"}}],
            headers=admin_of(A),
        ),
    )
    await case(
        200, 400, await api.delete("/api/handles/88.118.2/S-1?index=42", headers=admin_of(A))
    )
    await case(301, 400, await api.get("/api/handles/99.1/X"))
    await case(402, 401, await api.put("/api/handles/88.118.2/S-2", [url_value(1, "u")]))
    await case(400, 403, await api.delete("/api/handles/88.118.2/S-1", headers=admin_of(B)))
    await case(403, 401, await api.get(ROLL, headers=basic("300:88.118.2/ADMIN", "wrong")))
    await case(404, 403, await api.get(ROLL, headers={"Authorization": "Basic !!!"}))
    # 401: an admin listed with too few bits (only ADD_VALUE) on a handle of A.
    partial = {
        "index": 101,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": "88.118.3/ADMIN", "index": 300, "permissions": "000001000000"},
        },
    }
    await api.put("/api/handles/88.118.2/S-1?index=101", [partial], headers=admin_of(A))
    await case(
        1,
        200,
        await api.put(
            "/api/handles/88.118.2/S-1?index=2", [url_value(2, "b-added")], headers=admin_of(B)
        ),
    )
    await case(401, 403, await api.delete("/api/handles/88.118.2/S-1", headers=admin_of(B)))
    # 303: a derived prefix delegated by its parent's HS_SITE.PREFIX.
    # The node's own prefix record: an operator's change (idnode handle put), not an admin's.
    delegation = [
        admin_value("88.118"),
        {"index": 2, "type": "HS_SITE.PREFIX", "data": {"format": "site", "value": site}},
    ]
    assert (await api.put("/api/handles/0.NA/88.118", delegation, headers=op)).status == 403
    assert http_node.writes is not None
    await http_node.writes.put(
        parse_handle("0.NA/88.118"),
        values_from_json(delegation),
        actor="cli:operator",
        now=http_node.now(),
        source="cli",
    )
    await case(303, 300, await api.get("/api/handles/0.NA/88.118.77"))
    # 3: the registry goes away (its pool is closed under the running node).
    assert http_node.db is not None
    await http_node.db.registry.pool.close()
    # A cached record is still served; an authoritative read (auth=true) needs the registry.
    assert (await api.get(ROLL)).status == 200
    await case(3, 503, await api.get(ROLL + "?auth=true"))
    assert {rc for rc, _ in cases} >= {
        1,
        3,
        4,
        100,
        101,
        102,
        200,
        201,
        202,
        301,
        303,
        400,
        401,
        402,
        403,
        404,
    }


def test_status_function_covers_the_guide_table() -> None:
    from node.fronts.http.errors import http_status

    table = {
        1: 200,
        100: 404,
        101: 409,
        201: 409,
        4: 400,
        102: 400,
        202: 400,
        301: 400,
        402: 401,
        400: 403,
        401: 403,
        403: 403,
        404: 403,
        3: 503,
        7: 503,
        5: 501,
        302: 300,
        303: 300,
        2: 500,
    }
    assert {rc: http_status(rc) for rc in table} == table
    assert http_status(1, created=True) == 201
    assert http_status(200, resolution=True) == 200 and http_status(200) == 400


async def test_public_only_and_authenticated_reads(api: Api) -> None:
    r = await api.get("/api/handles/88.118.2/ADMIN")
    assert [v["index"] for v in r.json["values"]] == [
        2,
        100,
        400,
    ]  # HS_SECKEY is not public; 400 signs
    r = await api.get("/api/handles/88.118.2/ADMIN?index=300")
    assert (r.status, r.json["responseCode"], r.json["values"]) == (200, 200, [])
    r = await api.get("/api/handles/88.118.2/ADMIN?auth=true", headers=admin_of(A))
    assert [v["index"] for v in r.json["values"]] == [2, 100, 300, 400]
    assert r.json["values"][2]["permissions"] == "1100"
    assert r.headers["Cache-Control"] == "private, no-store"
    r = await api.get("/api/handles/88.118.2/ADMIN?publicOnly", headers=admin_of(A))
    assert [v["index"] for v in r.json["values"]] == [2, 100, 400]
    r = await api.get(
        "/api/handles/88.118.2/ADMIN?publicOnly=false"
    )  # anonymous: still public only
    assert [v["index"] for v in r.json["values"]] == [2, 100, 400]


async def test_cache_control_follows_ttl(api: Api) -> None:
    vals = [{**url_value(1, "a"), "ttl": 120}, {**url_value(2, "b"), "ttl": 3600}]
    await api.put("/api/handles/88.118.2/TTL", vals, headers=admin_of(A))
    r = await api.get("/api/handles/88.118.2/TTL")
    assert r.headers["Cache-Control"] == "public, max-age=120"
    r = await api.get("/api/handles/88.118.2/TTL?index=2")
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    r = await api.get("/api/handles/88.118.2/NONE")
    assert r.headers["Cache-Control"] == "no-store"


async def test_list_handles_pagination(api: Api) -> None:
    for n in range(5):
        await api.put(
            f"/api/handles/88.118.2/LIST-{n}", [url_value(1, f"u{n}")], headers=admin_of(A)
        )
    r = await api.get("/api/handles?prefix=88.118.2", headers=admin_of(A))
    everything = r.json["handles"]
    total = int(r.json["totalCount"])
    assert total == len(everything) >= 5 and "page" not in r.json
    r = await api.get("/api/handles?prefix=0.NA/88.118.2&page=1&pageSize=2", headers=admin_of(A))
    assert r.json == {
        "responseCode": 1,
        "prefix": "0.NA/88.118.2",
        "totalCount": str(total),
        "page": 1,
        "pageSize": 2,
        "handles": everything[2:4],
    }
    r = await api.get("/api/handles?prefix=88.118.2&pageSize=0", headers=admin_of(A))
    assert r.json["handles"] == [] and r.json["totalCount"] == str(total)
    r = await api.get("/api/handles?prefix=88.118.2")
    assert (r.status, r.json["responseCode"]) == (401, 402) and "Basic" in r.headers[
        "WWW-Authenticate"
    ]
    r = await api.get("/api/handles?prefix=88.118.2", headers=admin_of(B))
    assert (r.status, r.json["responseCode"]) == (403, 400)
    r = await api.get("/api/handles?prefix=88.118.2&pageSize=-1", headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 4)
    r = await api.get("/api/handles")
    assert (r.status, r.json["responseCode"]) == (400, 102)


async def test_prefixes_openapi_and_unknown_endpoints(api: Api) -> None:
    r = await api.get("/api/prefixes")
    assert r.status == 200 and {"88.118.2", "88.118.3", "88.119"} <= set(r.json["prefixes"])
    assert "88.118.6" not in r.json["prefixes"]  # awaiting review: not served
    r = await api.get("/api/openapi.json")
    assert r.status == 200 and r.json["openapi"].startswith("3.1")
    r = await api.get("/api/nothing-here")
    assert (r.status, r.json["responseCode"]) == (404, 4)
    r = await api.call("POST", ROLL)
    assert (r.status, r.json["responseCode"]) == (405, 4) and "PUT" in r.headers["Allow"]


async def test_ready_line_and_site_name_the_http_port(
    start_http_node: object, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import re

    caplog.set_level(logging.INFO, logger="idnode.node")
    node = await start_http_node()  # type: ignore[operator]
    line = next(r.getMessage() for r in caplog.records if " ready: " in r.getMessage())
    m = re.search(r"admin=[^ ]+:(\d+) handle=(\d+) http=(\d+) ", line)
    assert m and int(m.group(3)) == node.http_port and int(m.group(2)) == node.handle_port
    http = [i for i in node.site.info.servers[0].interfaces if i.protocol == 2]
    assert [i.port for i in http] == [node.http_port]  # advertised in HS_SITE

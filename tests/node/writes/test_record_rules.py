"""The rules on what a write may carry (registry.recordrules.check_incoming,
protocol.valuecodec.check_value), on every write path of a real node: a record with no
values and a value type holding NUL or another control character are refused, with a
message naming the problem, over the REST API (PUT), native administration over TCP
(CREATE, ADD, MODIFY), batches, bulk import and the CAICT-style endpoints; nothing is
stored. A record written before the rules existed (put in the registry directly) still
resolves, changes and deletes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest

from node.app import Node
from node.client.admin import AdminClient, AdminError, Credentials
from node.demo.dataset import SILK_MILL
from protocol.codes import ResponseCode
from protocol.errors import ValueFormatError
from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.recordrules import EMPTY_RECORD, check_incoming
from tests.node.conftest import tcp_exchange
from tests.node.http_support import A, Api, admin_of, admin_value, db_state
from tests.node.native_support import request_bytes

NATIVE_A = Credentials("88.118.2/ADMIN", 300, secret=SILK_MILL.admin_secret.encode())
NUL_TYPE = "URL\x00X"


def text_value(index: int, type_: str, text: str) -> dict[str, Any]:
    return {"index": index, "type": type_, "data": {"format": "string", "value": text}}


GOOD = text_value(1, "URL", "https://example.com/rules")


def test_check_incoming() -> None:
    check_incoming([HandleValue(1, "URL", b"x")])
    with pytest.raises(ValueFormatError) as err:
        check_incoming([])
    assert err.value.message == EMPTY_RECORD and err.value.response_code == 202
    for bad in ("A\x00B", "A\nB", "A\u200bB", " A"):
        with pytest.raises(ValueFormatError, match=r"^value 3 type "):
            check_incoming([HandleValue(1, "URL", b"x"), HandleValue(3, bad, b"x")])


async def test_rest_put(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    for body, query in (
        ([], ""),
        ({"values": []}, ""),
        ([], "?index=various"),
        ({"values": []}, "?overwrite=false"),
    ):
        r = await api.put(f"/api/handles/88.118.2/RULES-EMPTY{query}", body, headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (400, 202), (body, query, r.text)
        assert r.json["message"] == EMPTY_RECORD
    # An existing record cannot be emptied by a PUT either (DELETE removes it).
    r = await api.put("/api/handles/88.118.2/ROLL-2026-000123", [], headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 202)
    for vtype in (NUL_TYPE, "URL\n", "\x07", "URL\u202e"):
        values = [GOOD, text_value(2, vtype, "x"), admin_value("88.118.2")]
        r = await api.put("/api/handles/88.118.2/RULES-NUL", values, headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (400, 202), vtype
        assert r.json["message"].startswith("value 2 type ") and "U+" in r.json["message"]
    assert await db_state(database_url) == before


async def test_native_admin_over_tcp(http_node: Node, database_url: str) -> None:
    assert http_node.handle_port
    before = await db_state(database_url)
    async with AdminClient("127.0.0.1", http_node.handle_port, NATIVE_A) as c:
        with pytest.raises(AdminError) as err:
            await c.create("88.118.2/RULES-NATIVE", ())
        assert err.value.response_code == ResponseCode.INVALID_VALUE
        assert EMPTY_RECORD in str(err.value)
        bad = (HandleValue(1, "URL", b"https://example.com"), HandleValue(2, NUL_TYPE, b"x"))
        with pytest.raises(AdminError) as err:
            await c.create("88.118.2/RULES-NATIVE", bad)
        assert err.value.response_code == ResponseCode.INVALID_VALUE
        assert "value 2 type 'URL\\x00X' holds U+0000" in str(err.value)
        for call in (c.add, c.modify):
            with pytest.raises(AdminError) as err:
                await call("88.118.2/ROLL-2026-000123", (HandleValue(9, "A\x00", b"x"),))
            assert err.value.response_code == ResponseCode.INVALID_VALUE
            with pytest.raises(AdminError) as err:
                await call("88.118.2/ROLL-2026-000123", ())
            assert err.value.response_code == ResponseCode.INVALID_VALUE
        assert await db_state(database_url) == before
        # The good ones still go through.
        await c.create("88.118.2/RULES-NATIVE", bad[:1])


async def test_batches(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    items = [
        {"op": "create", "handle": "88.118.2/RULES-B1", "values": []},
        {
            "op": "create",
            "handle": "88.118.2/RULES-B2",
            "values": [GOOD, text_value(2, NUL_TYPE, "x")],
        },
        {
            "op": "update",
            "handle": "88.118.2/ROLL-2026-000123",
            "values": [text_value(9, "A\x01", "x")],
        },
    ]
    r = await api.post("/api/batches", {"mode": "items", "items": items}, headers=admin_of(A))
    assert r.status == 200, r.text
    results = r.json["results"]
    assert [(x["status"], x["responseCode"]) for x in results] == [(400, 202)] * 3
    assert "U+0000" in results[1]["message"] and "U+0001" in results[2]["message"]
    assert await db_state(database_url) == before


async def test_bulk_import(http_node: Node, database_url: str) -> None:
    before = await db_state(database_url)
    lines = [
        {"handle": "88.118.2/RULES-I1"},
        {"handle": "88.118.2/RULES-I2", "values": []},
        {"handle": "88.118.2/RULES-I3", "values": [GOOD, text_value(2, NUL_TYPE, "x")]},
    ]
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    headers = {"Content-Type": "application/x-ndjson", **admin_of(A)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{http_node.http_port}/api/imports", data=body, headers=headers
        ) as resp,
    ):
        assert resp.status == 200
        out = [orjson.loads(x) for x in (await resp.text()).splitlines()]
    rejected = {x["line"]: x["reason"] for x in out if x["type"] == "rejected"}
    assert rejected.keys() == {1, 2, 3}, out
    assert rejected[1] == rejected[2] == EMPTY_RECORD
    assert "U+0000" in rejected[3]
    assert out[-1]["loaded"] == 0
    assert await db_state(database_url) == before


async def test_caict_compat(api: Api, database_url: str) -> None:
    r = await api.post(
        "/identity/token", {"username": "300:88.118.2/ADMIN", "password": A.admin_secret}
    )
    bearer = {"Authorization": f"Bearer {r.json['data']['token']}"}
    before = await db_state(database_url)
    r = await api.post(
        "/identityv2/data", {"handle": "88.118.2/RULES-C1", "value": []}, headers=bearer
    )
    assert r.status == 400 and r.json["status"] != 1, r.text
    nul = {"index": 2, "type": NUL_TYPE, "auth": 0, "data": {"format": "string", "value": "x"}}
    r = await api.post(
        "/identityv2/data",
        {"handle": "88.118.2/RULES-C2", "value": [{**GOOD, "auth": 0}, nul]},
        headers=bearer,
    )
    assert r.status == 400 and "U+0000" in r.json["message"], r.text
    r = await api.post(
        "/identityv2/data/batchCreate",
        [
            {"handle": "88.118.2/RULES-C3", "value": [nul]},
            {"handle": "88.118.2/RULES-C4", "value": []},
        ],
        headers=bearer,
    )
    assert r.json["data"]["fail"] == 2, r.text
    assert await db_state(database_url) == before


async def test_records_from_before_the_rules_still_work(http_node: Node, api: Api) -> None:
    """Stored directly, as a registry written by an older node holds them."""
    assert http_node.db is not None and http_node.handle_port
    odd = (
        HandleValue(1, "URL", b"https://example.com/old"),
        HandleValue(2, "NOTE\x00OLD", b"kept"),
        HandleValue(3, " SPACED\u200b", b"kept too"),
    )
    now = datetime.now(UTC)
    await http_node.db.registry.put_handle(
        parse_handle("88.118.2/OLD-ODD"), odd, actor="t", now=now
    )
    await http_node.db.registry.put_handle(
        parse_handle("88.118.2/OLD-EMPTY"), (), actor="t", now=now
    )
    r = await api.get("/api/handles/88.118.2/OLD-ODD")
    assert r.status == 200 and {v["type"] for v in r.json["values"]} >= {
        "NOTE\x00OLD",
        " SPACED\u200b",
    }
    reply = await tcp_exchange(
        "127.0.0.1", http_node.handle_port, request_bytes("88.118.2/OLD-ODD")
    )
    assert b"NOTE\x00OLD" in reply
    # Changing another index keeps the odd values; deleting works.
    r = await api.put(
        "/api/handles/88.118.2/OLD-ODD?index=4",
        [text_value(4, "EMAIL", "a@example.com")],
        headers=admin_of(A),
    )
    assert r.status == 200, r.text
    r = await api.get("/api/handles/88.118.2/OLD-ODD?index=2")
    assert r.json["values"][0]["type"] == "NOTE\x00OLD"
    for handle in ("88.118.2/OLD-ODD", "88.118.2/OLD-EMPTY"):
        r = await api.delete(f"/api/handles/{handle}", headers=admin_of(A))
        assert r.status == 200, r.text
        assert (await api.get(f"/api/handles/{handle}")).status == 404

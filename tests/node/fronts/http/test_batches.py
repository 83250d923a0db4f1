"""POST /api/batches over real HTTP: per-item and atomic modes, idempotent retries,
templates checked per item, enterprises isolated, limits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from node.app import Node
from tests.node.http_support import A, Api, B, admin_of, admin_value, basic, db_state, url_value
from tests.node.templates_support import ROLL_TEMPLATE, roll_body, roll_fields
from tests.node.wait_support import until


def create(handle: str, n: int, **changes: str) -> dict[str, Any]:
    return {"op": "create", "handle": handle, **roll_body(n, **changes)}


async def test_items_mode_writes_each_item_on_its_own(api: Api, database_url: str) -> None:
    items = [create(f"88.118.2/BATCH-{n}", n) for n in range(50)]
    items.append(create("88.118.2/BATCH-BAD", 99, widthCm="wide", productionDate="yesterday"))
    items.append({"op": "create", "handle": "88.118.3/NOT-MINE", **roll_body(100)})
    items.append({"op": "delete", "handle": "88.118.2/NO-SUCH"})
    items.append({"op": "explode", "handle": "88.118.2/X"})
    r = await api.post("/api/batches", {"mode": "items", "items": items}, headers=admin_of(A))
    assert r.status == 200, r.text
    body = r.json
    assert (body["total"], body["succeeded"], body["failed"]) == (54, 50, 4)
    results = body["results"]
    assert all(x["status"] == 201 and x["changed"] for x in results[:50])
    bad = results[50]
    assert (bad["status"], bad["responseCode"], bad["template"]) == (400, 202, ROLL_TEMPLATE)
    assert {(p["field"], p["value"]) for p in bad["problems"]} == {
        ("widthCm", "wide"),
        ("productionDate", "yesterday"),
    }
    assert "not a date" in bad["message"] and "not a decimal" in bad["message"]
    assert (results[51]["status"], results[51]["responseCode"]) == (403, 400)  # B's prefix
    assert (results[52]["status"], results[52]["responseCode"]) == (404, 100)
    assert results[53]["status"] == 400 and "op must be one of" in results[53]["message"]
    r = await api.get("/api/handles/88.118.2/BATCH-7")
    fields = {v["type"]: v["data"]["value"] for v in r.json["values"]}
    assert fields["rollNumber"] == "C2026000007" and fields["TEMPLATE"] == ROLL_TEMPLATE
    assert "HS_SIGNATURE" in fields  # signed like every write

    # A client that timed out sends the same batch again: every create is a success
    # and nothing changes; different content is a per-item 409.
    before = await db_state(database_url)
    again = items[:50]
    again[3] = create("88.118.2/BATCH-3", 3, colour="大红")
    r = await api.post("/api/batches", {"items": again}, headers=admin_of(A))
    assert r.status == 200
    results = r.json["results"]
    assert [x["status"] for x in results[:3]] == [200, 200, 200], results[0]["message"]
    assert not any(x.get("changed") for x in results if x["status"] == 200)
    assert (results[3]["status"], results[3]["responseCode"]) == (409, 101)
    assert await db_state(database_url) == before


async def test_atomic_mode_is_all_or_nothing(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    items = [create(f"88.118.2/ATOM-{n}", n) for n in range(20)]
    items[13] = create("88.118.2/ATOM-13", 13, grade="特等品")  # not one of the grades
    r = await api.post("/api/batches", {"mode": "atomic", "items": items}, headers=admin_of(A))
    assert r.status == 400, r.text
    results = r.json["results"]
    assert results[13]["responseCode"] == 202 and results[13]["problems"][0]["field"] == "grade"
    assert {x["status"] for n, x in enumerate(results) if n != 13} == {424}
    assert "item 13 failed: nothing was written" in r.json["message"]
    assert await db_state(database_url) == before
    items[13] = create("88.118.2/ATOM-13", 13)
    r = await api.post("/api/batches", {"mode": "atomic", "items": items}, headers=admin_of(A))
    assert (r.status, r.json["succeeded"]) == (200, 20)


async def test_update_changes_named_fields_and_keeps_the_rest(api: Api) -> None:
    h = "88.118.2/UPD-1"
    r = await api.post("/api/batches", {"items": [create(h, 1)]}, headers=admin_of(A))
    assert r.json["succeeded"] == 1
    update = {
        "op": "update",
        "handle": h,
        "template": ROLL_TEMPLATE,
        "fields": {"grade": "优等品", "rollLengthM": 99.5},
    }
    delete_some = {"op": "update", "handle": "88.118.2/NOT-THERE", "values": [url_value(1, "u")]}
    r = await api.post("/api/batches", {"items": [update, delete_some]}, headers=admin_of(A))
    assert [x["status"] for x in r.json["results"]] == [200, 404]
    assert r.json["results"][0]["version"] == 2
    values = {
        v["type"]: v["data"]["value"] for v in (await api.get("/api/handles/" + h)).json["values"]
    }
    expected = roll_fields(1, grade="优等品", rollLengthM="99.5")
    assert {k: values[k] for k in expected} == expected  # the other 14 fields kept


async def test_deletes_and_plain_values(api: Api) -> None:
    items = [
        {
            "op": "put",
            "handle": "88.118.2/PLAIN-1",
            "values": [admin_value("88.118.2"), url_value(1, "a")],
        },
        {
            "op": "put",
            "handle": "88.118.2/PLAIN-2",
            "values": [admin_value("88.118.2"), url_value(1, "b")],
        },
    ]
    r = await api.post("/api/batches", {"items": items}, headers=admin_of(A))
    assert r.json["succeeded"] == 2
    items = [
        {"op": "delete", "handle": "88.118.2/PLAIN-1"},
        {"op": "delete", "handle": "88.118.2/PLAIN-2", "indexes": [1]},
        {"op": "delete", "handle": "88.118.2/PLAIN-1"},  # the same handle twice
    ]
    r = await api.post("/api/batches", {"items": items}, headers=admin_of(A))
    assert [x["status"] for x in r.json["results"]] == [200, 200, 400]
    assert "appears twice in the batch" in r.json["results"][2]["message"]
    assert (await api.get("/api/handles/88.118.2/PLAIN-1")).status == 404
    left = (await api.get("/api/handles/88.118.2/PLAIN-2")).json["values"]
    assert 1 not in [v["index"] for v in left] and 100 in [v["index"] for v in left]


async def test_refusals_and_limits(start_http_node: Any, api: Api) -> None:
    body = {"items": [create("88.118.2/L-1", 1)]}
    r = await api.post("/api/batches", body)
    assert (r.status, r.json["responseCode"]) == (401, 402)
    for bad, why in (
        ({"items": []}, "no items"),
        ({"mode": "fast", "items": [1]}, "mode must be one of"),
        ([1, 2], '"items"'),
        ({"items": [7]}, "not a JSON object"),
    ):
        r = await api.post("/api/batches", bad, headers=admin_of(A))
        if r.status == 200:
            assert why in r.json["results"][0]["message"]
        else:
            assert r.status == 400 and why in r.json["message"], r.text
    r = await api.call(
        "POST",
        "/api/batches",
        raw=b'{"items": [',
        headers={**admin_of(A), "Content-Type": "application/json"},
    )
    assert r.status == 400 and "not valid JSON" in r.json["message"]
    small: Node = await start_http_node(batch_max_items=3)
    import aiohttp

    async with aiohttp.ClientSession() as session:
        api2 = Api(session, f"http://127.0.0.1:{small.http_port}")
        items = [create(f"88.118.2/L-{n}", n) for n in range(4)]
        r = await api2.post("/api/batches", {"items": items}, headers=admin_of(A))
        assert r.status == 413 and "at most 3 items" in r.json["message"]
        r = await api2.post("/api/batches", {"items": items[:3]}, headers=admin_of(B))
        assert {x["status"] for x in r.json["results"]} == {403}  # B may not write A's prefix


async def test_a_retry_after_a_lost_reply_writes_nothing_twice(
    api: Api, http_node: Node, database_url: str
) -> None:
    """The client sends a batch and its connection drops before the reply (a gateway
    timeout): it cannot know what was written. Sending the same batch again succeeds
    item by item, and every record exists once, with one history entry."""
    items = [create(f"88.118.2/LOST-{n}", n) for n in range(200)]
    payload = orjson.dumps({"mode": "items", "items": items})
    head = (
        "POST /api/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {admin_of(A)['Authorization']}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )

    def batches_answered() -> float:
        return sum(
            s.value
            for metric in http_node.metrics.registry.collect()
            if metric.name == "idnode_requests"
            for s in metric.samples
            if s.name == "idnode_requests_total" and s.labels.get("op") == "batch"
        )

    before = batches_answered()
    _, writer = await asyncio.open_connection("127.0.0.1", http_node.http_port)
    writer.write(head.encode() + payload)
    await writer.drain()
    await until(lambda: batches_answered() > before)  # the node has answered ...
    writer.close()  # ... and the client is gone without reading it
    await writer.wait_closed()
    r = await api.post("/api/batches", {"mode": "items", "items": items}, headers=admin_of(A))
    assert r.status == 200 and r.json["succeeded"] == 200, r.text
    assert {x["status"] for x in r.json["results"]} == {200}  # all written the first time
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM handles WHERE handle_key LIKE '88.118.2/LOST-%'"
        )
        history = await conn.fetchval(
            "SELECT count(*) FROM handle_history WHERE handle_key LIKE '88.118.2/LOST-%'"
        )
    finally:
        await conn.close()
    assert (stored, history) == (200, 200)


async def test_the_readme_batch_example_does_what_it_says(api: Api) -> None:
    """README "MES registration": the curl example's credentials and body, sent as
    written: the update succeeds, the create is refused naming each problem."""
    text = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## MES registration") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    user, _, secret = re.search(r"-u '([^']+)'", block.group(1)).group(1).rpartition(":")  # type: ignore[union-attr]
    body = orjson.loads(re.search(r"-d '(.*?)'", block.group(1), re.S).group(1))  # type: ignore[union-attr]
    r = await api.post("/api/batches", body, headers=basic(user, secret))
    assert r.status == 200, r.text
    first, second = r.json["results"]
    assert (first["status"], first["changed"]) == (200, True)
    assert (second["status"], second["responseCode"]) == (400, 202)
    fields = {p["field"] for p in second["problems"]}
    assert "widthCm" in fields and "rollNumber" in fields  # wrong, and missing

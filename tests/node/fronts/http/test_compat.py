"""The CAICT-style endpoints (node/fronts/http/compat.py) as an MES integrated with
such a node calls them: a token, then records one at a time and in batches, in the
``{status, message, data}`` envelope with its status codes."""

from __future__ import annotations

from typing import Any

from node.templates.shipped import ROLL
from tests.node.http_support import A, Api, B, db_state
from tests.node.templates_support import ROLL_TEMPLATE, roll_fields


async def token(api: Api, user: str = "300:88.118.2/ADMIN", secret: str = A.admin_secret) -> str:
    r = await api.post("/identity/token", {"username": user, "password": secret})
    assert (r.status, r.json["status"]) == (200, 1), r.text
    assert r.json["data"]["expiresIn"] == 86_400
    return str(r.json["data"]["token"])


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def record(
    handle: str, n: int, version: str = "TPL.TEXTILE.ROLL.V1", **changes: str
) -> dict[str, Any]:
    values = []
    for key, text in roll_fields(n, **changes).items():
        field = ROLL.field(key)
        assert field is not None
        values.append(
            {
                "index": field.index,
                "type": key,
                "auth": 0,
                "data": {"format": "string", "value": text},
            }
        )
    values.append(
        {"index": 10, "type": "COST", "auth": 1, "data": {"format": "string", "value": "12.80"}}
    )
    return {"handle": handle, "templateVersion": version, "value": values}


async def test_token_then_one_record_at_a_time(api: Api, database_url: str) -> None:
    r = await api.post("/identity/token", {"username": "300:88.118.2/ADMIN", "password": "nope"})
    assert (r.status, r.json["status"]) == (401, -1)
    r = await api.post("/identity/token", {"username": "", "password": ""})
    assert r.json["status"] == -2
    r = await api.get("/identityv2/data/detail?handle=88.118.2/C-1")
    assert (r.status, r.json["status"]) == (401, -1)
    t = await token(api)

    h = "88.118.2/C-1"
    r = await api.post("/identityv2/data", record(h, 1), headers=bearer(t))
    assert (r.status, r.json["status"], r.json["data"]) == (201, 1, {"handle": h}), r.text
    r = await api.post("/identityv2/data", record(h, 1), headers=bearer(t))  # retried: success
    assert (r.status, r.json["status"]) == (200, 1)
    r = await api.post("/identityv2/data", record(h, 1, colour="大红"), headers=bearer(t))
    assert (r.status, r.json["status"]) == (409, -2) and "different values" in r.json["message"]

    r = await api.get(f"/identityv2/data/detail?handle={h}", headers=bearer(t))
    data = r.json["data"]
    assert data["templateVersion"] == ROLL_TEMPLATE  # named by its name under 88.118
    by_type = {v["type"]: v for v in data["value"]}
    assert by_type["COST"]["auth"] == 1 and by_type["colour"]["auth"] == 0
    assert by_type["colour"]["data"] == {"format": "string", "value": "藏青"}
    public = (await api.get(f"/api/handles/{h}")).json["values"]
    assert "COST" not in {v["type"] for v in public}  # auth 1: not for the public

    change = {
        "handle": h,
        "value": [{"index": 2008, "type": "colour", "data": {"format": "string", "value": "大红"}}],
    }
    r = await api.put("/identityv2/data", change, headers=bearer(t))
    assert r.json["status"] == 1
    bad = {
        "handle": h,
        "value": [
            {"index": 2006, "type": "widthCm", "data": {"format": "string", "value": "wide"}}
        ],
    }
    r = await api.put("/identityv2/data", bad, headers=bearer(t))
    assert (r.status, r.json["status"]) == (400, -2) and "widthCm" in r.json["message"]
    r = await api.get(f"/identityv2/data/detail?handle={h}", headers=bearer(t))
    values = {v["type"]: v["data"]["value"] for v in r.json["data"]["value"]}
    assert values["colour"] == "大红" and values["widthCm"] == "150"

    # Enterprise B may not touch A's records.
    tb = await token(api, "300:88.118.3/ADMIN", B.admin_secret)
    r = await api.call("DELETE", f"/identityv2/data?handle={h}", headers=bearer(tb))
    assert (r.status, r.json["status"]) == (403, -3)
    r = await api.call("DELETE", f"/identityv2/data?handle={h}", headers=bearer(t))
    assert r.json["status"] == 1
    r = await api.get(f"/identityv2/data/detail?handle={h}", headers=bearer(t))
    assert (r.status, r.json["status"]) == (404, -2)
    r = await api.get("/identityv2/data/detail?handle=88.118.2/C-1", headers=bearer(t + "x"))
    assert (r.status, r.json["status"]) == (401, -1)
    before = await db_state(database_url)
    r = await api.post(
        "/identityv2/data", record("88.118.2/C-9", 9, version="9.9"), headers=bearer(t)
    )
    assert r.json["status"] == -2 and "no data template version '9.9'" in r.json["message"]
    r = await api.post(
        "/identityv2/data", record("88.118.2/C-9", 9, version="1.0"), headers=bearer(t)
    )
    assert "'1.0' is ambiguous under 88.118: name one of" in r.json["message"]
    assert await db_state(database_url) == before


async def test_batches_answer_per_record(api: Api) -> None:
    t = await token(api)
    records = [record(f"88.118.2/CB-{n}", n, version=ROLL_TEMPLATE) for n in range(30)]
    records[7] = record("88.118.2/CB-7", 7, productionDate="yesterday")
    r = await api.post("/identityv2/data/batchCreate", records, headers=bearer(t))
    assert r.status == 200
    data = r.json["data"]
    assert (r.json["status"], data["total"], data["success"], data["fail"]) == (-2, 30, 29, 1)
    assert data["results"][7]["status"] == -2 and "productionDate" in data["results"][7]["message"]
    assert data["results"][8] == {"handle": "88.118.2/CB-8", "status": 1}
    updates = [
        {
            "handle": f"88.118.2/CB-{n}",
            "value": [
                {"index": 2011, "type": "grade", "data": {"format": "string", "value": "优等品"}}
            ],
        }
        for n in (1, 2, 7)
    ]
    r = await api.put("/identityv2/data/batchUpdate", updates, headers=bearer(t))
    assert [x["status"] for x in r.json["data"]["results"]] == [1, 1, -2]  # CB-7 was never made
    r = await api.call(
        "DELETE",
        "/identityv2/data/batchDelete",
        body=["88.118.2/CB-1", {"handle": "88.118.2/CB-2"}, "88.118.2/CB-7"],
        headers=bearer(t),
    )
    assert [x["status"] for x in r.json["data"]["results"]] == [1, 1, -2]
    too_many = [record(f"88.118.2/M-{n}", n) for n in range(2001)]
    r = await api.post("/identityv2/data/batchCreate", too_many, headers=bearer(t))
    assert (r.status, r.json["status"]) == (413, -2) and "at most 2000" in r.json["message"]

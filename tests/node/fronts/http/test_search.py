"""GET /api/search on a real node with the demo data: rolls citing the shipped roll
template are written over HTTP by their enterprises' admins, then found by dye lot
(cursor paging, isolation between enterprises, private values, errors)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from node.demo.dataset import (
    DYE_PLANT,
    LIFT_CARE,
    LIFT_MAKER,
    LIFTS,
    OPERATOR,
    PONGEE,
    admin_value,
    record,
)
from node.templates.shipped import LIFT, ROLL
from tests.node.http_support import A, Api, B, StartNode, admin_of, basic

OPERATOR_ADMIN = basic("300:88.118/ADMIN", OPERATOR.admin_secret)


def roll(handle: str, dye_lot: str, n: int) -> list[dict[str, Any]]:
    """A finished roll of ``dye_lot`` following the shipped roll template."""
    fields = {
        **PONGEE,
        "stage": "成品",
        "widthCm": "148",
        "weightGsm": "64",
        "colour": "黑",
        "rollNumber": f"C{n:06d}",
        "rollLengthM": "97.0",
        "grade": "优等品",
        "mill": "吴江示例织造",
        "productionDate": "2026-03-18",
        "dyeLot": dye_lot,
    }
    return record(handle, ROLL, fields).values


async def put_rolls(
    api: Api, prefix: str, dye_lot: str, count: int, auth: dict[str, str]
) -> list[str]:
    handles = [f"{prefix}/FIN-{dye_lot}-{n:04d}" for n in range(count)]
    for n, handle in enumerate(handles):
        r = await api.put(f"/api/handles/{handle}", roll(handle, dye_lot, n), headers=auth)
        assert r.status == 200, r.text
    return handles


def query(value: str, field: str = "dyeLot", template: str = ROLL.handle, **more: Any) -> str:
    extra = "".join(f"&{k}={quote(str(v), safe='')}" for k, v in more.items())
    return f"/api/search?template={template}&field={field}&value={quote(value, safe='')}{extra}"


async def found(api: Api, auth: dict[str, str], value: str, **more: Any) -> list[str]:
    r = await api.get(query(value, **more), headers=auth)
    assert r.status == 200, r.text
    return list(r.json["handles"])


async def test_a_recall_pages_through_every_roll_once(api: Api) -> None:
    rolls = await put_rolls(api, "88.118.2", "DL-RECALL", 250, admin_of(A))
    await put_rolls(api, "88.118.2", "DL-OTHER", 3, admin_of(A))
    pages: list[list[str]] = []
    after = ""
    while True:
        r = await api.get(query("DL-RECALL", limit=100, after=after), headers=admin_of(A))
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        body = r.json
        assert (body["template"], body["field"], body["value"], body["total"]) == (
            ROLL.handle,
            "dyeLot",
            "DL-RECALL",
            250,
        )
        pages.append(body["handles"])
        if body["next"] is None:
            break
        assert body["next"] == body["handles"][-1].upper()
        after = body["next"]
    assert [len(p) for p in pages] == [100, 100, 50]
    listed = [h for p in pages for h in p]
    assert sorted(listed) == sorted(rolls) and len(set(listed)) == 250
    # The field name in any case; the default page size is 100.
    r = await api.get(query("DL-RECALL", field="DYELOT"), headers=admin_of(A))
    assert len(r.json["handles"]) == 100 and r.json["field"] == "dyeLot"


async def test_enterprises_see_only_their_own_rolls(api: Api) -> None:
    mine = await put_rolls(api, "88.118.2", "DL-SHARED", 2, admin_of(A))
    theirs = await put_rolls(api, "88.118.3", "DL-SHARED", 2, admin_of(B))
    assert await found(api, admin_of(A), "DL-SHARED") == mine
    assert await found(api, admin_of(B), "DL-SHARED") == theirs
    r = await api.get(query("DL-SHARED"), headers=admin_of(A))
    assert r.json["total"] == 2  # the count is isolated too
    # The node operator's enterprise holds 88.118 and 88.119, not its tenants' prefixes.
    assert await found(api, OPERATOR_ADMIN, "DL-SHARED") == []
    # The demo's dye plant finds its own finished rolls of its pongee lot.
    dyer = basic("300:88.118.5/ADMIN", DYE_PLANT.admin_secret)
    assert all(h.startswith("88.118.5/FIN-") for h in await found(api, dyer, "DL-20260316-02"))
    assert await found(api, dyer, "DL-20260316-02")


async def test_a_server_admin_searches_every_prefix(start_http_node: StartNode) -> None:
    node = await start_http_node(server_admins="300:88.118/ADMIN")
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        mine = await put_rolls(api, "88.118.2", "DL-ALL", 2, admin_of(A))
        theirs = await put_rolls(api, "88.118.3", "DL-ALL", 2, admin_of(B))
        assert await found(api, OPERATOR_ADMIN, "DL-ALL") == mine + theirs


async def test_private_values_only_for_who_may_read_them(api: Api) -> None:
    own, foreign = "88.118.2/FIN-PRIVATE-OWN", "88.118.2/FIN-PRIVATE-FOREIGN"
    for handle, admin_prefix in ((own, "88.118.2"), (foreign, "88.118.5")):
        values = roll(handle, "DL-PRIVATE", 1)
        for v in values:
            if v["type"] == "dyeLot":
                v["permissions"] = "1100"  # admin read/write, not public
            if v["type"] == "HS_ADMIN":
                v.update(admin_value(admin_prefix))
        r = await api.put(f"/api/handles/{handle}", values, headers=admin_of(A))
        assert r.status == 200, r.text
    r = await api.get(query("DL-PRIVATE"), headers=admin_of(A))
    # The foreign record's admin is the dye plant: its private lot is not confirmed to A.
    assert (r.json["handles"], r.json["total"]) == ([own], 2)
    dyer = basic("300:88.118.5/ADMIN", DYE_PLANT.admin_secret)
    assert await found(api, dyer, "DL-PRIVATE") == []  # not under its enterprise's prefixes


async def test_a_unique_field_is_searchable(api: Api) -> None:
    lift = LIFTS[0].to_handle()
    code = next(v["data"]["value"] for v in lift.values if v["type"] == "registrationCode")
    maker = basic("300:88.119.2/ADMIN", LIFT_MAKER.admin_secret)
    care = basic("300:88.119.3/ADMIN", LIFT_CARE.admin_secret)
    args = {"field": "registrationCode", "template": LIFT.handle}
    assert await found(api, maker, code, **args) == [lift.handle]
    assert await found(api, care, code, **args) == []


async def test_refusals(api: Api) -> None:
    r = await api.get(query("DL-X"))
    assert (r.status, r.json["responseCode"]) == (401, 402)
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = await api.get(query("DL-X", field="colour"), headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 4)
    assert "colour" in r.json["message"]
    assert "fabricCode, rollNumber, dyeLot" in r.json["message"]
    r = await api.get(query("DL-X", field="noSuchField"), headers=admin_of(A))
    assert r.status == 400 and "has no field noSuchField" in r.json["message"]
    r = await api.get(query("DL-X", template="88.118/TPL.NOPE.V1"), headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (404, 100)
    assert "88.118/TPL.NOPE.V1" in r.json["message"]
    for path, name in (
        (f"/api/search?template={ROLL.handle}&field=dyeLot", "value"),
        ("/api/search?field=dyeLot&value=x", "template"),
        (f"/api/search?template={ROLL.handle}&value=x&field=", "field"),
    ):
        r = await api.get(path, headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (400, 4)
        assert f"parameter {name} is missing" in r.json["message"]
    for limit in (0, 1001, "ten"):
        r = await api.get(query("DL-X", limit=limit), headers=admin_of(A))
        assert r.status == 400 and "1..1000" in r.json["message"], r.text
    r = await api.get(query("DL-X"), headers=basic("300:88.118.2/ADMIN", "wrong"))
    assert r.status in (401, 403)


async def test_an_identity_administering_no_prefix_is_refused(api: Api) -> None:
    # A clerk of enterprise A: a key of its own, but no right on the prefix.
    secret = {"index": 300, "type": "HS_SECKEY", "data": "clerk-secret", "permissions": "1100"}
    r = await api.put("/api/handles/88.118.2/CLERK", [secret], headers=admin_of(A))
    assert r.status == 200, r.text
    r = await api.get(query("DL-X"), headers=basic("300:88.118.2/CLERK", "clerk-secret"))
    assert (r.status, r.json["responseCode"]) == (403, 400)
    assert "300:88.118.2/CLERK administers no prefix" in r.json["message"]

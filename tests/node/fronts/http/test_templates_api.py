"""Templates over HTTP: listed and read (GET /api/templates, the SNMS-style path),
enforced on PUT with a per-field answer, and writes by field names."""

from __future__ import annotations

from node.templates.shipped import LIFT, ROLL, SHIPPED
from tests.node.http_support import A, Api, admin_of, admin_value, db_state, url_value
from tests.node.templates_support import ROLL_TEMPLATE, roll_body, roll_fields

H = "/api/handles/88.118.2/TPL-ROLL-1"


def roll_values(**changes: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        admin_value("88.118.2"),
        {"index": 1001, "type": "TEMPLATE", "data": {"format": "string", "value": ROLL.handle}},
    ]
    for key, value in roll_fields(1, **changes).items():
        field = ROLL.field(key)
        assert field is not None
        out.append(
            {"index": field.index, "type": key, "data": {"format": "string", "value": value}}
        )
    return out


async def test_templates_are_listed_and_read(api: Api) -> None:
    r = await api.get("/api/templates")
    assert r.status == 200
    listed = {t["handle"] for t in r.json["templates"]}
    assert {t.handle for t in SHIPPED} <= listed
    r = await api.get("/api/templates?prefix=88.119&limit=1")
    assert r.json["templates"][0]["handle"].startswith("88.119/") and r.json["next"]
    r = await api.get("/api/templates/" + ROLL.handle)
    assert r.status == 200 and r.json["version"] == "1.0"
    items = {i["idType"]: i for i in r.json["items"]}
    assert items["widthCm"]["metadata"] == {
        "type": "decimal",
        "minLength": 2,
        "maxLength": 6,
        "min": "10",
        "max": "400",
        "unit": "cm",
    }
    assert (await api.get("/api/templates/88.118/TPL.NONE")).status == 404
    assert (await api.get("/api/templates?limit=0")).status == 400

    r = await api.call("GET", "/snms/api/v5/template?prefix=88.119")
    assert r.json["status"] == 1 and {t["handle"] for t in r.json["data"]} >= {LIFT.handle}
    r = await api.call("GET", "/snms/api/v5/template?prefix=88.118&version=TPL.TEXTILE.ROLL.V1")
    assert r.json["data"]["handle"] == ROLL.handle
    r = await api.call("GET", "/snms/api/v5/template")
    assert (r.status, r.json["status"]) == (400, -2)


async def test_a_record_citing_a_template_is_checked_on_put(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    # The observation: every required field missing, or "wide" and "yesterday", was
    # stored and shown as signed.
    bare = roll_values()[:2]
    r = await api.put(H, bare, headers=admin_of(A))
    assert (r.status, r.json["responseCode"]) == (400, 202)
    missing = {p["field"] for p in r.json["problems"] if p["rule"] == "required, missing"}
    assert missing == {f.key for f in ROLL.fields if f.required} and len(missing) == 14
    r = await api.put(
        H, roll_values(widthCm="wide", productionDate="yesterday"), headers=admin_of(A)
    )
    assert (r.status, r.json["responseCode"], r.json["template"]) == (400, 202, ROLL.handle)
    assert r.json["problems"] == [
        {
            "field": "widthCm",
            "index": 2006,
            "value": "wide",
            "rule": "not a decimal number (in cm, without the unit)",
        },
        {
            "field": "productionDate",
            "index": 2013,
            "value": "yesterday",
            "rule": "not a date (YYYY-MM-DD)",
        },
    ]
    bad_cite = [
        admin_value("88.118.2"),
        {
            "index": 1001,
            "type": "TEMPLATE",
            "data": {"format": "string", "value": "88.118/TPL.NONE"},
        },
    ]
    r = await api.put(H, bad_cite, headers=admin_of(A))
    assert r.status == 400 and "no such template" in r.json["message"]
    assert await db_state(database_url) == before
    assert (await api.put(H, roll_values(), headers=admin_of(A))).status == 200
    # A partial update is checked against the whole record it makes.
    r = await api.put(
        H + "?index=2007",
        [{"index": 2007, "type": "weightGsm", "data": {"format": "string", "value": "1"}}],
        headers=admin_of(A),
    )
    assert r.status == 400 and r.json["problems"][0]["rule"].startswith("below")
    # Removing a required field is refused too; an optional one may go.
    assert (await api.delete(H + "?index=2003", headers=admin_of(A))).status == 400
    assert (await api.delete(H + "?index=2015", headers=admin_of(A))).status == 200


async def test_writes_by_field_names(api: Api) -> None:
    h = "/api/handles/88.118.2/BY-FIELDS"
    r = await api.put(h, roll_body(5), headers=admin_of(A))
    assert r.status == 200, r.text
    values = {v["type"]: v for v in (await api.get(h)).json["values"]}
    assert values["TEMPLATE"]["index"] == 1001 and values["widthCm"]["index"] == 2006
    # One field by name: the rest stay (and the admin value the record never named).
    r = await api.put(
        h, {"template": ROLL_TEMPLATE, "fields": {"colour": "大红"}}, headers=admin_of(A)
    )
    assert r.status == 200
    after = {v["type"]: v["data"]["value"] for v in (await api.get(h)).json["values"]}
    assert after["colour"] == "大红" and after["dyeLot"] == "DL-20260316-02"
    assert len([k for k in after if k in {f.key for f in ROLL.fields}]) == 16
    for body, why in (
        ({"template": ROLL_TEMPLATE, "fields": {"width": "150"}}, "width (index 0): no such field"),
        ({"template": "88.118/TPL.NONE", "fields": {"a": "b"}}, "no such data template"),
        ({"template": ROLL_TEMPLATE, "fields": {}}, '"fields" must be an object'),
        (
            {"template": ROLL_TEMPLATE, "fields": {"colour": {"x": 1}}},
            "must be a string or a number",
        ),
    ):
        r = await api.put(h, body, headers=admin_of(A))
        assert r.status == 400 and why in r.json["message"], (body, r.text)
    r = await api.put(h + "?index=1", roll_body(5), headers=admin_of(A))
    assert r.status == 400 and "index=" in r.json["message"]
    # A record without a template is not checked against one.
    plain = [admin_value("88.118.2"), url_value(1, "https://example.com")]
    assert (await api.put("/api/handles/88.118.2/PLAIN", plain, headers=admin_of(A))).status == 200

"""The OpenAPI document is valid OpenAPI 3.1 and true: every endpoint's real replies,
successes and errors, validate against it (``check_openapi`` runs on every reply of
every HTTP test; this module makes sure each operation is toured and that the check
is not vacuous)."""

from __future__ import annotations

import jsonschema
import pytest
from openapi_spec_validator import validate

from node.demo.dataset import DYE_PLANT
from node.fronts.http.openapi import openapi_document
from tests.node.http_support import (
    CHECKED,
    A,
    Api,
    B,
    Reply,
    admin_of,
    admin_value,
    basic,
    check_openapi,
    url_value,
)
from tests.node.templates_support import roll_fields


def test_document_is_valid_openapi() -> None:
    validate(openapi_document())


async def test_every_operation_success_and_error(api: Api) -> None:
    CHECKED.clear()
    h = "/api/handles/88.118.2/OAS"
    await api.put(h, [admin_value("88.118.2"), url_value(1, "u")], headers=admin_of(A))  # 200
    await api.put(h + "-2?overwrite=false", [url_value(1, "u")], headers=admin_of(A))  # 201
    await api.put(h, [url_value(1, "u")])  # 401
    await api.put(h, [url_value(1, "u")], headers=admin_of(B))  # 403
    await api.put(h + "?overwrite=false", [url_value(1, "v")], headers=admin_of(A))  # 409
    await api.put(h, raw=b"{", headers={**admin_of(A), "Content-Type": "application/json"})  # 400
    await api.put(h, raw=b"x", headers={**admin_of(A), "Content-Type": "text/csv"})  # 415
    await api.get(h)  # 200
    await api.get(h + "?index=5")  # 200, RC 200
    await api.get(h + "?callback=cb")  # JSONP
    await api.get(h + "?at=2999-01-01T00:00:00Z")  # 200: the record as it stands
    await api.get(h + "?at=2000-01-01T00:00:00Z")  # 404: it did not exist then
    await api.get("/api/history/88.118.2/OAS")  # 200
    await api.get("/api/history/88.118.2/OAS?limit=0")  # 400
    await api.get("/api/handles/88.118.2/NONE")  # 404
    await api.get("/api/handles/88.118.2/ADMIN", headers=admin_of(B))  # 403
    await api.get(h, headers=basic("300:88.118.2/ADMIN", "bad"))  # 403
    await api.delete(h + "?index=1", headers=admin_of(A))  # 200
    await api.delete(h + "?index=1", headers=admin_of(A))  # 400 (RC 200)
    await api.delete(h, headers=admin_of(B))  # 403
    await api.delete("/api/handles/88.118.2/NONE", headers=admin_of(A))  # 404
    await api.get("/api/handles?prefix=88.118.2&pageSize=3", headers=admin_of(A))  # 200
    await api.get("/api/handles?prefix=88.118.2")  # 401
    await api.get("/api/handles?prefix=..")  # 400
    lot = "/api/search?template=88.118/TPL.TEXTILE.ROLL.V1&value=DL-20260316-02&field="
    await api.get(lot + "dyeLot", headers=admin_of(A))  # 200
    await api.get(
        lot + "dyeLot&limit=1", headers=basic("300:88.118.5/ADMIN", DYE_PLANT.admin_secret)
    )
    await api.get(lot + "dyeLot")  # 401
    await api.get(lot + "colour", headers=admin_of(A))  # 400
    await api.get(lot.replace("ROLL", "NOPE") + "dyeLot", headers=admin_of(A))  # 404
    await api.get("/api/prefixes")
    await api.get("/api/prefixes?callback=1x")  # 400
    await api.get("/api/openapi.json")
    await api.get("/api/unknown")  # 404, undocumented path: ErrorReply
    session = (await api.post("/api/sessions")).json  # 201
    this = {"Authorization": f'Handle sessionId="{session["sessionId"]}"'}
    await api.post("/api/sessions", headers=admin_of(A))  # 201, authenticated
    await api.post("/api/sessions", headers=this)  # 400
    await api.get("/api/sessions/this", headers=this)  # 200
    await api.put(
        "/api/sessions/this",
        headers={
            "Authorization": this["Authorization"] + ', id="300:88.118.2/ADMIN", '
            'type="HS_PUBKEY", cnonce="AAAA", alg="SHA256", signature="AAAA"'
        },
    )  # 403
    await api.delete("/api/sessions/this", headers=this)  # 204
    await api.put("/api/sessions/this", headers=this)  # 401
    apps = "/api/manage/applications"  # as enterprise admin A (roles: test_manage.py)
    await api.post(apps, {"prefix": "88.118.70"}, headers=admin_of(A))  # 201
    await api.get(apps, headers=admin_of(A))  # 200
    await api.get(apps + "/88.118.70", headers=admin_of(A))  # 200
    await api.get(apps + "/88.118.70/history", headers=admin_of(A))  # 200
    await api.post(apps + "/88.118.70/reviews", {"status": 5}, headers=admin_of(A))  # 403
    await api.get("/api/manage/enterprises", headers=admin_of(A))  # 200
    await api.post("/api/manage/enterprises", {"name": "x", "creditCode": "y"})  # 401
    roll = {"template": "88.118/TPL.TEXTILE.ROLL.V1", "fields": roll_fields(1)}
    one = {"op": "create", "handle": "88.118.2/OAS-B", **roll}
    await api.post("/api/batches", {"items": [one]}, headers=admin_of(A))  # 200
    await api.post(
        "/api/batches", {"mode": "atomic", "items": [{**one, "op": "x"}]}, headers=admin_of(A)
    )  # 400
    await api.post("/api/imports", raw=b"{}")  # 401 (its 200 is a stream: test_imports.py)
    await api.get("/api/templates")  # 200
    await api.get("/api/templates/88.118/TPL.TEXTILE.ROLL.V1")  # 200
    await api.get("/snms/api/v5/template?prefix=88.118")  # 200
    token = (
        await api.post(
            "/identity/token", {"username": "300:88.118.2/ADMIN", "password": A.admin_secret}
        )
    ).json["data"]["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    caict = {
        "handle": "88.118.2/OAS-C",
        "value": [{"index": 1, "type": "URL", "data": {"format": "string", "value": "u"}}],
    }
    await api.post("/identityv2/data", caict, headers=bearer)  # 201
    await api.get("/identityv2/data/detail?handle=88.118.2/OAS-C", headers=bearer)  # 200
    await api.put("/identityv2/data", caict, headers=bearer)  # 200
    await api.delete("/identityv2/data?handle=88.118.2/OAS-C", headers=bearer)  # 200
    await api.post("/identityv2/data/batchCreate", [caict], headers=bearer)  # 200
    await api.put("/identityv2/data/batchUpdate", [caict], headers=bearer)  # 200
    await api.call(
        "DELETE", "/identityv2/data/batchDelete", body=["88.118.2/OAS-C"], headers=bearer
    )
    seen = {(m, t) for m, t, _ in CHECKED}
    documented = {
        (m.upper(), p)
        for p, ops in openapi_document()["paths"].items()
        for m in ops
        if m in ("get", "put", "delete", "post")
    }
    assert documented <= seen
    statuses = {s for _, _, s in CHECKED}
    assert {200, 201, 204, 400, 401, 403, 404, 409, 415} <= statuses


def test_check_is_not_vacuous() -> None:
    good = Reply(
        200, {"Content-Type": "application/json"}, '{"responseCode":1,"handle":"a/b","values":[]}'
    )
    check_openapi("GET", "/api/handles/a/b", good)
    for text in (
        '{"responseCode":1,"handle":"a/b"}',  # values missing
        '{"responseCode":1,"handle":"a/b","values":[{"index":1,"type":"URL","data":{"format":"string","value":"x"},"ttl":1}]}',  # no timestamp
        '{"responseCode":1,"handle":"a/b","values":[],"extra":true}',
    ):
        with pytest.raises(jsonschema.ValidationError):
            check_openapi(
                "GET", "/api/handles/a/b", Reply(200, {"Content-Type": "application/json"}, text)
            )
    with pytest.raises(jsonschema.ValidationError):  # an undocumented status must be an ErrorReply
        check_openapi(
            "PUT", "/api/handles/a/b", Reply(302, {"Content-Type": "application/json"}, "{}")
        )

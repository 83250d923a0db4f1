"""The management API (``/api/manage``) over real HTTP on a node with the demo data: the
review workflow with each role's permissions, enterprise isolation, the once-only
credential hand-over, and a decision taking effect on a second node without a restart.

Roles here: the operator ``300:88.118/ADMIN`` is a platform admin (``server_admins``);
``300:88.118/AUDITOR`` the auditor (``auditors``); enterprise A (``300:88.118.2/ADMIN``)
and B (``300:88.118.3/ADMIN``) are enterprise admins of their demo prefixes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from node.app import Node
from node.demo.dataset import OPERATOR
from node.writes.onboarding import admin_values
from protocol.creditcode import check_character
from protocol.handle import parse_handle
from tests.node.http_support import (
    A,
    Api,
    B,
    StartNode,
    admin_of,
    admin_value,
    all_record_bytes,
    basic,
    url_value,
)

APPS = "/api/manage/applications"
PLATFORM = basic("300:88.118/ADMIN", OPERATOR.admin_secret)
AUDITOR_ID = "300:88.118/AUDITOR"
AUDITOR_SECRET = "auditor-secret-for-tests"
AUDITOR = basic(AUDITOR_ID, AUDITOR_SECRET)
ROLES = {"server_admins": "300:88.118/ADMIN", "auditors": AUDITOR_ID}
NOBODY_ID = "300:88.118/NOBODY"  # authenticates, holds no role
NOBODY = basic(NOBODY_ID, "nobody-secret-for-tests")
NEW_CODE = "91320509MA7WQ1X20" + check_character("91320509MA7WQ1X20")


async def start_manage_node(start_http_node: StartNode) -> Node:
    """A demo node with the roles set, and the identities of the auditor and of one
    with no role written through it."""
    node = await start_http_node(**ROLES)
    assert node.writes is not None
    for identity, secret in ((AUDITOR_ID, AUDITOR_SECRET), (NOBODY_ID, "nobody-secret-for-tests")):
        handle = parse_handle(identity.partition(":")[2])
        await node.writes.put(
            handle,
            admin_values(handle.text, secret),
            actor="test:setup",
            now=node.now(),
            source="test",
        )
    return node


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_manage_node(start_http_node)


@pytest.fixture
async def mapi(node: Node) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{node.http_port}")


async def served(node: Node, prefix: str) -> None:
    """Until ``node`` serves ``prefix`` (it re-reads prefixes on the registry's change
    feed; bounded, never a sleep)."""
    assert node.resolver is not None
    prefixes = node.resolver.served
    await asyncio.wait_for(prefixes.wait_until(lambda: prefixes.serves(prefix)), 10)


def statuses(reply: Any) -> list[tuple[str, int | None, int, str]]:
    return [(s["action"], s["fromStatus"], s["toStatus"], s["actor"]) for s in reply["history"]]


async def enable(api: Api, prefix: str) -> dict[str, Any]:
    """Apply as enterprise A, review to under review and enabled as the auditor: the
    enabling reply."""
    assert (await api.post(APPS, {"prefix": prefix}, headers=admin_of(A))).status == 201
    r = await api.post(f"{APPS}/{prefix}/reviews", {"status": 5}, headers=AUDITOR)
    assert r.status == 200, r.text
    r = await api.post(f"{APPS}/{prefix}/reviews", {"status": "enabled"}, headers=AUDITOR)
    assert r.status == 200, r.text
    body: dict[str, Any] = r.json
    return body


async def test_review_workflow_by_role(
    mapi: Api, node: Node, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await mapi.get(APPS)
    assert r.status == 401 and "WWW-Authenticate" in r.headers

    r = await mapi.post(APPS, {"prefix": "88.118.7", "reason": "new weaving hall"}, **_a())
    assert r.status == 201, r.text
    assert r.json["application"]["status"] == 4
    assert r.json["application"]["enterprise"]["creditCode"] == A.credit_code
    assert r.json["review"]["actor"] == "300:88.118.2/ADMIN"
    assert r.headers["Cache-Control"] == "no-store"

    review = f"{APPS}/88.118.7/reviews"
    r = await mapi.post(review, {"status": 5}, **_a())  # an enterprise admin cannot review
    assert (r.status, r.json["responseCode"]) == (403, 401) and "auditor" in r.json["message"]
    r = await mapi.post(review, {"status": 1}, headers=AUDITOR)  # review comes first
    assert r.status == 409
    assert "awaiting review (status 4)" in r.json["message"]
    assert "enabled (status 1)" in r.json["message"]
    r = await mapi.post(review, {"status": "rejected"}, headers=AUDITOR)
    assert r.status == 400 and "reason" in r.json["message"]
    r = await mapi.post(review, {"status": 5, "reason": "checking licence"}, headers=AUDITOR)
    assert (r.status, r.json["application"]["status"]) == (200, 5)
    assert "credentials" not in r.json

    r = await mapi.post(review, {"status": 1}, headers=PLATFORM)  # platform admins review too
    assert r.status == 200, r.text
    credentials = r.json["credentials"]
    secret = credentials["secret"]
    assert credentials["admin"] == "300:88.118.7/ADMIN" and len(secret) >= 32
    assert r.json["application"]["status"] == 1

    # Handed over once: no later reply, log line or stored byte carries the secret.
    r = await mapi.get(f"{APPS}/88.118.7", **_a())
    assert r.status == 200 and "credentials" not in r.json and secret not in r.text
    r = await mapi.get(f"{APPS}/88.118.7/history", **_a())
    assert statuses(r.json) == [
        ("apply", None, 4, "300:88.118.2/ADMIN"),
        ("review", 4, 5, AUDITOR_ID),
        ("review", 5, 1, "300:88.118/ADMIN"),
    ]
    assert r.json["history"][0]["reason"] == "new weaving hall" and secret not in r.text
    r = await mapi.get("/api/handles/88.118.7/ADMIN", headers=PLATFORM)
    assert r.status == 200 and secret not in r.text
    assert {v["type"] for v in r.json["values"]} >= {"HS_ADMIN", "HS_SECKEY", "HS_SIGNATURE"}
    assert secret not in caplog.text
    assert secret.encode() not in await all_record_bytes(database_url)

    # The new admin writes under its prefix, and is an enterprise admin of A now.
    await served(node, "88.118.7")
    new_admin = basic("300:88.118.7/ADMIN", secret)
    r = await mapi.put("/api/handles/88.118.7/ROLL-1", [url_value(1, "u")], headers=new_admin)
    assert r.status == 200, r.text
    r = await mapi.put("/api/handles/88.118.2/BY-NEW", [url_value(1, "u")], headers=new_admin)
    assert r.status == 403  # not an admin of A's other prefix
    r = await mapi.get(APPS, headers=new_admin)
    assert {a["prefix"] for a in r.json["applications"]} == {"88.118.2", "88.118.7"}
    r = await mapi.post(review, {"status": 0, "reason": "x"}, headers=new_admin)
    assert r.status == 403


def _a() -> dict[str, Any]:
    return {"headers": admin_of(A)}


async def test_enterprises_see_and_apply_only_for_themselves(mapi: Api) -> None:
    assert (await mapi.post(APPS, {"prefix": "88.118.7"}, **_a())).status == 201
    b = admin_of(B)
    r = await mapi.get(f"{APPS}/88.118.7", headers=b)
    assert (r.status, r.json["responseCode"]) == (403, 401)
    assert (await mapi.get(f"{APPS}/88.118.7/history", headers=b)).status == 403
    r = await mapi.get(APPS, headers=b)
    assert r.status == 200
    assert {a["prefix"] for a in r.json["applications"]} == {"88.118.3", "88.118.6"}
    assert (await mapi.get(f"{APPS}?enterprise={A.credit_code}", headers=b)).status == 403
    r = await mapi.post(APPS, {"prefix": "88.118.8", "creditCode": A.credit_code}, headers=b)
    assert r.status == 403 and A.credit_code in r.json["message"]
    r = await mapi.get("/api/manage/enterprises", headers=b)
    assert [e["creditCode"] for e in r.json["enterprises"]] == [B.credit_code]
    # B cannot take A's prefix, nor one derived from it, nor one this node does not serve.
    assert (await mapi.post(APPS, {"prefix": "88.118.7"}, headers=b)).status == 409
    assert (await mapi.post(APPS, {"prefix": "88.118.2.1"}, headers=b)).status == 409
    r = await mapi.post(APPS, {"prefix": "99.1.2"}, headers=b)
    assert r.status == 400 and "88.118" in r.json["message"]
    # Auditors and platform admins see every enterprise's.
    for who in (AUDITOR, PLATFORM):
        r = await mapi.get(f"{APPS}?status=awaiting-review", headers=who)
        assert {a["prefix"] for a in r.json["applications"]} == {"88.118.6", "88.118.7"}
    # An auditor reviews but does not apply.
    assert (await mapi.post(APPS, {"prefix": "88.118.9"}, headers=AUDITOR)).status == 403


async def test_platform_admins_register_enterprises_and_apply_for_them(mapi: Api) -> None:
    code = NEW_CODE
    new = {"name": "吴江示例纺织有限公司", "creditCode": code, "contact": "ops@example.com"}
    assert (await mapi.post("/api/manage/enterprises", new, **_a())).status == 403
    assert (await mapi.post("/api/manage/enterprises", new, headers=AUDITOR)).status == 403
    r = await mapi.post("/api/manage/enterprises", new, headers=PLATFORM)
    assert r.status == 201 and r.json["enterprise"]["creditCode"] == code
    assert (await mapi.post("/api/manage/enterprises", new, headers=PLATFORM)).status == 409
    bad = {**new, "creditCode": code[:17] + ("0" if code[17] != "0" else "1")}
    assert (await mapi.post("/api/manage/enterprises", bad, headers=PLATFORM)).status == 400
    r = await mapi.get("/api/manage/enterprises", headers=AUDITOR)
    assert code in {e["creditCode"] for e in r.json["enterprises"]}
    r = await mapi.post(APPS, {"prefix": "88.118.20", "creditCode": code}, headers=PLATFORM)
    assert r.status == 201 and r.json["application"]["enterprise"]["creditCode"] == code
    r = await mapi.post(APPS, {"prefix": "88.118.21"}, headers=AUDITOR)
    assert r.status == 403


async def test_json_only_and_clear_refusals(mapi: Api) -> None:
    r = await mapi.get(f"{APPS}?callback=cb", headers=PLATFORM)
    assert r.status == 400 and r.headers["Content-Type"].startswith("application/json")
    assert "JSON only" in r.json["message"]
    r = await mapi.get(f"{APPS}?status=9", headers=PLATFORM)
    assert r.status == 400 and "not a prefix status" in r.json["message"]
    r = await mapi.post(APPS, raw=b"{", headers={**PLATFORM, "Content-Type": "application/json"})
    assert r.status == 400
    r = await mapi.post(APPS, raw=b"x", headers={**PLATFORM, "Content-Type": "text/plain"})
    assert r.status == 415
    r = await mapi.post(f"{APPS}/88.118.99/reviews", {"status": 5}, headers=PLATFORM)
    assert r.status == 404 and "88.118.99" in r.json["message"]
    r = await mapi.get(f"{APPS}/88.118.99", headers=PLATFORM)
    assert r.status == 404
    r = await mapi.post(f"{APPS}/88.118.6/reviews", {"reason": "x"}, headers=PLATFORM)
    assert r.status == 400 and '"status"' in r.json["message"]
    r = await mapi.get(APPS, headers=basic("300:88.118.2/ADMIN", "wrong"))
    assert r.status == 401
    for path in (APPS, f"{APPS}/88.118.2", f"{APPS}/88.118.2/history", "/api/manage/enterprises"):
        r = await mapi.get(path, headers=NOBODY)
        assert (r.status, r.json["responseCode"]) == (403, 401), path
        assert "no platform admin, auditor or enterprise admin" in r.json["message"]
    assert (await mapi.post(APPS, {"prefix": "88.118.9"}, headers=NOBODY)).status == 403


async def test_enabled_on_one_node_served_by_another_without_restart(
    start_http_node: StartNode,
) -> None:
    node_a = await start_manage_node(start_http_node)
    node_b = await start_http_node(**ROLES)  # the same database, started before the review
    async with aiohttp.ClientSession() as session:
        api_a = Api(session, f"http://127.0.0.1:{node_a.http_port}")
        api_b = Api(session, f"http://127.0.0.1:{node_b.http_port}")
        assert (await api_b.get("/api/handles/0.NA/88.118.7")).status != 200
        secret = (await enable(api_a, "88.118.7"))["credentials"]["secret"]
        await served(node_b, "88.118.7")
        new_admin = basic("300:88.118.7/ADMIN", secret)
        record = [admin_value("88.118.7"), url_value(1, "https://example.com/r/1")]
        r = await api_b.put("/api/handles/88.118.7/ROLL-B", record, headers=new_admin)
        assert r.status == 200, r.text
        r = await api_b.get("/api/handles/0.NA/88.118.7?type=HS_ADMIN")
        assert r.json["values"][0]["data"]["value"]["handle"] == "88.118.7/ADMIN"
        await served(node_a, "88.118.7")
        r = await api_a.get("/api/handles/88.118.7/ROLL-B")
        assert r.status == 200 and r.json["values"][0]["data"]["value"] == "https://example.com/r/1"
        # Disabling on B stops both from taking writes, again without a restart.
        r = await api_b.post(
            f"{APPS}/88.118.7/reviews", {"status": 0, "reason": "audit"}, headers=AUDITOR
        )
        assert r.status == 200, r.text
        assert node_a.resolver is not None
        prefixes = node_a.resolver.served
        await asyncio.wait_for(prefixes.wait_until(lambda: not prefixes.serves("88.118.7")), 10)
        r = await api_a.put("/api/handles/88.118.7/ROLL-C", record, headers=new_admin)
        assert r.status == 400 and "disabled (status 0)" in r.json["message"]

"""Unmodified Handle REST clients write, edit and delete what they create.

pyhandle (the client many data repositories use, here at its default settings) runs its
whole write flow against a real node: it gives new handles ``HS_ADMIN`` ->
``200:0.NA/<prefix>``, the prefix's admin group, which the node publishes as an HS_VLIST
of the enterprise's admins in its built-in ``0.NA/<prefix>`` record. The other checks
are the reference server's answers those clients key on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import HandleAuthenticationError, HandleNotFoundException

from node.app import Node
from tests.node.http_support import A, Api, B, admin_of, basic, url_value

HANDLE = "88.118.2/PYHANDLE-ROLL-1"


def _client(node: Node, user: str, password: str) -> RESTHandleClient:
    return RESTHandleClient.instantiate_with_username_and_password(
        f"http://127.0.0.1:{node.http_port}", user, password, HTTPS_verify=False
    )


def _pyhandle_write_flow(node: Node, password: str) -> dict[str, Any]:
    """pyhandle's default calls, as an integrator writes them; what each returned."""
    client = _client(node, "300:88.118.2/ADMIN", password)
    out: dict[str, Any] = {}
    out["register"] = client.register_handle(
        HANDLE, "https://example.com/roll/1", CHECKSUM="abc123"
    )
    out["modify"] = client.modify_handle_value(HANDLE, URL="https://example.com/roll/1-v2")
    out["add"] = client.add_handle_value(HANDLE, EMAIL="qa@example.com")
    out["record"] = client.retrieve_handle_record(HANDLE)
    out["delete_value"] = client.delete_handle_value(HANDLE, "EMAIL")
    out["after_delete_value"] = client.retrieve_handle_record(HANDLE)
    out["delete"] = client.delete_handle(HANDLE)
    out["gone"] = client.retrieve_handle_record(HANDLE)
    return out


async def test_pyhandle_default_write_flow(http_node: Node, api: Api) -> None:
    from node.demo.dataset import SILK_MILL

    out = await asyncio.to_thread(_pyhandle_write_flow, http_node, SILK_MILL.admin_secret)
    assert out["register"] == HANDLE
    assert out["modify"] is None or out["modify"] == HANDLE
    assert out["record"]["URL"] == "https://example.com/roll/1-v2"
    assert out["record"]["EMAIL"] == "qa@example.com" and out["record"]["CHECKSUM"] == "abc123"
    assert (
        "EMAIL" not in out["after_delete_value"]
        and out["after_delete_value"]["CHECKSUM"] == "abc123"
    )
    assert out["delete"] == HANDLE and out["gone"] is None


async def test_pyhandle_wrong_password_is_an_authentication_error(http_node: Node) -> None:
    def attempt() -> None:
        _client(http_node, "300:88.118.2/ADMIN", "not-the-secret").register_handle(
            HANDLE, "https://example.com/roll/1"
        )

    with pytest.raises(HandleAuthenticationError):
        await asyncio.to_thread(attempt)


async def test_pyhandle_delete_of_a_missing_handle(http_node: Node) -> None:
    from node.demo.dataset import SILK_MILL

    client = await asyncio.to_thread(
        _client, http_node, "300:88.118.2/ADMIN", SILK_MILL.admin_secret
    )
    with pytest.raises(HandleNotFoundException):
        await asyncio.to_thread(client.delete_handle, "88.118.2/NEVER-THERE")


async def test_the_prefix_admin_group_is_published(api: Api) -> None:
    r = await api.get("/api/handles/0.NA/88.118.2?index=200")
    assert r.status == 200, r.json
    [group] = r.json["values"]
    assert group["type"] == "HS_VLIST"
    assert group["data"]["value"] == [{"handle": "88.118.2/ADMIN", "index": 300}]


async def test_group_members_may_edit_and_others_may_not(api: Api) -> None:
    record = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": "0.NA/88.118.2", "index": "200", "permissions": "011111110011"},
            },
        },
        url_value(1, "https://example.com/group"),
    ]
    created = await api.put(f"/api/handles/{HANDLE}?overwrite=false", record, headers=admin_of(A))
    assert created.status == 201, created.json
    edit = await api.put(
        f"/api/handles/{HANDLE}?index=1",
        [url_value(1, "https://example.com/g2")],
        headers=admin_of(A),
    )
    assert edit.status == 200, edit.json
    other = await api.put(
        f"/api/handles/{HANDLE}?index=1",
        [url_value(1, "https://evil.example")],
        headers=admin_of(B),
    )
    assert other.status == 403 and other.json["responseCode"] == 400
    assert (await api.delete(f"/api/handles/{HANDLE}", headers=admin_of(A))).status == 200


async def test_add_at_a_free_index_without_overwrite(api: Api) -> None:
    assert (
        await api.put(f"/api/handles/{HANDLE}", [url_value(1, "https://a")], headers=admin_of(A))
    ).status in (200, 201)
    added = await api.put(
        f"/api/handles/{HANDLE}?index=2&overwrite=false",
        [url_value(2, "https://b")],
        headers=admin_of(A),
    )
    assert added.status in (200, 201) and added.json["responseCode"] == 1, added.json
    again = await api.put(
        f"/api/handles/{HANDLE}?index=2&overwrite=false",
        [url_value(2, "https://b")],
        headers=admin_of(A),
    )
    assert again.status in (200, 201), again.json  # the same value again: a retried add
    taken = await api.put(
        f"/api/handles/{HANDLE}?index=2&overwrite=false",
        [url_value(2, "https://c")],
        headers=admin_of(A),
    )
    assert taken.status == 409 and taken.json["responseCode"] == 201, taken.json
    record = (await api.get(f"/api/handles/{HANDLE}")).json["values"]
    urls = {v["index"]: v["data"]["value"] for v in record if v["type"] == "URL"}
    assert urls == {1: "https://a", 2: "https://b"}


async def test_failed_authentication_is_401_with_a_challenge_and_the_handle(api: Api) -> None:
    r = await api.delete(f"/api/handles/{HANDLE}", headers=basic("300:88.118.2/ADMIN", "wrong"))
    assert r.status == 401 and r.json["responseCode"] == 403
    assert r.json["handle"] == HANDLE
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    unknown = await api.delete(f"/api/handles/{HANDLE}", headers=basic("300:88.118.2/NOBODY", "x"))
    assert unknown.status == 401 and unknown.json == {**r.json, "message": unknown.json["message"]}
    # Authenticated but not permitted stays 403.
    r = await api.put(
        "/api/handles/88.118.3/NOT-MINE", [url_value(1, "https://a")], headers=admin_of(A)
    )
    assert r.status == 403 and r.json["handle"] == "88.118.3/NOT-MINE"


async def test_listing_with_a_trailing_slash(api: Api) -> None:
    plain = await api.get("/api/handles?prefix=88.118.2", headers=admin_of(A))
    slash = await api.get("/api/handles/?prefix=88.118.2", headers=admin_of(A))
    assert plain.status == slash.status == 200
    assert plain.json == slash.json


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_the_nodes_prefix_records_are_the_nodes(
    api: Api, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    if method == "PUT":
        r = await api.put(
            "/api/handles/0.NA/88.118.2", [url_value(1, "https://mine")], headers=admin_of(A)
        )
    else:
        r = await api.delete("/api/handles/0.NA/88.118.2", headers=admin_of(A))
    assert r.status == 403 and r.json["responseCode"] == 401, r.json
    assert "managed by this node" in r.json["message"]
    site = await api.get("/api/handles/0.NA/88.118.2?type=HS_SITE")
    assert site.status == 200 and site.json["values"][0]["type"] == "HS_SITE"

"""Authentication and the HS_ADMIN model over real HTTP: the cross-enterprise matrix,
Basic credential forms, failures and rate limiting, the plain-HTTP policy, groups and
server admins."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import pytest

from node.app import Node
from tests.node.http_support import (
    A_HANDLE,
    B_HANDLE,
    DYE_PLANT,
    OPERATOR,
    PREFIX,
    A,
    Api,
    B,
    StartNode,
    SteppedClock,
    admin_of,
    admin_value,
    basic,
    db_state,
    history_of,
    url_value,
)

ENTERPRISES = {"A": A, "B": B}
TARGET = {"A": A_HANDLE, "B": B_HANDLE}


async def _act(api: Api, action: str, actor: str, owner: str) -> Any:
    prefix = PREFIX[ENTERPRISES[owner].credit_code]
    creds = admin_of(ENTERPRISES[actor])
    if action == "create":
        return await api.put(
            f"/api/handles/{prefix}/MATRIX-NEW",
            [url_value(1, "https://example.com/n")],
            headers=creds,
        )
    if action == "modify":
        return await api.put(
            f"/api/handles/{TARGET[owner]}?index=1",
            [url_value(1, "https://evil.example.com/")],
            headers=creds,
        )
    if action == "delete":
        return await api.delete(f"/api/handles/{TARGET[owner]}", headers=creds)
    assert action == "read-private"
    return await api.get(f"/api/handles/{prefix}/ADMIN", headers=creds)


@pytest.mark.parametrize("action", ["create", "modify", "delete", "read-private"])
@pytest.mark.parametrize("actor, owner", [("A", "A"), ("A", "B"), ("B", "B"), ("B", "A")])
async def test_enterprise_matrix(
    api: Api, database_url: str, action: str, actor: str, owner: str
) -> None:
    """An enterprise's admin can do everything on its own prefix and nothing (beyond
    public reads) on another's: 403, and the registry is untouched."""
    before = await db_state(database_url)
    r = await _act(api, action, actor, owner)
    after = await db_state(database_url)
    if actor == owner:
        assert r.status in (200, 201), r.text
        if action == "read-private":
            assert 300 in [v["index"] for v in r.json["values"]]
            assert after == before
        else:
            assert after != before
            key = "88.118.2/MATRIX-NEW" if action == "create" else TARGET[owner]
            if owner == "B" and action == "create":
                key = "88.118.3/MATRIX-NEW"
            assert (await history_of(database_url, key.upper()))[-1][
                1
            ] == f"300:{PREFIX[ENTERPRISES[actor].credit_code]}/ADMIN"
    else:
        assert r.status == 403, r.text
        assert r.json["responseCode"] in (400, 401) and "values" not in r.json
        assert after == before  # handles, versions and history all unchanged


async def test_basic_user_forms(api: Api) -> None:
    path = "/api/handles/88.118.2/ADMIN"
    for headers in (
        basic("300:88.118.2/ADMIN", A.admin_secret),  # percent-encoded: 300%3A88.118.2%2FADMIN
        basic("300:88.118.2/admin", A.admin_secret),  # handle case folds
        basic("88.118.2/ADMIN", A.admin_secret),  # no index: any HS_SECKEY of the handle
        basic("300:88.118.2/ADMIN", A.admin_secret, encode_user=False),  # curl -u style
    ):
        r = await api.get(path, headers=headers)
        assert r.status == 200 and 300 in [v["index"] for v in r.json["values"]], (headers, r.text)
    # The password is never percent-decoded: "%41" is not "A".
    r = await api.get(path, headers=basic("300:88.118.2/ADMIN", A.admin_secret.replace("d", "%64")))
    assert r.status == 401


@pytest.mark.parametrize(
    "headers, reason",
    [
        (basic("300:88.118.2/ADMIN", "not-the-secret"), "bad_secret"),
        (basic("300:88.118.2/NO-SUCH-ADMIN", "x"), "unknown_admin"),
        (basic("1:88.118.2/ADMIN", A.admin_secret), "no_secret_key"),  # index 1 holds no HS_SECKEY
        (basic("300:88.118.2/ROLL-2026-000123", "x"), "no_secret_key"),
        ({"Authorization": "Basic bm9jb2xvbg=="}, "malformed"),  # "nocolon"
        ({"Authorization": "Bearer abc"}, "bad_token"),  # not a token this node issued
        ({"Authorization": "Digest abc"}, "unsupported"),
    ],
)
async def test_failed_authentication(
    http_node: Node, api: Api, headers: dict[str, str], reason: str
) -> None:
    r = await api.get(A_HANDLE.join(["/api/handles/", ""]), headers=headers)
    # Wrong credentials: 401 with a challenge (the reference's answer, what REST clients
    # key on); credentials that cannot even be read: 403.
    wrong = reason in ("bad_secret", "unknown_admin", "no_secret_key", "bad_token")
    assert (r.status, r.json["responseCode"]) == ((401, 403) if wrong else (403, 404)), r.text
    assert ("WWW-Authenticate" in r.headers) == wrong and r.json["handle"] == A_HANDLE
    assert "not-the-secret" not in r.text
    value = http_node.metrics.registry.get_sample_value(
        "idnode_auth_failures_total", {"front": "http", "reason": reason}
    )
    assert value == 1


async def test_writes_need_credentials(api: Api, database_url: str) -> None:
    before = await db_state(database_url)
    r = await api.put("/api/handles/88.118.2/ANON", [url_value(1, "u")])
    assert (r.status, r.json["responseCode"]) == (401, 402)
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    r = await api.delete("/api/handles/" + A_HANDLE)
    assert (r.status, r.json["responseCode"]) == (401, 402)
    assert await db_state(database_url) == before


async def test_failures_are_rate_limited_per_address(start_http_node: StartNode) -> None:
    node = await start_http_node(http_auth_max_failures=3, http_auth_failure_window_s=60)
    clock = node.monotonic
    assert isinstance(clock, SteppedClock)
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        path = "/api/handles/88.118.2/ADMIN"
        for _ in range(3):
            assert (await api.get(path, headers=basic("300:88.118.2/ADMIN", "wrong"))).status == 401
        r = await api.get(path, headers=admin_of(A))  # even the right secret waits now
        assert r.status == 429 and r.json["responseCode"] == 3
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert (await api.get(path)).status == 200  # anonymous reads are not limited
        clock.advance(61)
        r = await api.get(path, headers=admin_of(A))
        assert r.status == 200 and 300 in [v["index"] for v in r.json["values"]]
    samples = node.metrics.registry
    assert samples.get_sample_value("idnode_auth_rate_limited_total", {"front": "http"}) == 1
    assert (
        samples.get_sample_value(
            "idnode_auth_failures_total", {"front": "http", "reason": "bad_secret"}
        )
        == 3
    )


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the route towards a TEST-NET
    address; no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


@pytest.mark.parametrize(
    "policy, accepted", [("loopback", False), ("allow", True), ("refuse", False)]
)
async def test_plain_http_credentials_from_another_host(
    start_http_node: StartNode, policy: str, accepted: bool
) -> None:
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    node = await start_http_node(bind="0.0.0.0", http_plain_credentials=policy)
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://{addr}:{node.http_port}")
        r = await api.get("/api/handles/88.118.2/ADMIN", headers=admin_of(A))
        if accepted:
            assert r.status == 200 and 300 in [v["index"] for v in r.json["values"]]
        else:
            assert (r.status, r.json["responseCode"]) == (403, 404)
            assert (
                "plain HTTP" in r.json["message"] and "http_plain_credentials" in r.json["message"]
            )
        assert (await api.get("/api/handles/88.118.2/ADMIN")).status == 200  # anonymous still fine


async def test_plain_http_policy_on_loopback(start_http_node: StartNode) -> None:
    for policy, status in (("loopback", 200), ("refuse", 403)):
        node = await start_http_node(http_plain_credentials=policy)
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{node.http_port}")
            assert (
                await api.get("/api/handles/88.118.2/ADMIN", headers=admin_of(A))
            ).status == status


async def test_admin_group_membership(api: Api, database_url: str) -> None:
    """HS_ADMIN naming an HS_VLIST group admits its members, transitively; a group
    loop does not hang the check."""
    group = "88.118.2/GROUPS"
    await api.put(
        f"/api/handles/{group}",
        [
            admin_value("88.118.2"),
            {
                "index": 200,
                "type": "HS_VLIST",
                "data": {"format": "vlist", "value": [{"handle": group, "index": 201}]},
            },  # -> nested group
            {
                "index": 201,
                "type": "HS_VLIST",
                "data": {
                    "format": "vlist",
                    "value": [
                        {"handle": group, "index": 200},  # a loop back
                        {"handle": "88.118.5/ADMIN", "index": 300},
                    ],
                },
            },  # the dye plant's admin
        ],
        headers=admin_of(A),
    )
    shared = "88.118.2/SHARED-ROLL"
    group_admin = {
        "index": 101,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": group, "index": 200, "permissions": "000001010000"},
        },
    }  # ADD_VALUE + MODIFY_VALUE
    r = await api.put(
        f"/api/handles/{shared}",
        [admin_value("88.118.2"), group_admin, url_value(1, "a")],
        headers=admin_of(A),
    )
    assert r.status == 200
    dye = admin_of(DYE_PLANT)
    r = await api.put(
        f"/api/handles/{shared}?index=1", [url_value(1, "changed by the dye plant")], headers=dye
    )
    assert r.status == 200, r.text
    assert (await history_of(database_url, shared))[-1] == ("modify", "300:88.118.5/ADMIN")
    r = await api.delete(f"/api/handles/{shared}", headers=dye)  # no DELETE_HANDLE bit
    assert (r.status, r.json["responseCode"]) == (403, 401) and "DELETE_HANDLE" in r.json["message"]
    r = await api.put(f"/api/handles/{shared}?index=1", [url_value(1, "b")], headers=admin_of(B))
    assert (r.status, r.json["responseCode"]) == (403, 400)  # not in the group


async def test_server_admins_from_settings(start_http_node: StartNode) -> None:
    node = await start_http_node(server_admins="300:88.118/ADMIN")
    op = basic("300:88.118/ADMIN", OPERATOR.admin_secret)
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        assert (
            await api.put("/api/handles/88.118.3/BY-OPERATOR", [url_value(1, "u")], headers=op)
        ).status == 200
        assert 300 in [
            v["index"]
            for v in (await api.get("/api/handles/88.118.3/ADMIN", headers=op)).json["values"]
        ]
        assert (await api.delete("/api/handles/" + B_HANDLE, headers=op)).status == 200
        # Without the setting the operator of 88.118 has no power over 88.118.3.
        other = await start_http_node()
        api2 = Api(session, f"http://127.0.0.1:{other.http_port}")
        assert (
            await api2.put("/api/handles/88.118.3/BY-OPERATOR-2", [url_value(1, "u")], headers=op)
        ).status == 403

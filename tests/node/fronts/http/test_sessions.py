"""REST challenge-response sessions (``/api/sessions``) over real HTTP on loopback: the
session life cycle, HS_PUBKEY answers with RSA, EC and DSA keys, failures and their rate
limit, expiry on the stepped clock, the HS_SECKEY decision, limits and the plain-HTTP
policy. Every reply is checked against the OpenAPI document (``Api``)."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from node.app import Node
from tests.node.challenge_support import PrivateKey, answer, new_key, pubkey_value, session_header
from tests.node.http_support import (
    A,
    Api,
    B,
    StartNode,
    SteppedClock,
    admin_of,
    db_state,
    history_of,
    url_value,
)

A_ADMIN = "300:88.118.2/ADMIN"
# A challenge answer with a signature that can only be wrong; {{sid}} stays for the test.
ANSWER = (
    'Handle sessionId="{{sid}}", id="{who}", type="HS_PUBKEY", cnonce="{cnonce}", alg="{alg}", '
    'signature="AAAA"'
)


def _clock(node: Node) -> SteppedClock:
    assert isinstance(node.monotonic, SteppedClock)
    return node.monotonic


def _failures(node: Node, reason: str) -> float | None:
    return node.metrics.registry.get_sample_value(
        "idnode_auth_failures_total", {"front": "http", "reason": reason}
    )


async def _install_key(
    api: Api, key: PrivateKey, prefix: str = "88.118.2", creds: dict[str, str] | None = None
) -> None:
    """Index 300 of <prefix>/ADMIN becomes an HS_PUBKEY (it held the HS_SECKEY the
    prefix's HS_ADMIN names), written with the enterprise's Basic credentials."""
    r = await api.put(
        f"/api/handles/{prefix}/ADMIN?index=300", [pubkey_value(key)], headers=creds or admin_of(A)
    )
    assert r.status == 200, r.text


async def _new_session(api: Api, **kw: Any) -> dict[str, Any]:
    r = await api.post("/api/sessions", **kw)
    assert r.status == 201, r.text
    assert r.headers["Location"] == "/api/sessions/this"
    return dict(r.json)


@pytest.fixture
async def limited_node(start_http_node: StartNode) -> Node:
    return await start_http_node(http_auth_max_failures=3, http_auth_failure_window_s=60)


async def test_session_life_cycle(api: Api) -> None:
    s = await _new_session(api)
    assert s["authenticated"] is False and "id" not in s
    assert len(base64.b64decode(s["nonce"])) == 16 and len(s["sessionId"]) >= 32
    r = await api.get("/api/sessions/this", headers=session_header(s["sessionId"]))
    assert r.status == 200 and r.json == s and r.headers["Cache-Control"] == "no-store"
    other = await _new_session(api)
    assert other["sessionId"] != s["sessionId"] and other["nonce"] != s["nonce"]
    r = await api.delete("/api/sessions/this", headers=session_header(s["sessionId"]))
    assert r.status == 204 and r.text == ""
    for method in ("GET", "DELETE", "PUT"):
        r = await api.call(method, "/api/sessions/this", headers=session_header(s["sessionId"]))
        assert (r.status, r.json["responseCode"]) == (401, 402) and "POST /api/sessions" in r.json[
            "message"
        ]
    assert (
        await api.get("/api/sessions/this", headers=session_header(other["sessionId"]))
    ).status == 200
    # Without a session the reply says whether the request's own credentials authenticate.
    assert (await api.get("/api/sessions/this")).json == {"authenticated": False}
    assert (await api.get("/api/sessions/this", headers=admin_of(A))).json == {
        "authenticated": True,
        "id": A_ADMIN,
    }
    r = await api.post("/api/sessions", headers=session_header(other["sessionId"]))
    assert r.status == 400  # POST creates: naming a session there is a client bug
    r = await api.get("/api/sessions")
    assert r.status == 405 and "POST" in r.headers["Allow"]
    r = await api.delete("/api/sessions/this")
    assert r.status == 403 and "sessionId" in r.json["message"]


@pytest.mark.parametrize(
    "kind, alg, raw_ec, encode_id",
    [
        ("rsa", "SHA256", False, True),
        ("rsa", "SHA1", False, False),
        ("ec", "SHA256", False, True),
        ("ec", "SHA-256", True, False),
        ("dsa", "SHA1", False, True),
    ],
)
async def test_challenge_answered_with_hs_pubkey(
    api: Api, database_url: str, kind: str, alg: str, raw_ec: bool, encode_id: bool
) -> None:
    key = new_key(kind)
    await _install_key(api, key)
    s = await _new_session(api)
    r = await api.put(
        "/api/sessions/this",
        headers=answer(s, A_ADMIN, key, alg, raw_ec=raw_ec, encode_id=encode_id),
    )
    assert r.status == 200, r.text
    assert r.json == {**s, "authenticated": True, "id": A_ADMIN}
    only_session = session_header(s["sessionId"])
    assert (await api.get("/api/sessions/this", headers=only_session)).json["authenticated"] is True
    r = await api.put(
        "/api/handles/88.118.2/BY-SESSION",
        [url_value(1, "https://example.com/s")],
        headers=only_session,
    )
    assert r.status == 200, r.text
    assert (await history_of(database_url, "88.118.2/BY-SESSION"))[-1] == ("create", A_ADMIN)
    r = await api.get(
        "/api/handles/88.118.2/ADMIN", headers=only_session
    )  # admin-only values readable
    assert r.status == 200 and r.headers["Cache-Control"] == "private, no-store"
    r = await api.put("/api/handles/88.118.3/BY-A", [url_value(1, "u")], headers=only_session)
    assert (r.status, r.json["responseCode"]) == (403, 400)  # A's admin has no say over B's prefix


async def test_answer_by_index_zero_finds_the_key(api: Api) -> None:
    key = new_key("ec")
    await _install_key(api, key)
    s = await _new_session(api)
    r = await api.put("/api/sessions/this", headers=answer(s, "88.118.2/ADMIN", key))  # no index
    assert r.json["id"] == A_ADMIN  # the index of the HS_PUBKEY that verified


async def test_wrong_signature_is_refused_and_rate_limited(
    limited_node: Node, database_url: str
) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{limited_node.http_port}")
        key = new_key("rsa")
        await _install_key(api, key)
        s = await _new_session(api)
        wrong = [
            answer(s, A_ADMIN, key, tamper=True),
            answer(s, A_ADMIN, new_key("ec")),  # somebody else's key
            answer(s, "300:88.118.3/ADMIN", key),  # B's admin holds no HS_PUBKEY
        ]
        for headers in wrong:
            r = await api.put("/api/sessions/this", headers=headers)
            assert (r.status, r.json["responseCode"]) == (401, 403), r.text
        assert _failures(limited_node, "bad_signature") == 2
        assert _failures(limited_node, "no_public_key") == 1
        r = await api.put(
            "/api/sessions/this", headers=answer(s, A_ADMIN, key)
        )  # right, but too late
        assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
        r = await api.put(
            "/api/handles/88.118.2/X", [url_value(1, "u")], headers=session_header(s["sessionId"])
        )
        assert r.status == 429  # the session is still not authenticated, and the address waits
        _clock(limited_node).advance(61)
        r = await api.get("/api/sessions/this", headers=session_header(s["sessionId"]))
        assert r.json["authenticated"] is False
        r = await api.put("/api/sessions/this", headers=answer(s, A_ADMIN, key))
        assert r.status == 200 and r.json["authenticated"] is True


@pytest.mark.parametrize(
    "header, reason",
    [
        (
            'Handle sessionId="{sid}", id="300:88.118.2/ADMIN", type="HS_PUBKEY"',
            "malformed",
        ),  # fields missing
        (ANSWER.format(who="300:88.118.2/ADMIN", cnonce="AAAA", alg="MD5"), "malformed"),
        (ANSWER.format(who="300:88.118.2/ADMIN", cnonce="!!", alg="SHA256"), "malformed"),
        (ANSWER.format(who="300:88.118.2/NOBODY", cnonce="AAAA", alg="SHA256"), "unknown_admin"),
        (
            ANSWER.format(who="1:88.118.2/ADMIN", cnonce="AAAA", alg="SHA256"),
            "no_public_key",
        ),  # URL at 1
        ('Handle version="1", sessionId="{sid}"', "malformed"),
        ('Handle id="300:88.118.2/ADMIN"', "malformed"),  # no session
        ('Handle sessionId="{sid}" id="x"', "malformed"),  # no comma
        ('Handle sessionId="not-a-session"', "unknown_session"),
    ],
)
async def test_bad_answers(http_node: Node, api: Api, header: str, reason: str) -> None:
    s = await _new_session(api)
    r = await api.put(
        "/api/sessions/this", headers={"Authorization": header.format(sid=s["sessionId"])}
    )
    # Credentials checked and wrong: 401 (as the reference); unreadable ones: 403.
    assert r.status == (403 if reason == "malformed" else 401), r.text
    assert _failures(http_node, reason) == 1


async def test_idle_session_expires(api: Api, http_node: Node, database_url: str) -> None:
    key = new_key("ec")
    await _install_key(api, key)
    s = await _new_session(api)
    assert (await api.put("/api/sessions/this", headers=answer(s, A_ADMIN, key))).json[
        "authenticated"
    ]
    timeout = http_node.settings.http_session_idle_timeout_s
    only_session = session_header(s["sessionId"])
    for _ in range(3):  # each use restarts the idle clock
        _clock(http_node).advance(timeout - 1)
        assert (await api.get("/api/sessions/this", headers=only_session)).json["authenticated"]
    _clock(http_node).advance(timeout)
    before = await db_state(database_url)
    r = await api.put("/api/handles/88.118.2/LATE", [url_value(1, "u")], headers=only_session)
    assert (r.status, r.json["responseCode"]) == (401, 402)
    assert await db_state(database_url) == before
    assert _failures(http_node, "unknown_session") == 1


async def test_deleted_session_is_unusable(api: Api, database_url: str) -> None:
    key = new_key("rsa")
    await _install_key(api, key)
    s = await _new_session(api)
    await api.put("/api/sessions/this", headers=answer(s, A_ADMIN, key))
    only_session = session_header(s["sessionId"])
    assert (await api.delete("/api/sessions/this", headers=only_session)).status == 204
    before = await db_state(database_url)
    r = await api.put("/api/handles/88.118.2/AFTER", [url_value(1, "u")], headers=only_session)
    assert r.status == 401 and await db_state(database_url) == before


async def test_unauthenticated_session_is_anonymous(api: Api) -> None:
    s = await _new_session(api)
    only_session = session_header(s["sessionId"])
    r = await api.get("/api/handles/88.118.2/ADMIN", headers=only_session)
    assert r.status == 200 and 300 not in [
        v["index"] for v in r.json["values"]
    ]  # public values only
    r = await api.put("/api/handles/88.118.2/ANON", [url_value(1, "u")], headers=only_session)
    assert (r.status, r.json["responseCode"]) == (401, 402) and "session" in r.json["message"]
    # The challenge to answer is that session's (docs/rest-api.md), not Basic.
    assert (
        r.headers["WWW-Authenticate"]
        == f'Handle sessionId="{s["sessionId"]}", nonce="{s["nonce"]}"'
    )


async def test_hs_seckey_answer_refused_basic_session_instead(
    start_http_node: StartNode, database_url: str
) -> None:
    """HS_SECKEY answers are not taken over REST: 403 with the way out, not counted as a
    failure; POST /api/sessions with Basic gives a session."""
    node = await start_http_node(http_auth_max_failures=1)
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        s = await _new_session(api)
        header = answer(s, A_ADMIN, new_key("rsa"), "SHA256", kind="HS_SECKEY")
        r = await api.put("/api/sessions/this", headers=header)
        assert (r.status, r.json["responseCode"]) == (403, 404)
        assert (
            "not accepted over REST" in r.json["message"]
            and "POST /api/sessions with HTTP Basic" in r.json["message"]
        )
        assert _failures(node, "seckey_unsupported") == 1
        made = await _new_session(
            api, headers=admin_of(A)
        )  # not rate-limited: the refusal did not count
        assert made["authenticated"] is True and made["id"] == A_ADMIN
        r = await api.put(
            "/api/handles/88.118.2/BY-BASIC-SESSION",
            [url_value(1, "u")],
            headers=session_header(made["sessionId"]),
        )
        assert r.status == 200
        assert (await history_of(database_url, "88.118.2/BY-BASIC-SESSION"))[-1] == (
            "create",
            A_ADMIN,
        )
        r = await api.post("/api/sessions", headers={"Authorization": "Basic bm9jb2xvbg=="})
        assert r.status == 403  # wrong credentials create no session


async def test_session_limit(start_http_node: StartNode) -> None:
    node = await start_http_node(http_sessions_max=2)
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        first, second = await _new_session(api), await _new_session(api)
        await _new_session(api)  # full: the oldest unauthenticated session makes room
        assert (
            await api.get("/api/sessions/this", headers=session_header(first["sessionId"]))
        ).status == 401
        assert (
            await api.get("/api/sessions/this", headers=session_header(second["sessionId"]))
        ).status == 200
        await _new_session(api, headers=admin_of(A))
        await _new_session(api, headers=admin_of(B))
        r = await api.post("/api/sessions")  # every slot holds an admin's session: keep them
        assert (r.status, r.json["responseCode"]) == (503, 3) and r.headers["Retry-After"]
        assert node.sessions is not None and node.sessions.counts() == (0, 2)


async def test_plain_http_policy_covers_session_ids(start_http_node: StartNode) -> None:
    node = await start_http_node(http_plain_credentials="refuse")
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        s = await _new_session(api)  # an unauthenticated session holds nothing worth stealing
        r = await api.put("/api/sessions/this", headers=answer(s, A_ADMIN, new_key("ec")))
        assert (r.status, r.json["responseCode"]) == (403, 404) and "plain HTTP" in r.json[
            "message"
        ]
        assert _failures(node, "plain_http") == 1


async def test_session_endpoints_alias_forms(http_node: Node) -> None:
    """What the reference also accepts: ``POST /api/sessions/`` (a common client posts
    there) and POST on ``/this`` as PUT."""
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{http_node.http_port}"
        async with http.post(base + "/api/sessions/") as resp:
            assert resp.status == 201
            s = await resp.json()
        async with http.post(
            base + "/api/sessions/this", headers=session_header(s["sessionId"])
        ) as resp:
            assert resp.status == 200 and (await resp.json())["sessionId"] == s["sessionId"]
        async with http.options(
            base + "/api/sessions",
            headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST"},
        ) as resp:
            assert resp.status == 204 and "POST" in resp.headers["Access-Control-Allow-Methods"]

"""Password guessing over real HTTP (issue 14, finding 4): concurrent guesses are limited
before they are checked, the limit keys on the real client behind a trusted proxy (its
IPv6 /64) and on the identity guessed at, a full queue of checks is refused at once,
and an unknown admin costs and reads exactly like a wrong secret."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from node.app import Node
from tests.node.abuse_auth_support import checks_run, sample
from tests.node.http_support import A, Api, B, StartNode, SteppedClock, admin_of, basic
from tests.node.wait_support import until

PATH = "/api/handles/88.118.2/ADMIN?auth=true"
PATH_B = "/api/handles/88.118.3/ADMIN?auth=true"
ADMIN_A = "300:88.118.2/ADMIN"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def api_of(node: Node, http: aiohttp.ClientSession) -> Api:
    return Api(http, f"http://127.0.0.1:{node.http_port}")


def via(client: str, **headers: str) -> dict[str, str]:
    """Headers of a request a TLS proxy on this host forwards for ``client``."""
    return {"X-Forwarded-For": client, **headers}


async def test_concurrent_guesses_are_limited_before_they_are_checked(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    """200 wrong passwords at once: at most the limit is checked, the rest are refused
    without costing a check (the finding: all 200 were checked, none limited)."""
    node = await start_http_node(http_auth_max_failures=5)
    api = api_of(node, session)
    replies = await asyncio.gather(
        *(api.get(PATH, headers=basic(ADMIN_A, f"guess-{n}")) for n in range(200))
    )
    statuses = Counter(r.status for r in replies)
    assert statuses[401] <= 5 and statuses[401] + statuses[429] == 200, statuses
    assert checks_run(node) <= 5
    r = await api.get(PATH, headers=admin_of(A))  # the address is blocked now, rightly
    assert r.status == 429


async def test_behind_a_trusted_proxy_only_the_guesser_waits(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    """The node behind a TLS proxy on loopback: ten bad guesses from one client used to
    lock every admin out (all requests came from 127.0.0.1)."""
    node = await start_http_node(http_auth_max_failures=3)
    api = api_of(node, session)
    for n in range(3):
        # The guesser varies what it prepends; the proxy's own entry is last.
        r = await api.get(PATH, headers=via(f"10.9.9.{n}, 203.0.113.9", **basic(ADMIN_A, "x")))
        assert r.status == 401
    r = await api.get(PATH, headers=via("203.0.113.9", **admin_of(A)))
    assert r.status == 429 and "203.0.113.9" in r.json["message"]
    r = await api.get(PATH, headers=via("198.51.100.20, 127.0.0.1", **admin_of(A)))
    assert r.status == 200  # another client, through two proxies of ours
    assert (await api.get(PATH_B, headers=admin_of(B))).status == 200  # the proxy itself: free


async def test_forwarded_for_counts_only_from_trusted_proxies(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    node = await start_http_node(http_auth_max_failures=2, http_trusted_proxies="192.0.2.0/24")
    api = api_of(node, session)
    for n in range(2):  # loopback is not a trusted proxy here: its header is ignored
        r = await api.get(PATH, headers=via(f"203.0.113.{n}", **basic(ADMIN_A, "x")))
        assert r.status == 401
    r = await api.get(PATH, headers=via("198.51.100.1", **admin_of(A)))
    assert r.status == 429


async def test_ipv6_clients_count_per_64(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    node = await start_http_node(http_auth_max_failures=2)
    api = api_of(node, session)
    for host in ("2001:db8:1:2::10", "2001:db8:1:2:ffff::1"):
        assert (await api.get(PATH, headers=via(host, **basic(ADMIN_A, "x")))).status == 401
    r = await api.get(PATH, headers=via("2001:db8:1:2::99", **admin_of(A)))
    assert r.status == 429 and "2001:db8:1:2::/64" in r.json["message"]
    assert (await api.get(PATH, headers=via("2001:db8:1:3::1", **admin_of(A)))).status == 200


async def test_one_identity_is_limited_from_any_address(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    node = await start_http_node(http_auth_max_failures=10, auth_identity_max_failures=3)
    api = api_of(node, session)
    for who in (ADMIN_A, "300:88.118.2/NOBODY"):  # unknown identities count the same
        for n in range(3):
            r = await api.get(PATH, headers=via(f"203.0.113.{n}", **basic(who, "x")))
            assert r.status == 401
    fresh = "198.51.100.7"
    r = await api.get(PATH, headers=via(fresh, **admin_of(A)))
    assert r.status == 429 and "88.118.2/ADMIN" in r.json["message"]
    r = await api.get(PATH, headers=via(fresh, **basic("300:88.118.2/NOBODY", "x")))
    assert r.status == 429
    assert (await api.get(PATH_B, headers=via(fresh, **admin_of(B)))).status == 200
    clock = node.monotonic
    assert isinstance(clock, SteppedClock)
    clock.advance(node.settings.http_auth_failure_window_s + 1)
    assert (await api.get(PATH, headers=via(fresh, **admin_of(A)))).status == 200


async def test_a_full_queue_of_checks_is_refused_at_once(
    start_http_node: StartNode, session: aiohttp.ClientSession
) -> None:
    """More checks waiting than auth_checks_queue_max: 503 with Retry-After at once, not
    a login delayed behind a flood; nothing counted as a failure."""
    node = await start_http_node(auth_checks_queue_max=2)
    api = api_of(node, session)
    gate = node.auth_limiter
    pool = gate.pool
    release = threading.Event()
    holders = [
        asyncio.create_task(pool.run(f"flood-{n}", release.wait, 30.0))
        for n in range(pool.workers + 2)
    ]
    try:
        await until(lambda: pool.waiting == 2)
        r = await api.get(PATH, headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (503, 3) and r.headers["Retry-After"] == "1"
        assert sample(node, "idnode_auth_checks_total", {"outcome": "busy"}) == 1
    finally:
        release.set()
        await asyncio.gather(*holders)
    assert (await api.get(PATH, headers=admin_of(A))).status == 200


async def test_an_unknown_admin_costs_and_reads_like_a_wrong_secret(
    http_node: Node, api: Api
) -> None:
    """Unknown admins and admins without a secret get the same work (one check in the
    worker threads) and the same answer as a wrong secret (the finding: 2 ms vs 300 ms)."""
    cases = {
        ADMIN_A: "wrong secret",
        "300:88.118.2/NOBODY": "unknown admin",
        "1:88.118.2/ADMIN": "index 1 holds no HS_SECKEY",
        "300:88.118.2/ROLL-2026-000123": "a record with no HS_SECKEY at all",
    }
    answers = []
    for who in cases:
        before = checks_run(http_node)
        r = await api.get(PATH, headers=basic(who, "not-the-secret"))
        assert checks_run(http_node) - before == 1, cases[who]
        answers.append((r.status, r.json["responseCode"], r.json["message"].replace(who, "<id>")))
    assert len(set(answers)) == 1, answers

"""The native administration benchmark's own pieces, cheaply, against a real node with
the demo data started in this process (the node fixtures of tests/node/conftest.py are
not visible from here): each row's closed loop for a fraction of a second, then what
it counted against the registry and the node's own counters. (The benchmark itself:
loadtest/native_admin.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.native_admin import (
    CHALLENGED,
    HTTP,
    LOGIN,
    LOGIN_INDEX,
    SESSION,
    Counts,
    Plan,
    Records,
    Tally,
    Target,
    check_counts,
    count_created,
    create_login_identity,
    handle_name,
    http_creates,
    http_session,
    login_handle,
    login_once,
    logins,
    native_creates,
    row_pattern,
    run_tag,
    table,
    tcp_counts,
    vs_http,
)
from node.app import Node
from node.client.admin import AdminError, Credentials
from node.settings import load_settings
from protocol.codes import ResponseCode

CLIENTS = 2
WARMUP_S = 0.1
SECONDS = 0.4

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def demo_node(database_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    settings = load_settings(
        env={},
        flags={
            "database_url": database_url,
            "data_dir": str(tmp_path / "node"),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
        },
    )
    node = Node(settings)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def counters(node: Node) -> Samples:
    """The node's counters in the shape ``loadtest.harness.scrape`` reads them."""
    out: Samples = {}
    for family in node.metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def plan_for(node: Node) -> Plan:
    assert node.handle_port and node.http_port
    return Plan(
        Target("127.0.0.1", node.handle_port, node.http_port),
        run_tag(),
        CLIENTS,
        WARMUP_S,
        SECONDS,
        Records(2),
    )


def assert_tally(tally: Tally) -> None:
    assert not tally.errors, tally.errors
    assert 0 < tally.measured <= tally.ok
    assert all(s > 0 for s in tally.latencies_s)
    assert tally.rate == tally.measured / SECONDS


async def test_each_row_counts_what_the_node_and_registry_hold(
    demo_node: Node, database_url: str
) -> None:
    plan = plan_for(demo_node)
    tallies: list[Tally] = []
    for session in (True, False):
        before = counters(demo_node)
        tally = await native_creates(plan, session=session)
        assert_tally(tally)
        tallies.append(tally)
        # K creates acknowledged -> K handles, one 402 per client (session) or per create.
        row = SESSION if session else CHALLENGED
        assert await count_created(database_url, row_pattern(plan.run, row)) == tally.ok
        counted, problems = check_counts(tally, tcp_counts(before, counters(demo_node)))
        assert problems == [], counted
        challenged = CLIENTS if session else tally.ok
        assert f"RC 402 x{challenged}, RC 1 x{tally.ok}" in counted

    async with http_session(CLIENTS) as http:
        tally = await http_creates(plan, http)
        assert_tally(tally)
        tallies.append(tally)
        assert await count_created(database_url, row_pattern(plan.run, HTTP)) == tally.ok

        key = ec.generate_private_key(ec.SECP256R1())
        creds = Credentials(login_handle(plan.run), LOGIN_INDEX, private_key=key)
        await create_login_identity(http, plan.target, creds.handle, key)
    # A login holds on its connection: the second 2001 on it is not challenged.
    await login_once(plan.target, creds, again=True)
    before = counters(demo_node)
    tally = await logins(plan, creds)
    assert_tally(tally)
    tallies.append(tally)
    counted, problems = check_counts(tally, tcp_counts(before, counters(demo_node)))
    assert problems == [], counted

    lines = table(tallies)
    assert len(lines) == 5 and "vs http" in lines[0]
    assert vs_http(tallies, tallies[2]) == 1.0  # the HTTP row against itself


async def test_a_login_with_another_key_is_refused(demo_node: Node) -> None:
    plan = plan_for(demo_node)
    key = ec.generate_private_key(ec.SECP256R1())
    async with http_session(1) as http:
        await create_login_identity(http, plan.target, login_handle(plan.run), key)
    wrong = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AdminError) as err:
        await login_once(
            plan.target, Credentials(login_handle(plan.run), LOGIN_INDEX, private_key=wrong)
        )
    assert err.value.response_code == ResponseCode.AUTHENTICATION_FAILED


def test_disagreements_are_problems() -> None:
    tally = Tally(CHALLENGED, clients=2, seconds=1.0, ok=5)
    _, problems = check_counts(
        tally, _counts(("create_handle", "1", 5), ("create_handle", "402", 5))
    )
    assert problems == []
    _, problems = check_counts(
        tally, _counts(("create_handle", "1", 4), ("create_handle", "402", 5))
    )
    assert any("RC 1" in p for p in problems)
    session = Tally(SESSION, clients=2, seconds=1.0, ok=5)
    _, problems = check_counts(
        session,
        _counts(("create_handle", "1", 5), ("create_handle", "402", 5), ("session_setup", "1", 2)),
    )
    assert any("challenges" in p for p in problems)  # MACed creates must not be challenged
    login = Tally(LOGIN, clients=1, seconds=1.0, ok=3)
    _, problems = check_counts(
        login, _counts(("login_id_system", "1", 3), ("login_id_system", "402", 3), ("x", "2", 1))
    )
    assert problems == ["other replies {('x', '2'): 1}"]
    assert handle_name("R", SESSION, 1, 2) == "88.118.2/NATADM-R-S-001-000002"


def _counts(*entries: tuple[str, str, int]) -> Counts:
    before: Samples = {}
    after: Samples = {
        ("idnode_requests_total", (("front", "tcp"), ("op", op), ("rc", rc))): float(n)
        for op, rc, n in entries
    }
    return tcp_counts(before, after)

"""Group commit (node/writes/group.py) on a real node and registry: concurrent single
writes share transactions, each is acknowledged only once committed, and one that
fails does not take the others with it."""

from __future__ import annotations

import asyncio

import asyncpg

from node.app import Node
from node.templates.shipped import ROLL
from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.errors import Conflict
from tests.node.conftest import StartNode
from tests.node.templates_support import roll_fields


def values(n: int) -> list[HandleValue]:
    return [HandleValue(1, "URL", f"https://example.com/{n}".encode())]


async def _put(node: Node, n: int, **kw: object) -> object:
    assert node.writes is not None
    return await node.writes.put(
        parse_handle(f"88.118.2/GROUP-{n}"),
        values(n),
        actor="300:88.118.2/ADMIN",
        now=node.now(),
        source="test",
        **kw,  # type: ignore[arg-type]
    )


async def test_concurrent_writes_share_commits(
    start_http_node: StartNode, database_url: str
) -> None:
    node = await start_http_node(write_group_max=64)
    assert node.writes is not None and node.writes._group is not None
    group = node.writes._group
    before_commits, before_changes = group.commits, group.changes
    results = await asyncio.gather(*(_put(node, n) for n in range(200)))
    assert all(r.created for r in results)  # type: ignore[attr-defined]
    commits = group.commits - before_commits
    assert group.changes - before_changes == 200
    assert commits < 100, f"200 concurrent writes took {commits} commits"
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM handles WHERE handle_key LIKE '88.118.2/GROUP-%'"
        )
        history = await conn.fetchval(
            "SELECT count(*) FROM handle_history WHERE handle_key LIKE '88.118.2/GROUP-%'"
        )
    finally:
        await conn.close()
    assert (stored, history) == (200, 200)


async def test_a_failed_write_in_a_group_fails_alone(start_http_node: StartNode) -> None:
    node = await start_http_node(write_group_max=64)
    assert node.writes is not None
    await _put(node, 0)
    # Creates only (overwrite=False) of one existing handle with other content, among
    # new ones: that one is refused, the others commit in the same groups.
    outcomes = await asyncio.gather(
        *(
            _put(node, n if n % 10 else 0, overwrite=False)
            if n % 10
            else node.writes.put(
                parse_handle("88.118.2/GROUP-0"),
                values(99),
                actor="t",
                now=node.now(),
                source="test",
                overwrite=False,
            )
            for n in range(1, 51)
        ),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 5 and all(isinstance(o, Conflict) for o in refused)
    assert len(outcomes) - len(refused) == 45


async def test_template_checked_records_group_too(start_http_node: StartNode) -> None:
    node = await start_http_node(write_group_max=8)
    assert node.writes is not None

    async def roll(n: int) -> object:
        assert node.writes is not None
        return await node.writes.put(
            parse_handle(f"88.118.2/GROLL-{n}"),
            ROLL.record(roll_fields(n)),
            actor="t",
            now=node.now(),
            source="test",
        )

    group = node.writes._group
    assert group is not None
    before = group.commits
    done = await asyncio.gather(*(roll(n) for n in range(40)))
    assert len(done) == 40
    assert group.commits - before < 40

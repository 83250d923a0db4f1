"""Prefix changes reach a running node without a restart (migration 0004 notifies, the
listener re-reads), and writes under a prefix that cannot take them say why, naming its
status, before anyone is asked for permission."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from node.app import Node
from node.resolution.prefixes import SERVES_MEMO_MAX, ServedPrefixes
from registry.rows import Prefix, PrefixStatus
from registry.store import Registry
from tests.node.http_support import A, Api, admin_of, basic, url_value
from tests.node.process_support import run_idnode

NOW = datetime(2026, 12, 1, tzinfo=UTC)
NEW = "88.118.9"


async def _served(node: Node, condition: object) -> None:
    assert node.resolver is not None
    await asyncio.wait_for(node.resolver.served.wait_until(condition), 10)  # type: ignore[arg-type]


async def test_a_prefix_added_and_enabled_elsewhere_is_served_at_once(
    http_node: Node, api: Api, database_url: str
) -> None:
    assert node_status(http_node, NEW) is None
    # Another writer (here a second connection, as the CLI or another node would be).
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    other = Registry(pool)
    try:
        await other.add_prefix(NEW, A.credit_code, NOW, PrefixStatus.AWAITING_REVIEW)
        await _served(
            http_node, lambda: node_status(http_node, NEW) == PrefixStatus.AWAITING_REVIEW
        )

        refused = await api.put(
            f"/api/handles/{NEW}/ROLL-1", [url_value(1, "https://a")], headers=admin_of(A)
        )
        assert refused.status == 400 and refused.json["responseCode"] == 301, refused.json
        assert refused.json["message"] == f"prefix {NEW} is awaiting review (status 4), not enabled"
        listing = await api.get(f"/api/handles?prefix={NEW}", headers=admin_of(A))
        assert listing.json["message"] == f"prefix {NEW} is awaiting review (status 4), not enabled"

        await other.set_prefix_status(NEW, PrefixStatus.ENABLED, NOW)
        await _served(
            http_node,
            lambda: http_node.resolver is not None and http_node.resolver.served.serves(NEW),
        )
        site = await api.get(f"/api/handles/0.NA/{NEW}?type=HS_SITE")
        assert site.status == 200 and site.json["values"][0]["type"] == "HS_SITE"
        assert NEW in (await api.get("/api/prefixes")).json["prefixes"]
    finally:
        await pool.close()

    # The enterprise's admin handle, written by the operator at the command line; then the
    # enterprise registers under its new prefix over HTTP, all without a restart.
    put = run_idnode(
        "handle",
        "put",
        f"{NEW}/ADMIN",
        "-f",
        "-",
        "--database-url",
        database_url,
        "--data-dir",
        str(http_node.settings.data_dir),
        input='[{"index":300,"type":"HS_SECKEY","data":"nine-secret"}]',
    )
    assert put.returncode == 0, put.stderr
    created = await api.put(
        f"/api/handles/{NEW}/ROLL-1",
        [url_value(1, "https://a")],
        headers=basic(f"300:{NEW}/ADMIN", "nine-secret"),
    )
    assert created.status in (200, 201), created.json


async def test_a_disabled_prefix_stops_being_served_and_says_so(
    http_node: Node, api: Api, database_url: str
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        await Registry(pool).set_prefix_status("88.118.2", PrefixStatus.DISABLED, NOW)
    finally:
        await pool.close()
    await _served(http_node, lambda: node_status(http_node, "88.118.2") == PrefixStatus.DISABLED)
    r = await api.put(
        "/api/handles/88.118.2/ROLL-NEW", [url_value(1, "https://a")], headers=admin_of(A)
    )
    assert r.status == 400 and r.json["responseCode"] == 301
    assert r.json["message"] == "prefix 88.118.2 is disabled (status 0), not enabled"


def node_status(node: Node, prefix: str) -> PrefixStatus | None:
    assert node.resolver is not None
    return node.resolver.served.status(prefix)


async def test_what_serves_remembers_is_forgotten_at_each_update() -> None:
    served = ServedPrefixes(["88.118"])
    row = Prefix("88.200", "88.200", PrefixStatus.ENABLED, "C", "E", NOW, NOW)
    assert not served.serves("88.200.1") and served.serves("88.118.2")
    await served.update([row])
    assert served.serves("88.200.1") and served.serves("88.118.2")
    await served.update([replace(row, status=PrefixStatus.DISABLED)])
    assert not served.serves("88.200") and not served.serves("88.200.1")
    for n in range(SERVES_MEMO_MAX + 10):  # clients choose what they ask about: bounded
        served.serves(f"77.{n}")
    assert served.serves("88.118.2") and len(served._serves) <= SERVES_MEMO_MAX

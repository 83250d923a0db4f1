"""Search by field (migration 0007, ``Registry.search_fields``) against a real
PostgreSQL: keyset paging covers every match once, the total is bounded, prefixes
isolate, and on 200k rows every page is index range scans, never a sequential scan."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.errors import RegistryError
from registry.queries import q
from registry.rows import FieldRows
from registry.store import SEARCH_COUNT_BOUND, Registry
from tests.registry.conftest import MILL, T0

ROLL = "88.118/TPL.TEXTILE.ROLL.V1"
LIFT = "88.119/TPL.ELEVATOR.V1"
URL = HandleValue(1, "URL", b"https://example.com/roll")


async def put_roll(registry: Registry, handle: str, dye_lot: str, roll: str = "P1") -> None:
    """A record holding the lot and roll number, and its field index rows (what the
    write service computes from the template: node.templates.catalog.field_rows)."""
    values = [URL, HandleValue(2009, "rollNumber", roll.encode()), lot_value(dye_lot)]
    rows = FieldRows(indexed=((ROLL, "dyeLot", dye_lot), (ROLL, "rollNumber", roll)))
    await registry.put_handle(parse_handle(handle), values, actor="test", now=T0, fields=rows)


def lot_value(dye_lot: str) -> HandleValue:
    return HandleValue(2014, "dyeLot", dye_lot.encode())


async def every_page(
    registry: Registry, prefixes: list[str] | None, value: str, limit: int
) -> tuple[list[list[str]], int]:
    pages: list[list[str]] = []
    after = ""
    while True:
        total, handles, cursor = await registry.search_fields(
            prefixes, ROLL, "dyeLot", value, after=after, limit=limit
        )
        pages.append(handles)
        if cursor is None:
            return pages, total
        assert cursor == handles[-1].upper()  # the cursor is the last handle key
        after = cursor


async def test_cursor_pages_cover_every_match_once(registry: Registry) -> None:
    # A derived prefix whose keys sort between the parent's ("88.118.2.1/" < "88.118.2/").
    await registry.add_prefix("88.118.2.1", MILL, T0)
    expected = []
    for n in range(250):
        prefix = ("88.118.2", "88.118.2.1", "88.118.5")[n % 3]
        handle = f"{prefix}/Roll-{n:04d}"
        await put_roll(registry, handle, "DL-7", roll=f"P{n}")
        expected.append(handle)
    await put_roll(registry, "88.118.2/OTHER-LOT", "DL-8")  # another value: never listed
    await put_roll(registry, "88.118.2/DL-7-AS-ROLL", "DL-9", roll="DL-7")  # another field
    want = sorted(expected, key=str.upper)

    pages, total = await every_page(registry, None, "DL-7", 100)
    assert [len(p) for p in pages] == [100, 100, 50] and total == 250
    assert [h for p in pages for h in p] == want

    for limit in (1, 7, 249, 250, 1000):
        pages, _ = await every_page(registry, ["88.118.2", "88.118.2.1", "88.118.5"], "DL-7", limit)
        flat = [h for p in pages for h in p]
        assert flat == want, limit
        assert all(len(p) == limit for p in pages[:-1])

    # A template handle in any case finds the same rows (keys are upper-cased).
    total, first, _ = await registry.search_fields(None, ROLL.lower(), "dyeLot", "DL-7", limit=3)
    assert (total, first) == (250, want[:3])


async def test_prefixes_isolate(registry: Registry) -> None:
    await put_roll(registry, "88.118.2/ROLL-A", "DL-SAME")
    await put_roll(registry, "88.118.5/ROLL-B", "DL-SAME")
    assert (await registry.search_fields(["88.118.2"], ROLL, "dyeLot", "DL-SAME"))[:2] == (
        1,
        ["88.118.2/ROLL-A"],
    )
    assert (await registry.search_fields(["88.118.5"], ROLL, "dyeLot", "DL-SAME"))[:2] == (
        1,
        ["88.118.5/ROLL-B"],
    )
    assert await registry.search_fields([], ROLL, "dyeLot", "DL-SAME") == (0, [], None)
    both = await registry.search_fields(None, ROLL, "dyeLot", "DL-SAME")
    assert both == (2, ["88.118.2/ROLL-A", "88.118.5/ROLL-B"], None)
    # The index follows writes: a changed lot moves the roll, a deleted roll is gone.
    await put_roll(registry, "88.118.2/ROLL-A", "DL-NEW")
    assert (await registry.search_fields(None, ROLL, "dyeLot", "DL-SAME"))[1] == ["88.118.5/ROLL-B"]
    await registry.delete_handle(parse_handle("88.118.5/ROLL-B"), actor="test", now=T0)
    assert await registry.search_fields(None, ROLL, "dyeLot", "DL-SAME") == (0, [], None)


async def test_unique_only_fields_are_found(registry: Registry) -> None:
    code = "31103205092026000001"
    rows = FieldRows(unique=((LIFT, "registrationCode", code),))
    await registry.put_handle(
        parse_handle("88.118.2/LIFT-1"), [URL], actor="test", now=T0, fields=rows
    )
    found = await registry.search_fields(None, LIFT, "registrationCode", code, unique=True)
    assert found == (1, ["88.118.2/LIFT-1"], None)
    assert (await registry.search_fields(None, LIFT, "registrationCode", code))[0] == 0


async def test_page_size_is_checked(registry: Registry) -> None:
    for limit in (0, 10001):
        with pytest.raises(RegistryError, match="page size"):
            await registry.search_fields(None, ROLL, "dyeLot", "x", limit=limit)


# --- 200k rows: the plans -------------------------------------------------------------

ROWS = 200_000
HOT = 12_000  # rolls of one dye lot, over the count bound


async def _fill(pool: asyncpg.Pool) -> None:
    """200k rolls (150k under 88.118.2, 50k under 88.118.5): 12k of one hot lot, the rest
    in lots of 40; a field index row each. Written in bulk, as an import would, then
    vacuumed and analysed, as autovacuum does after one."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO handles (handle_key, handle, prefix_key, "values", created_at, updated_at)
            SELECT k, k, p, '\\x00000000'::bytea, $1, $1
            FROM (
                SELECT CASE WHEN i % 4 = 0 THEN '88.118.5' ELSE '88.118.2' END AS p, i
                FROM generate_series(1, $2::int) AS i
            ) AS s, LATERAL (SELECT p || '/BULK-' || lpad(i::text, 7, '0') AS k) AS named
            """,
            T0,
            ROWS,
        )
        await conn.execute(
            """
            INSERT INTO handle_fields (prefix_key, template_key, field, value, handle_key)
            SELECT prefix_key, $1, 'dyeLot',
                   CASE WHEN n <= $2 THEN 'HOT' ELSE 'DL-' || (n % 4700) END, handle_key
            FROM (SELECT prefix_key, handle_key, row_number() OVER (ORDER BY handle_key) AS n
                  FROM handles WHERE handle_key LIKE '%/BULK-%') AS h
            """,
            ROLL.upper(),
            HOT,
        )
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE handles")
        await conn.execute("VACUUM ANALYZE handle_fields")


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every node of an EXPLAIN (FORMAT JSON) plan."""
    out = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name"))]
    for child in plan.get("Plans", ()):
        out += _scans(child)
    return out


async def _plan(
    pool: asyncpg.Pool, name: str, *args: Any
) -> list[tuple[str, str | None, str | None]]:
    doc = await pool.fetchval("EXPLAIN (FORMAT JSON) " + q(name), *args)
    return _scans(json.loads(doc)[0]["Plan"])


async def test_plans_are_index_scans_on_200k_rows(registry: Registry, pool: asyncpg.Pool) -> None:
    await _fill(pool)
    assert await pool.fetchval("SELECT count(*) FROM handle_fields") == ROWS
    prefix_sets: list[list[str] | None] = [None, ["88.118.2"], ["88.118.2", "88.118.5"]]
    for prefixes in prefix_sets:
        for value, after in (("HOT", ""), ("HOT", "88.118.2/BULK-0009000"), ("DL-17", "")):
            found = await _plan(
                pool, "search_fields", prefixes, ROLL.upper(), "dyeLot", value, after, 101
            )
            assert not [s for s in found if s[0] == "Seq Scan" and s[1] != "prefixes"], found
            used = {(t, i) for t, r, i in found if r == "handle_fields"}
            assert used and all(t in ("Index Scan", "Index Only Scan") for t, _ in used), found
            assert {i for _, i in used} == {"handle_fields_pkey"}, found
            assert ("Index Scan", "handles", "handles_pkey") in found, found
        counted = await _plan(
            pool, "count_fields", prefixes, ROLL.upper(), "dyeLot", "HOT", SEARCH_COUNT_BOUND + 1
        )
        assert not [s for s in counted if s[0] == "Seq Scan" and s[1] != "prefixes"], counted
        assert ("Index Only Scan", "handle_fields", "handle_fields_pkey") in counted, counted

    # The count stops at the bound; pages deep in the hot lot go on from their cursor.
    total, page, cursor = await registry.search_fields(
        ["88.118.2", "88.118.5"], ROLL, "dyeLot", "HOT", limit=1000
    )
    assert total == SEARCH_COUNT_BOUND + 1 and len(page) == 1000 and cursor == page[-1]
    seen = set(page)
    while cursor is not None:
        _, page, cursor = await registry.search_fields(
            ["88.118.2", "88.118.5"], ROLL, "dyeLot", "HOT", after=cursor, limit=1000
        )
        assert not seen & set(page)
        seen |= set(page)
    assert len(seen) == HOT
    total, page, cursor = await registry.search_fields(None, ROLL, "dyeLot", "DL-17", limit=1000)
    assert total == len(page) and cursor is None
    assert 0 < total < 100

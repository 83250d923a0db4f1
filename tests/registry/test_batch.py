"""Batches of prepared changes in one transaction (registry/batch.py): atomic and
per-item modes, version checks, unique field values, races replayed item by item."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.batch import BatchRefused, Change
from registry.errors import Conflict, UnknownPrefix
from registry.rows import FieldRows, Record
from registry.store import Registry
from tests.registry.conftest import T0

TPL = "88.118/TPL.TEST.V1"


def rec(handle: str, text: str = "v", version: int = 0, **kw: object) -> Change:
    values = (HandleValue(1, "URL", text.encode()), HandleValue(2, "NOTE", b"n"))
    return Change(parse_handle(handle), values, version, "300:88.118.2/ADMIN", **kw)  # type: ignore[arg-type]


def unique(value: str) -> FieldRows:
    return FieldRows(indexed=((TPL, "serial", value),), unique=((TPL, "serial", value),))


async def count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_batch_writes_every_change_with_its_history(
    registry: Registry, pool: asyncpg.Pool
) -> None:
    changes = [rec(f"88.118.2/B-{n}", f"v{n}") for n in range(300)]
    out = await registry.apply_changes(changes, T0, atomic=True)
    assert all(isinstance(o, Record) and o.version == 1 for o in out)
    assert await count(pool, "handles") == 300
    assert await count(pool, "handle_history") == 300
    got = await registry.get_handle("88.118.2/B-7")
    assert got is not None and got.values[0].data == b"v7"
    assert got.values[0].timestamp == int(T0.timestamp())

    # Changes and deletes in the next batch, against the versions read.
    later = T0 + timedelta(seconds=5)
    out = await registry.apply_changes(
        [
            rec("88.118.2/B-1", "changed", version=1),
            Change(parse_handle("88.118.2/B-2"), None, 1, "300:88.118.2/ADMIN"),
        ],
        later,
        atomic=False,
    )
    assert isinstance(out[0], Record) and out[0].version == 2 and out[1] is None
    assert await registry.get_handle("88.118.2/B-2") is None
    rows = await pool.fetch(
        "SELECT action, version FROM handle_history WHERE handle_key = ANY($1) ORDER BY id",
        ["88.118.2/B-1", "88.118.2/B-2"],
    )
    assert [(r["action"], r["version"]) for r in rows] == [
        ("create", 1),
        ("create", 1),
        ("modify", 2),
        ("delete", 2),
    ]
    # The unchanged value keeps its timestamp, the changed one gets the write time.
    b1 = await registry.get_handle("88.118.2/B-1")
    assert b1 is not None
    assert [v.timestamp for v in b1.values] == [int(later.timestamp()), int(T0.timestamp())]


async def test_atomic_refuses_all_naming_each_failure(
    registry: Registry, pool: asyncpg.Pool
) -> None:
    await registry.apply_changes([rec("88.118.2/HELD")], T0, atomic=True)
    changes = [
        rec("88.118.2/NEW-1"),
        rec("88.118.2/HELD"),  # read as absent, but it exists: version 1
        rec("88.119/ELSEWHERE"),  # no such prefix here
        rec("88.118.2/NEW-2"),
    ]
    with pytest.raises(BatchRefused) as refused:
        await registry.apply_changes(changes, T0, atomic=True)
    assert sorted(refused.value.failed) == [1, 2]
    assert isinstance(refused.value.failed[1], Conflict)
    assert isinstance(refused.value.failed[2], UnknownPrefix)
    assert "88.119" in refused.value.failed[2].message
    assert await count(pool, "handles") == 1  # nothing of the batch

    out = await registry.apply_changes(changes, T0, atomic=False)  # each on its own
    assert [type(o).__name__ for o in out] == ["Record", "Conflict", "UnknownPrefix", "Record"]
    assert await count(pool, "handles") == 3


async def test_unique_values_are_one_holder_per_prefix(
    registry: Registry, pool: asyncpg.Pool
) -> None:
    first = await registry.apply_changes(
        [rec("88.118.2/U-1", fields=unique("S1"))], T0, atomic=True
    )
    assert isinstance(first[0], Record)
    out = await registry.apply_changes(
        [
            rec("88.118.2/U-2", fields=unique("S1")),  # held by U-1
            rec("88.118.2/U-3", fields=unique("S2")),
            rec("88.118.2/U-4", fields=unique("S2")),  # claimed twice in this batch
            rec("88.118.5/U-5", fields=unique("S1")),  # another prefix: free there
        ],
        T0,
        atomic=False,
    )
    assert isinstance(out[0], Conflict) and "88.118.2/U-1" in out[0].message.upper()
    assert isinstance(out[1], Record) and isinstance(out[3], Record)
    assert isinstance(out[2], Conflict)
    holders = await pool.fetch("SELECT value, handle_key FROM handle_unique ORDER BY 1, 2")
    assert [(r["value"], r["handle_key"]) for r in holders] == [
        ("S1", "88.118.2/U-1"),
        ("S1", "88.118.5/U-5"),
        ("S2", "88.118.2/U-3"),
    ]
    # The holder may keep its value when it changes; the field rows follow the record.
    again = await registry.apply_changes(
        [rec("88.118.2/U-1", "new", version=1, fields=unique("S1"))], T0, atomic=True
    )
    assert isinstance(again[0], Record)
    assert await count(pool, "handle_fields") == 3
    await registry.apply_changes(
        [Change(parse_handle("88.118.2/U-1"), None, 2, "t")], T0, atomic=True
    )
    assert await count(pool, "handle_fields") == 2  # gone with the handle


async def test_a_concurrent_creator_loses_only_its_own_item(
    registry: Registry, pool: asyncpg.Pool
) -> None:
    """Two per-item batches create overlapping handles at once: the checks of both pass
    (neither exists yet), one insert loses the race, and its batch is replayed item by
    item, so only the overlapping item fails."""
    a = [rec(f"88.118.2/R-{n}", "a") for n in range(60)]
    b = [rec(f"88.118.2/R-{n}", "b") for n in range(50, 110)]
    out_a, out_b = await asyncio.gather(
        registry.apply_changes(a, T0, atomic=False), registry.apply_changes(b, T0, atomic=False)
    )
    lost = [o for o in out_a + out_b if isinstance(o, Conflict)]
    assert len(lost) == 10  # the 10 handles both wanted: each created exactly once
    assert all(isinstance(o, Record | Conflict) for o in out_a + out_b)
    assert await count(pool, "handles") == 110
    assert await count(pool, "handle_history") == 110

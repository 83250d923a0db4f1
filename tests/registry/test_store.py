"""Registry round trips against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.errors import Conflict, NotFound, RegistryError, UnknownPrefix
from registry.rows import PrefixStatus
from registry.store import Registry
from tests.registry.conftest import MILL, T0

URL = HandleValue(1, "URL", b"https://example.com/roll/1")
ADMIN_EMAIL = HandleValue(2, "EMAIL", b"ops@example.com")


async def count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))  # table names are ours


async def test_put_get_delete_round_trip_with_history(registry: Registry) -> None:
    h = parse_handle("88.118.2/ROLL-0001")
    put = await registry.put_handle(h, [ADMIN_EMAIL, URL], actor="cli:alice", now=T0)
    assert put.created and put.record.version == 1
    rec = await registry.get_handle(h.key)
    assert rec is not None
    assert [v.index for v in rec.values] == [1, 2]  # stored in index order
    assert rec.values[0].data == URL.data
    assert rec.values[0].timestamp == int(T0.timestamp())

    t1 = T0 + timedelta(minutes=5)
    changed = HandleValue(1, "URL", b"https://example.com/roll/1-v2")
    mod = await registry.put_handle(h, [changed, ADMIN_EMAIL], actor="cli:bob", now=t1)
    assert mod.changed and mod.record.version == 2
    rec = await registry.get_handle(h.key)
    assert rec is not None
    by_index = {v.index: v for v in rec.values}
    assert by_index[1].timestamp == int(t1.timestamp())  # changed value re-stamped
    assert by_index[2].timestamp == int(T0.timestamp())  # unchanged value keeps its time

    await registry.delete_handle(h, actor="cli:carol", now=t1 + timedelta(minutes=1))
    assert await registry.get_handle(h.key) is None

    history = await registry.history(h)
    assert [(e.action, e.actor, e.version) for e in history] == [
        ("create", "cli:alice", 1),
        ("modify", "cli:bob", 2),
        ("delete", "cli:carol", 3),
    ]
    assert history[0].old_values is None and history[0].new_values is not None
    assert history[1].old_values is not None and history[1].old_values[0].data == URL.data
    assert history[2].new_values is None


async def test_lookup_is_ascii_case_insensitive_and_keeps_spelling(registry: Registry) -> None:
    await registry.put_handle(parse_handle("88.118.2/ÉTÉ-X"), [URL], actor="t", now=T0)
    found = await registry.get_handle(parse_handle("88.118.2/ÉTÉ-x").key)
    assert found is not None and found.handle == "88.118.2/ÉTÉ-X"
    assert await registry.get_handle(parse_handle("88.118.2/été-x").key) is None
    # The same handle in another case is the same record, not a second one.
    again = await registry.put_handle(
        parse_handle("88.118.2/étÉ-X".replace("é", "É")), [URL], actor="t", now=T0
    )
    assert not again.created


async def test_create_without_overwrite_is_idempotent_for_same_content(registry: Registry) -> None:
    h = parse_handle("88.118.2/LOT-7")
    first = await registry.put_handle(h, [URL], actor="mes", now=T0, overwrite=False)
    retry = await registry.put_handle(
        h, [URL], actor="mes", now=T0 + timedelta(seconds=30), overwrite=False
    )
    assert first.created and not retry.created and not retry.changed
    assert retry.record.version == 1
    with pytest.raises(Conflict, match="already exists with different values"):
        await registry.put_handle(h, [ADMIN_EMAIL], actor="mes", now=T0, overwrite=False)
    assert len(await registry.history(h)) == 1


async def test_only_indexes_merges(registry: Registry) -> None:
    h = parse_handle("88.118.2/MERGE")
    await registry.put_handle(h, [URL, ADMIN_EMAIL], actor="t", now=T0)
    new_email = HandleValue(2, "EMAIL", b"qa@example.com")
    extra = HandleValue(3, "DESC", b"ignored: not in only_indexes")
    await registry.put_handle(h, [new_email, extra], actor="t", now=T0, only_indexes=frozenset({2}))
    rec = await registry.get_handle(h.key)
    assert rec is not None
    assert [(v.index, v.data) for v in rec.values] == [(1, URL.data), (2, b"qa@example.com")]


async def test_delete_some_indexes(registry: Registry) -> None:
    h = parse_handle("88.118.2/PART")
    await registry.put_handle(h, [URL, ADMIN_EMAIL], actor="t", now=T0)
    rec = await registry.delete_handle(h, actor="t", now=T0, indexes=frozenset({2}))
    assert rec is not None and [v.index for v in rec.values] == [1]
    with pytest.raises(NotFound, match="no value at index 9"):
        await registry.delete_handle(h, actor="t", now=T0, indexes=frozenset({9}))


async def test_bad_writes_change_nothing(registry: Registry, pool: asyncpg.Pool) -> None:
    before = (await count(pool, "handles"), await count(pool, "handle_history"))
    with pytest.raises(UnknownPrefix, match=r"prefix 88\.999 is not registered"):
        await registry.put_handle(parse_handle("88.999/X"), [URL], actor="t", now=T0)
    await registry.add_prefix("88.118.9", MILL, T0, status=4)
    with pytest.raises(UnknownPrefix, match="awaiting review"):
        await registry.put_handle(parse_handle("88.118.9/X"), [URL], actor="t", now=T0)
    with pytest.raises(RegistryError, match="index 1 appears twice"):
        await registry.put_handle(parse_handle("88.118.2/DUP"), [URL, URL], actor="t", now=T0)
    with pytest.raises(NotFound):
        await registry.delete_handle(parse_handle("88.118.2/NONE"), actor="t", now=T0)
    assert (await count(pool, "handles"), await count(pool, "handle_history")) == before


async def test_enterprises_and_prefixes(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="check character"):
        await registry.add_enterprise("x", MILL[:-1] + ("0" if MILL[-1] != "0" else "1"), "", T0)
    with pytest.raises(Conflict, match="already exists"):
        await registry.add_enterprise("dup", MILL, "", T0)
    with pytest.raises(Conflict, match="already registered"):
        await registry.add_prefix("88.118.2", MILL, T0)
    with pytest.raises(NotFound, match="no enterprise"):
        await registry.add_prefix("88.118.7", "91320509MA1ZZZZZZ0", T0)
    with pytest.raises(RegistryError, match="empty segment"):
        await registry.add_prefix("88..7", MILL, T0)
    await registry.set_prefix_status("88.118.2", 0, T0)
    p = await registry.get_prefix("88.118.2")
    assert p is not None and p.status == PrefixStatus.DISABLED and p.credit_code == MILL


async def test_list_handles_pages(registry: Registry) -> None:
    for n in range(5):
        await registry.put_handle(parse_handle(f"88.118.2/R{n}"), [URL], actor="t", now=T0)
    total, page = await registry.list_handles("88.118.2", page=1, page_size=2)
    assert total == 5 and page == ["88.118.2/R2", "88.118.2/R3"]
    assert await registry.list_handles("88.118.2", 0, 0) == (5, [])


async def test_concurrent_writers_serialise(registry: Registry) -> None:
    h = parse_handle("88.118.2/HOT")
    await registry.put_handle(h, [URL], actor="t", now=T0)
    writes = [
        registry.put_handle(
            h, [HandleValue(1, "URL", f"https://example.com/{n}".encode())], actor=f"w{n}", now=T0
        )
        for n in range(8)
    ]
    await asyncio.gather(*writes)
    rec = await registry.get_handle(h.key)
    assert rec is not None and rec.version == 9
    assert len(await registry.history(h)) == 9


async def test_expected_version_refuses_a_write_that_lost_a_race(registry: Registry) -> None:
    h = parse_handle("88.118.2/RACE")
    await registry.put_handle(h, [URL], actor="a", now=T0, expected_version=0)
    with pytest.raises(Conflict, match="changed while this write was checked"):
        await registry.put_handle(h, [ADMIN_EMAIL], actor="b", now=T0, expected_version=0)
    with pytest.raises(Conflict):
        await registry.delete_handle(h, actor="b", now=T0, expected_version=7)
    rec = await registry.get_handle(h.key)
    assert rec is not None and rec.version == 1 and [v.index for v in rec.values] == [1]
    await registry.put_handle(h, [ADMIN_EMAIL], actor="a", now=T0, expected_version=1)

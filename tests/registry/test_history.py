"""A record's past from the append-only history: ``record_at`` and bounded pages, against
a real PostgreSQL, with every write at an explicit time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.errors import RegistryError
from registry.store import Registry
from tests.registry.conftest import T0

H = parse_handle("88.118.2/ROLL-0042")
MINUTE = timedelta(minutes=1)


def url(n: int) -> HandleValue:
    return HandleValue(1, "URL", f"https://example.com/roll/42-v{n}".encode())


async def three_versions_then_delete(registry: Registry) -> None:
    """v1 at T0, v2 at T0+1min, v3 at T0+2min, deleted at T0+3min."""
    for n in (1, 2, 3):
        await registry.put_handle(H, [url(n)], actor=f"cli:w{n}", now=T0 + (n - 1) * MINUTE)
    await registry.delete_handle(H, actor="cli:del", now=T0 + 3 * MINUTE)


async def test_record_at_before_between_on_and_after(registry: Registry) -> None:
    await three_versions_then_delete(registry)
    assert await registry.record_at(H, T0 - timedelta(microseconds=1)) is None  # not yet
    first = await registry.record_at(H, T0)  # a write at exactly T counts as done
    assert first is not None
    assert (first.version, first.written_at, first.actor) == (1, T0, "cli:w1")
    assert first.values[0].data == url(1).data and first.handle == "88.118.2/ROLL-0042"
    between = await registry.record_at(H, T0 + MINUTE + timedelta(seconds=30))
    assert between is not None and between.version == 2 and between.values[0].data == url(2).data
    just_before = await registry.record_at(H, T0 + 2 * MINUTE - timedelta(microseconds=1))
    assert just_before is not None and just_before.version == 2
    on_third = await registry.record_at(H, T0 + 2 * MINUTE)
    assert on_third is not None and on_third.version == 3
    assert await registry.record_at(H, T0 + 3 * MINUTE) is None  # deleted then
    assert await registry.record_at(H, T0 + 365 * 24 * 60 * MINUTE) is None


async def test_record_at_takes_any_zone_and_refuses_a_naive_time(registry: Registry) -> None:
    await registry.put_handle(H, [url(1)], actor="t", now=T0)
    beijing = (T0 + MINUTE).astimezone(timezone(timedelta(hours=8)))
    got = await registry.record_at(H, beijing)
    assert got is not None and got.version == 1
    with pytest.raises(RegistryError, match="zone"):
        await registry.record_at(H, datetime(2026, 11, 1, 9, 0))


async def test_a_recreated_handle_has_its_whole_past(registry: Registry) -> None:
    await three_versions_then_delete(registry)
    again = T0 + 10 * MINUTE
    await registry.put_handle(H, [url(9)], actor="cli:again", now=again)
    assert await registry.record_at(H, again - MINUTE) is None  # the gap while deleted
    now = await registry.record_at(H, again)
    assert now is not None and now.version == 1 and now.values[0].data == url(9).data
    old = await registry.record_at(H, T0 + MINUTE)
    assert old is not None and old.values[0].data == url(2).data


async def test_the_order_of_writes_wins_over_their_clocks(registry: Registry) -> None:
    """A writer whose clock runs behind still wrote after the one before it: at a time
    after both, the record is the later write's."""
    await registry.put_handle(H, [url(1)], actor="fast-clock", now=T0 + 5 * MINUTE)
    await registry.put_handle(H, [url(2)], actor="slow-clock", now=T0 + 4 * MINUTE)
    got = await registry.record_at(H, T0 + 6 * MINUTE)
    assert got is not None and got.version == 2


async def test_history_pages_newest_first_and_cursor_reaches_the_start(
    registry: Registry,
) -> None:
    for n in range(1, 8):
        await registry.put_handle(H, [url(n)], actor="t", now=T0 + n * MINUTE)
    first = await registry.history_page(H, limit=3)
    assert [e.entry.version for e in first.entries] == [7, 6, 5]
    assert first.older == first.entries[-1].seq
    second = await registry.history_page(H, limit=3, before=first.older)
    assert [e.entry.version for e in second.entries] == [4, 3, 2]
    last = await registry.history_page(H, limit=3, before=second.older)
    assert [e.entry.version for e in last.entries] == [1] and last.older is None
    exact = await registry.history_page(H, limit=7)
    assert len(exact.entries) == 7 and exact.older is None
    assert exact.entries[-1].entry.action == "create" and exact.entries[-1].entry.old_values is None
    # The unpaged read is bounded too: the newest entries, oldest first.
    assert [e.version for e in await registry.history(H, limit=2)] == [6, 7]


async def test_history_page_sizes_are_bounded(registry: Registry) -> None:
    for bad in (0, 1001):
        with pytest.raises(RegistryError, match=r"1\.\.1000"):
            await registry.history_page(H, limit=bad)
    assert (await registry.history_page(parse_handle("88.118.2/NONE"))).entries == ()

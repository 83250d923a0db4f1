"""The registry's pool and queries, counted where every call passes (registry.instrument):
named queries timed under their names whichever way they are run, acquires timed, and
callers waiting for a connection counted while they wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from registry.connect import open_registry
from registry.instrument import UNNAMED, InstrumentedPool, PoolStats, Timings
from registry.queries import q, query_name
from registry.store import Registry
from tests.registry.conftest import MILL, T0


@pytest.fixture
async def opened(database_url: str) -> AsyncIterator[Registry]:
    registry = await open_registry(database_url, min_size=1, max_size=1, timeout_s=10)
    try:
        await registry.migrate()
        yield registry
    finally:
        await registry.close()


def stats_of(registry: Registry) -> PoolStats:
    pool: Any = registry.pool
    assert isinstance(pool, InstrumentedPool)
    return pool.stats


def observed(timings: Timings, label: str) -> int:
    return sum(timings.counts.get(label, ()))


def test_query_name_knows_what_q_returned() -> None:
    assert query_name(q("get_handle_raw")) == "get_handle_raw"
    assert query_name("SELECT 1") is None
    # The same text built anew is found too (a dict of the texts, not of the objects).
    assert query_name("".join(q("list_prefixes"))) == "list_prefixes"


def test_timings_put_each_latency_in_the_first_bucket_that_holds_it() -> None:
    t = Timings((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):
        t.observe("x", seconds)
    assert t.counts["x"] == [2, 1, 1]  # le 0.001 holds 0.001 itself, as Prometheus does
    assert t.sums["x"] == pytest.approx(0.5035)


async def test_named_queries_are_timed_by_name_through_pool_and_connection(
    opened: Registry,
) -> None:
    stats = stats_of(opened)
    before = observed(stats.queries, "add_enterprise")
    await opened.add_enterprise(
        "盛泽示例丝绸有限公司", MILL, "ops@example.com", T0
    )  # pool.fetchrow
    await opened.add_prefix("88.118.2", MILL, T0)  # conn.fetchrow + conn.execute in a transaction
    await opened.ping()  # SELECT 1: no name
    assert observed(stats.queries, "add_enterprise") == before + 1
    assert observed(stats.queries, "get_enterprise_by_code") == 1
    assert observed(stats.queries, "add_prefix") == 1
    assert observed(stats.queries, UNNAMED) >= 1
    assert stats.queries.sums["add_prefix"] > 0
    assert all(name == UNNAMED or q(name) for name in stats.queries.counts)


async def test_acquires_are_timed_and_waiters_counted(opened: Registry) -> None:
    pool: Any = opened.pool
    stats = stats_of(opened)
    acquired = observed(stats.acquire, "")
    await opened.ping()
    assert observed(stats.acquire, "") == acquired + 1
    assert stats.waiting == 0
    async with pool.acquire() as conn:  # the only connection (max_size 1)
        assert pool.in_use() == 1
        waiter = asyncio.create_task(opened.ping())
        for _ in range(100):  # turns of the loop, not time: until the ping waits
            if stats.waiting:
                break
            await asyncio.sleep(0)
        assert stats.waiting == 1
        await conn.fetchval("SELECT 1")
    await waiter
    assert stats.waiting == 0
    assert pool.in_use() == 0
    assert observed(stats.acquire, "") == acquired + 3  # ping, the held one, the waiter
    assert sum(stats.acquire.counts[""][1:]) >= 1  # the waiter took longer than 10 µs


async def test_await_acquire_is_timed_too(opened: Registry) -> None:
    pool: Any = opened.pool
    stats = stats_of(opened)
    acquired = observed(stats.acquire, "")
    conn = await pool.acquire()
    try:
        assert await conn.fetchval(q("count_handles"), "88.118.2") == 0
    finally:
        await pool.release(conn)
    assert observed(stats.acquire, "") == acquired + 1
    assert observed(stats.queries, "count_handles") == 1

"""Coalesced resolution reads (registry.readbatch) against a real PostgreSQL: the queries
counted by the driver itself (asyncpg's query logger), not by the batcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from protocol.handle import parse_handle
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from registry.batch import Change
from registry.errors import DatabaseUnavailable
from registry.migrate import migrate
from registry.readbatch import ReadBatcher
from registry.store import Registry
from tests.registry.conftest import MILL, T0

EXISTING = 150
ASKED = 200  # EXISTING rolls and 50 that were never registered


@dataclass(eq=False)  # hashable: asyncpg keeps its loggers in a set
class QueryLog:
    """Every query the pool's connections ran: (SQL, its arguments)."""

    queries: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def __call__(self, record: Any) -> None:
        self.queries.append((record.query, tuple(record.args or ())))

    def reads(self) -> list[tuple[Any, ...]]:
        """Arguments of the resolution reads (single-key and batched)."""
        return [args for sql, args in self.queries if "FROM handles WHERE handle_key" in sql]


@pytest.fixture
async def logged(database_url: str) -> AsyncIterator[tuple[Registry, QueryLog]]:
    log = QueryLog()

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(log)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=6, init=init)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        reg = Registry(pool)
        await reg.add_enterprise("盛泽示例丝绸有限公司", MILL, "ops@example.com", T0)
        await reg.add_prefix("88.118.2", MILL, T0)
        changes = [
            Change(parse_handle(_name(i)), _values(i), 0, "test:batch") for i in range(EXISTING)
        ]
        await reg.apply_changes(changes, T0, atomic=True)
        log.queries.clear()
        yield reg, log
    finally:
        await pool.close()


def _name(i: int) -> str:
    return f"88.118.2/Roll-{i:04d}"  # mixed case: the registered spelling comes back


def _values(i: int) -> tuple[HandleValue, ...]:
    return (
        HandleValue(1, "URL", f"https://example.com/roll/{i}".encode()),
        HandleValue(2, "EMAIL", b"ops@example.com"),
    )


def _key(i: int) -> str:
    return parse_handle(_name(i)).key


async def test_concurrent_reads_share_queries_and_each_gets_its_own_row(
    logged: tuple[Registry, QueryLog],
) -> None:
    reg, log = logged
    keys = [_key(i) for i in range(ASKED)]
    got = await asyncio.gather(*(reg.get_handle_raw(k) for k in keys))
    for i, record in enumerate(got):
        if i >= EXISTING:
            assert record is None, f"roll {i} was never registered"
            continue
        assert record is not None
        assert record.handle == _name(i)
        assert record.version == 1
        assert record.decoded()[0].data == f"https://example.com/roll/{i}".encode()
        assert record.wire == encode_values(record.decoded())
    reads = log.reads()
    # 200 keys asked within one loop turn: one batch (MAX_BATCH 256), not 200 queries.
    assert len(reads) == 1, reads
    assert sorted(reads[0][0]) == sorted(keys)
    assert reg.reads.stats.keys == ASKED and reg.reads.stats.batches == 1


async def test_a_key_alone_is_read_with_the_single_key_statement(
    logged: tuple[Registry, QueryLog],
) -> None:
    reg, log = logged
    record = await reg.get_handle_raw(_key(7))
    assert record is not None and record.handle == _name(7)
    assert await reg.get_handle_raw(_key(EXISTING + 1)) is None
    assert log.reads() == [(_key(7),), (_key(EXISTING + 1),)]


async def test_a_key_asked_twice_in_one_batch_is_read_once(
    logged: tuple[Registry, QueryLog],
) -> None:
    reg, log = logged
    keys = [_key(3), _key(4), _key(3), _key(3)]
    got = await asyncio.gather(*(reg.get_handle_raw(k) for k in keys))
    assert [r.handle if r else None for r in got] == [_name(3), _name(4), _name(3), _name(3)]
    reads = log.reads()
    assert len(reads) == 1 and sorted(reads[0][0]) == [_key(3), _key(4)]


async def test_batches_are_bounded_in_size_and_in_flight(
    logged: tuple[Registry, QueryLog],
) -> None:
    reg, log = logged
    reg.reads = batcher = ReadBatcher(reg._read_raw, max_batch=16, max_inflight=2)
    most_in_flight = 0

    async def read(key: str) -> Any:
        nonlocal most_in_flight
        most_in_flight = max(most_in_flight, batcher.inflight)
        record = await reg.get_handle_raw(key)
        most_in_flight = max(most_in_flight, batcher.inflight)
        return record

    keys = [_key(i) for i in range(ASKED)]
    got = await asyncio.gather(*(read(k) for k in keys))
    assert [r.handle if r else None for r in got] == [
        _name(i) if i < EXISTING else None for i in range(ASKED)
    ]
    reads = log.reads()
    sizes = [len(args[0]) if isinstance(args[0], list) else 1 for args in reads]
    assert max(sizes) <= 16 and sum(sizes) == ASKED
    assert len(reads) >= ASKED // 16
    assert most_in_flight <= 2
    assert batcher.stats.largest <= 16


async def test_a_waiter_giving_up_leaves_the_others_answered(
    logged: tuple[Registry, QueryLog],
) -> None:
    reg, _ = logged
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(reg.get_handle_raw(_key(i))) for i in range(10)]
    await asyncio.sleep(0)  # every task has joined the pending batch
    tasks[4].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[4], asyncio.CancelledError)
    for i, record in enumerate(done):
        if i != 4:
            assert not isinstance(record, BaseException)
            assert record is not None and record.handle == _name(i)


async def test_a_failed_batch_fails_every_waiter_as_unavailable(
    logged: tuple[Registry, QueryLog], database_url: str
) -> None:
    """The batch's backend is killed while its query waits on a lock: every waiter gets
    DatabaseUnavailable, as a single read would, and the next read works again."""
    reg, _ = logged
    locker = await asyncpg.connect(database_url)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(reg.get_handle_raw(_key(i))) for i in range(50)]
        # Wait for the one batched query to be blocked on the lock, then end its backend.
        waiting: list[int] = []
        for _ in range(3000):  # up to 30 s on a loaded machine
            waiting = [
                r["pid"]
                for r in await locker.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%handle_key = ANY%'"
                )
            ]
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert len(waiting) == 1, "the 50 reads should be one query waiting on the lock"
        await locker.fetchval("SELECT pg_terminate_backend($1)", waiting[0])
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await tx.rollback()
    finally:
        await locker.close()
    assert all(isinstance(r, DatabaseUnavailable) for r in results), results
    assert len({id(r) for r in results}) == 50  # each waiter its own error object
    assert reg.reads.stats.failed == 1
    record = await reg.get_handle_raw(_key(1))
    assert record is not None and record.handle == _name(1)

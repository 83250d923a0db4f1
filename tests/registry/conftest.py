"""A migrated registry on a fresh database, with one enterprise owning 88.118.2."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from registry.migrate import migrate
from registry.store import Registry

T0 = datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)


def valid_code(first17: str) -> str:
    from protocol.creditcode import check_character

    return first17 + check_character(first17)


MILL = valid_code("91320509MA1MXLL00")
DYER = valid_code("91320509MA1DYER00")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def registry(pool: asyncpg.Pool) -> Registry:
    async with pool.acquire() as conn:
        await migrate(conn)
    reg = Registry(pool)
    await reg.add_enterprise("盛泽示例丝绸有限公司", MILL, "ops@example.com", T0)
    await reg.add_enterprise("吴江示例印染有限公司", DYER, "ops@example.cn", T0)
    await reg.add_prefix("88.118.2", MILL, T0)
    await reg.add_prefix("88.118.5", DYER, T0)
    return reg

"""The growth benchmark's dataset pieces, cheaply: a load cut short is found where it
stopped (rolls are committed in order), and a resumed load completes it; the block
counters and sizes it reads exist on a real registry. (The benchmark itself runs for
minutes: loadtest/growth.py.)"""

from __future__ import annotations

import asyncpg

from loadtest.bulkload import load_rolls
from loadtest.growth_data import (
    BufferUse,
    label,
    read_buffer_use,
    read_sizes,
    rolls_present,
)
from loadtest.rolls import roll_handle
from protocol.handle import normalise


async def test_a_cut_short_load_is_found_and_resumed(database_url: str) -> None:
    await load_rolls(database_url, 1000, fields=8)
    conn = await asyncpg.connect(database_url)
    try:
        assert await rolls_present(conn) == 1000
        # As if the load had stopped after roll 636: the later chunks never committed.
        await conn.execute(
            "DELETE FROM handles WHERE handle_key >= $1 AND handle_key LIKE $2",
            normalise(roll_handle(637)),
            normalise(roll_handle(0))[:-7] + "%",
        )
        have = await rolls_present(conn)
        assert have == 637
        loaded = await load_rolls(database_url, 1500, fields=8, have=have)
        assert loaded.added == 863
        assert await rolls_present(conn) == 1500
        assert await rolls_present(conn, upper=1200) == 1200  # the bound is respected
    finally:
        await conn.close()

    sizes = await read_sizes(database_url)
    assert sizes.heap > 0 and sizes.indexes >= sizes.pkey > 0 and sizes.table_all >= sizes.heap
    assert sizes.shared_buffers.endswith("B")  # "32MB", "128MB", ...
    counters = await read_buffer_use(database_url)
    assert counters.heap_hit + counters.heap_read > 0  # the loads and lookups above


def test_buffer_use_ratios_and_labels() -> None:
    used = BufferUse(heap_read=30, heap_hit=90, idx_read=1, idx_hit=9) - BufferUse(10, 30, 0, 0)
    assert used == BufferUse(20, 60, 1, 9)
    assert (used.heap_ratio, used.idx_ratio) == (0.75, 0.9)
    assert BufferUse(0, 0, 0, 0).heap_ratio is None  # nothing read: no ratio, not 0%
    assert [label(n) for n in (100_000, 1_000_000, 10_000_000, 2_500_000, 500)] == [
        "100k",
        "1M",
        "10M",
        "2.5M",
        "500",
    ]

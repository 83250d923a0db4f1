"""The cache benchmarks' own pieces, cheaply: the bulk loader's rows are records the
registry serves, the load generator's request template names a roll where udpload
rewrites it, and the Zipf expectation behaves. (The benchmarks themselves run for
minutes: loadtest/cache_bench.py.)"""

from __future__ import annotations

import random

import asyncpg
import pytest

from loadtest.bulkload import load_rolls, rolls_in
from loadtest.rolls import PREFIX, RollRecords, roll_handle
from loadtest.udpload import KEY_DIGITS, KeyStream, template
from loadtest.zipf import ZipfKeys, expected_hit_ratio, key_of_rank
from protocol.handle import normalise
from protocol.message import decode
from registry.store import Registry


async def test_bulk_loaded_rolls_resolve_through_the_registry(database_url: str) -> None:
    loaded = await load_rolls(database_url, 1000, fields=8)
    assert (loaded.rolls, loaded.added, loaded.value_count) == (1000, 1000, 11)
    assert await rolls_in(database_url) == 1000
    # Appending keeps what is there; a second load of the same range changes nothing.
    assert (await load_rolls(database_url, 1200, fields=8, have=1000)).added == 200
    assert await rolls_in(database_url) == 1200

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        registry = Registry(pool)
        records = RollRecords(8, 0)
        for n in (0, 1, 999, 1199):
            record = await registry.get_handle(normalise(roll_handle(n)))
            assert record is not None, roll_handle(n)
            got = [(v.index, v.type, v.data) for v in record.values]
            want = [(v.index, v.type, v.data) for v in records.values(n)]
            assert got == want
        assert await registry.get_handle(normalise(roll_handle(1200))) is None
        assert (await registry.get_prefix(PREFIX)) is not None
    finally:
        await pool.close()


def test_request_template_names_roll_zero_where_udpload_writes_the_key() -> None:
    hex_request, offset = template()
    request = bytes.fromhex(hex_request)
    assert request[offset : offset + KEY_DIGITS] == b"0" * KEY_DIGITS
    rewritten = request[:offset] + b"1234567" + request[offset + KEY_DIGITS :]
    assert decode(rewritten).body.handle == roll_handle(1234567)  # type: ignore[attr-defined]


def test_key_streams_and_zipf() -> None:
    with pytest.raises(ValueError):
        KeyStream("sequential", 10)
    assert sorted(key_of_rank(r, 1000) for r in range(1000)) == list(range(1000))  # a permutation
    keys = ZipfKeys(1000, 1.1, random.Random(5))
    draws = [keys.rank() for _ in range(5000)]
    assert draws.count(0) > draws.count(1) > draws.count(50)  # popularity falls with rank
    early, late = (expected_hit_ratio(1000, 1.1, before, 1000) for before in (0, 100_000))
    assert 0 < early < late <= 1

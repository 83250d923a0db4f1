"""Serve-stale (RFC 8767) on a real node whose PostgreSQL is stopped mid-run, and
recovery when it comes back."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.client.native import NativeClient
from node.settings import load_settings
from protocol.codes import ResponseCode
from registry.embedded import EmbeddedPostgres
from tests.conftest import traversable_temp_dir
from tests.node.http_support import SteppedClock
from tests.node.wait_support import until

ROLL = "88.118.2/ROLL-2026-000123"  # demo data


@pytest.fixture
async def own_pg() -> AsyncIterator[EmbeddedPostgres]:
    """A server of this test's own, which it may stop and start."""
    base = traversable_temp_dir("idnode-stale-pg-")
    pg = EmbeddedPostgres(base / "data")
    await asyncio.to_thread(pg.initialise)
    await asyncio.to_thread(pg.start)
    try:
        yield pg
    finally:
        await asyncio.to_thread(pg.stop, mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


async def test_stale_while_postgres_is_down_then_recovery(
    own_pg: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SteppedClock()
    settings = load_settings(
        env={},
        flags={
            "database_url": own_pg.dsn,
            "data_dir": str(tmp_path / "node"),
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
            "sign_records": False,
            "cache_ttl_cap_s": 60,
            "cache_stale_max_s": 600,
            "cache_stale_recheck_s": 5,
            "db_timeout_s": 2,
        },
    )
    node = Node(settings, monotonic=clock)
    await node.start()
    try:
        assert node.handle_port and node.cache and node.listener
        native = NativeClient("127.0.0.1", node.handle_port)
        url = f"http://127.0.0.1:{node.http_port}/api/handles/{ROLL}"
        async with aiohttp.ClientSession() as http:
            fresh = await native.resolve(ROLL)
            async with http.get(url) as resp:
                assert resp.status == 200
                body = await resp.json()

            caplog.set_level(logging.INFO, logger="idnode.cache")
            await asyncio.to_thread(own_pg.stop, mode="fast")
            await until(
                lambda: not node.cache.coherent, poll_s=0.01
            )  # the listener saw its connection go
            clock.advance(61)  # and the record's TTL (the 60 s cap) has run out

            stale = await native.resolve(ROLL)
            assert [v.data for v in stale.body.values] == [v.data for v in fresh.body.values]
            async with http.get(url) as resp:
                assert resp.status == 200 and await resp.json() == body
            assert node.cache.stats.stale_served >= 2
            assert "serving cached records past their TTL" in caplog.text
            stale_metric = node.metrics.registry.get_sample_value("idnode_cache_stale_served_total")
            assert stale_metric is not None and stale_metric >= 2

            # Nothing cached to fall back on: "too busy", and a 503 over HTTP.
            unknown = await native.resolve("88.118.2/NEVER-SEEN")
            assert unknown.header.response_code == ResponseCode.SERVER_TOO_BUSY
            async with http.get(url.replace("ROLL-2026-000123", "NEVER-SEEN")) as resp:
                assert resp.status == 503

            # Stale only for so long: past stale_max_s the record is not served either.
            clock.advance(600)
            expired = await native.resolve(ROLL)
            assert expired.header.response_code == ResponseCode.SERVER_TOO_BUSY

            # PostgreSQL returns: the listener reconnects (and flushes), reads work again.
            await asyncio.to_thread(own_pg.start)
            await asyncio.wait_for(node.listener.wait_connects(2), 30)
            clock.advance(5)  # the recheck interval
            again = await native.resolve(ROLL)
            assert [v.data for v in again.body.values] == [v.data for v in fresh.body.values]
            assert node.cache.coherent
            assert "registry reachable again" in caplog.text
    finally:
        await node.stop()

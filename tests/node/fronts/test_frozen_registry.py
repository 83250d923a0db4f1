"""A registry that hangs (SIGSTOP) rather than dies: no caller waits on it longer than
the client timeout (``resolve_client_timeout_s``, RFC 8767).

Through the whole freeze, cached records are answered over native UDP and HTTP (stale,
once the registry is found not answering), each within the client timeout; a handle
with nothing cached gets RC 3 / HTTP 503 within it too; the registry is read once per
handle and not once per caller; and after the thaw everything is answered fresh again.
Run twice: frozen by the fault-injecting proxy, and by SIGSTOP of a private PostgreSQL.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.settings import load_settings
from protocol.codes import ResponseCode
from registry.embedded import EmbeddedPostgres
from tests.conftest import traversable_temp_dir
from tests.node.fronts.frozen_support import Answer, ProxyFreezer, SigstopFreezer, Timed
from tests.node.http_support import SteppedClock
from tests.node.wait_support import until
from tests.pgproxy_support import PgProxy

CLIENT_TIMEOUT_S = 0.5
# Scheduling on a busy test machine. Before the fix a caller waited for the registry's
# own deadline (db_timeout_s, 1.5 s here) and its cancellation (as long again).
MARGIN_S = 0.6
CACHED = ("88.118.2/ROLL-2026-000123", "88.118.3/YARN-2026-0412")  # demo data
UNCACHED = ("88.119.2/311003217202400158", "88.118.2/ROLL-2026-000124")  # demo, never asked

Freezer = ProxyFreezer | SigstopFreezer


def _settings(dsn: str, data_dir: Path) -> dict[str, object]:
    return {
        "database_url": dsn,
        "data_dir": str(data_dir),
        "bind": "127.0.0.1",
        "handle_port": 0,
        "admin_port": 0,
        "http_port": 0,
        "demo": True,
        "sign_records": False,
        "resolve_client_timeout_s": CLIENT_TIMEOUT_S,
        # The registry's deadline, and the listener's ping interval: it notices the
        # freeze within 1.5 to 3 s.
        "db_timeout_s": 1.5,
        "cache_ttl_cap_s": 60,
        "cache_stale_max_s": 600,
        "cache_stale_recheck_s": 5,
        # The demo records (3 KB) answered over UDP, not sent to TCP: UDP is timed here.
        "udp_max_reply_bytes": 16384,
    }


@pytest.fixture(params=["proxy", "sigstop"])
async def frozen(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Node, Freezer, SteppedClock]]:
    """A demo node, a way to freeze its registry, and the node's monotonic clock."""
    clock = SteppedClock()
    freezer: Freezer
    if request.param == "proxy":
        proxy = await PgProxy(database_url).start()
        freezer, dsn, cleanup = ProxyFreezer(proxy), proxy.dsn, proxy.stop
    else:
        # A server of this test's own: the session's is shared with other tests.
        base = traversable_temp_dir("idnode-frozen-pg-")
        pg = EmbeddedPostgres(base / "data")
        await asyncio.to_thread(pg.initialise)
        await asyncio.to_thread(pg.start)
        freezer, dsn = SigstopFreezer(pg), pg.dsn

        async def cleanup() -> None:
            await asyncio.to_thread(pg.stop, mode="immediate")
            shutil.rmtree(base, ignore_errors=True)

    try:
        node = Node(load_settings(env={}, flags=_settings(dsn, tmp_path / "node")), monotonic=clock)
        await node.start()
        try:
            yield node, freezer, clock
        finally:
            freezer.thaw()
            await node.stop()
    finally:
        await cleanup()


async def test_a_frozen_registry_keeps_callers_within_the_client_timeout(
    frozen: tuple[Node, Freezer, SteppedClock],
) -> None:
    node, freezer, clock = frozen
    assert node.handle_port and node.http_port and node.cache and node.listener
    assert node.resolver is not None
    assert node.resolver.client_timeout_s == CLIENT_TIMEOUT_S, (
        "resolve_client_timeout_s does not reach the Resolver (node/app.py)"
    )
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        ask = Timed(node.handle_port, node.http_port, session)

        async def everything() -> list[Answer]:
            """Every handle over both fronts at once (callers of one handle join)."""
            asks = [ask.udp(h) for h in CACHED + UNCACHED] + [ask.http(h) for h in CACHED]
            asks += [ask.http(h) for h in CACHED + UNCACHED]
            return list(await asyncio.gather(*asks))

        for _ in range(2):  # cached, and the fronts' replies kept
            for handle in CACHED:
                assert (await ask.udp(handle)).code == ResponseCode.SUCCESS
                assert (await ask.http(handle)).status == 200
        ask.answers.clear()

        frozen_at = loop.time()
        freezer.freeze()
        try:
            # The listener has not noticed yet: kept replies and cache hits.
            await everything()
            clock.advance(61)  # and now every cached entry's TTL (the 60 s cap) has run out
            await everything()
            # Its ping unanswered, the listener drops its connection: the cache can vouch
            # for nothing now, and every answer is a read of the registry or stale.
            await until(lambda: not node.listener.connected, timeout_s=20)
            reads = node.cache.stats.reads
            for _ in range(5):
                await everything()
            reads = node.cache.stats.reads - reads
            clock.advance(5)  # a recheck is due: one refresh, in the background
            await everything()
            frozen_for = loop.time() - frozen_at
        finally:
            freezer.thaw()

        during = ask.answers[:]
        assert frozen_for >= 3 * CLIENT_TIMEOUT_S
        slow = [a for a in during if a.waited_s > CLIENT_TIMEOUT_S + MARGIN_S]
        assert not slow, (
            f"{len(slow)} of {len(during)} answers waited longer than "
            f"{CLIENT_TIMEOUT_S + MARGIN_S:g} s, up to {max(a.waited_s for a in slow):.2f} s: "
            f"{slow[:4]}"
        )
        assert reads <= 5, f"{reads} reads for 5 rounds: one read at a time, not one per caller"
        for a in during:
            if a.handle in CACHED:
                assert (a.code, a.status) == (ResponseCode.SUCCESS, 200 if a.front == "http" else 0)
            else:
                assert (a.code, a.status) == (
                    ResponseCode.SERVER_TOO_BUSY,
                    503 if a.front == "http" else 0,
                )
        assert node.cache.stats.stale_served > 0

        # Thawed: the listener reconnects (and flushes), and everything is fresh again.
        await asyncio.wait_for(node.listener.wait_connects(2), 30)
        fresh = {(ResponseCode.SUCCESS, 0), (ResponseCode.SUCCESS, 200)}
        after: list[Answer] = []
        for _ in range(20):  # pool connections stuck in the freeze may still be failing
            ask.answers.clear()
            after = await everything()
            if {(a.code, a.status) for a in after} == fresh:
                break
        assert {(a.code, a.status) for a in after} == fresh
        assert node.cache.coherent
        stale = node.cache.stats.stale_served
        await everything()
        assert node.cache.stats.stale_served == stale  # answered fresh, not stale

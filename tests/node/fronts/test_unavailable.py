"""A registry that cannot be reached gets the same answer on every front, in words.

The node talks to PostgreSQL through a fault-injecting proxy (tests/pgproxy_support.py).
While PostgreSQL is "starting up" (SQLSTATE 57P03, asyncpg's CannotConnectNowError) or
down altogether, the native front answers RC 3, the REST API 503 with RC 3, the record
page 503, and ``/readyz`` says what is unreachable and where; nothing is logged as a bug.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.client.native import NativeClient
from node.demo.dataset import SILK_MILL
from node.settings import load_settings
from protocol.codes import ResponseCode
from tests.node.http_support import SteppedClock, basic
from tests.pgproxy_support import PgProxy

UNCACHED = ("88.118.2/ROLL-2026-000123", "88.118.3/YARN-2026-0412", "88.119.2/311003217202400158")


@pytest.fixture
async def proxied(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, PgProxy]]:
    proxy = await PgProxy(database_url).start()
    settings = load_settings(
        env={},
        flags={
            "database_url": proxy.dsn,
            "data_dir": str(tmp_path / "node"),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
            "db_timeout_s": 2,
        },
    )
    node = Node(settings, monotonic=SteppedClock())
    await node.start()
    try:
        yield node, proxy
    finally:
        await proxy.resume()
        await node.stop()
        await proxy.stop()


async def _get(
    port: int, path: str, accept: str = "application/json"
) -> tuple[int, dict[str, object] | str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}{path}", headers={"Accept": accept}, allow_redirects=False
        ) as reply,
    ):
        if reply.content_type == "application/json":
            return reply.status, await reply.json()
        return reply.status, await reply.text()


@pytest.mark.parametrize("outage", ["starting_up", "refuse"])
async def test_every_front_says_unavailable(
    proxied: tuple[Node, PgProxy], outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    node, proxy = proxied
    assert node.http_port and node.handle_port and node.admin_port
    assert (await _get(node.admin_port, "/readyz"))[0] == 200

    if outage == "starting_up":
        proxy.mode = "starting_up"
    else:
        await proxy.refuse()
    proxy.drop_connections()  # the pool must reconnect into the outage
    caplog.clear()

    status, body = await _get(node.http_port, f"/api/handles/{UNCACHED[0]}")
    assert status == 503, body
    assert isinstance(body, dict) and body["responseCode"] == ResponseCode.SERVER_TOO_BUSY

    reply = await NativeClient("127.0.0.1", node.handle_port, timeout_s=10).resolve(UNCACHED[1])
    assert reply.header.response_code == ResponseCode.SERVER_TOO_BUSY

    status, page = await _get(node.http_port, f"/{UNCACHED[2]}?noredirect", accept="text/html")
    assert status == 503 and "暂时无法解析" in str(page)

    status, ready = await _get(node.admin_port, "/readyz")
    assert status == 503 and isinstance(ready, dict)
    expected = "the database system is starting up" if outage == "starting_up" else "refused"
    assert str(ready["reason"]).startswith(f"registry unreachable at 127.0.0.1:{proxy.port}/"), (
        ready
    )
    assert expected in str(ready["reason"]).lower(), ready

    bugs = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bugs, [r.getMessage() for r in bugs]
    assert (
        node.metrics.registry.get_sample_value(
            "idnode_requests_total", {"front": "http", "op": "resolution", "rc": "3"}
        )
        == 1
    )


async def test_writes_during_an_outage_say_retry(
    proxied: tuple[Node, PgProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """A PUT and a batch while the registry is down: 503 and RC 3 (retry later), never
    a 400 blaming the request, and no traceback."""
    node, proxy = proxied
    auth = basic("300:88.118.2/ADMIN", SILK_MILL.admin_secret)
    record = [{"index": 1, "type": "URL", "data": "https://example.com/x"}]
    batch = {"items": [{"op": "create", "handle": "88.118.2/OUT-2", "values": record}]}
    async with aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{node.http_port}"
        async with session.put(
            f"{base}/api/handles/88.118.2/OUT-0", json=record, headers=auth
        ) as r:
            assert r.status == 200
        await proxy.refuse()
        proxy.drop_connections()
        caplog.clear()
        async with session.put(
            f"{base}/api/handles/88.118.2/OUT-1", json=record, headers=auth
        ) as r:
            assert (r.status, (await r.json())["responseCode"]) == (503, 3)
        async with session.post(f"{base}/api/batches", json=batch, headers=auth) as r:
            assert (r.status, (await r.json())["responseCode"]) == (503, 3)
    bugs = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bugs, [r.getMessage() for r in bugs]


async def test_an_outage_is_logged_once_not_per_request(
    proxied: tuple[Node, PgProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """Every request meets the dead registry; the log says so once per front (then at
    most once per interval), so a busy node's log cannot become the outage's flood."""
    node, proxy = proxied
    assert node.http_port and node.handle_port
    await proxy.refuse()
    proxy.drop_connections()
    caplog.clear()
    client = NativeClient("127.0.0.1", node.handle_port, timeout_s=10)
    for i in range(20):
        status, _ = await _get(node.http_port, f"/api/handles/88.118.2/GONE-{i}")
        assert status == 503
        reply = await client.resolve(f"88.118.2/GONE-N{i}")
        assert reply.header.response_code == ResponseCode.SERVER_TOO_BUSY
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "registry unreachable" in r.getMessage()
    ]
    assert 2 <= len(warned) <= 4, warned

"""Two real nodes on one database: a write acknowledged by one is never answered stale
by the other once the notification has arrived (waited on, never slept for)."""

from __future__ import annotations

import asyncio

import aiohttp

from node.app import Node
from node.client.native import NativeClient
from protocol.handle import normalise
from tests.node.http_support import (
    A_HANDLE,
    A,
    Api,
    StartNode,
    admin_of,
    url_value,
)
from tests.node.process_support import run_idnode


async def native_url(node: Node, handle: str) -> str | None:
    assert node.handle_port is not None
    reply = await NativeClient("127.0.0.1", node.handle_port).resolve(handle, types=("URL",))
    values = getattr(reply.body, "values", ())
    return values[0].data.decode() if values else None


async def test_write_on_one_node_read_on_the_other(start_http_node: StartNode) -> None:
    a = await start_http_node()
    b = await start_http_node()
    assert a.cache is not None and b.cache is not None
    async with aiohttp.ClientSession() as session:
        api_a = Api(session, f"http://127.0.0.1:{a.http_port}")
        api_b = Api(session, f"http://127.0.0.1:{b.http_port}")
        path = "/api/handles/" + A_HANDLE
        before = (await api_b.get(path)).json
        old_url = await native_url(b, A_HANDLE)
        await api_b.get(path)  # now a hot HTTP reply on B, and a hot native one
        assert b.cache.stats.hits >= 1 and old_url is not None

        for n in range(3):
            heard = b.cache.invalidated(normalise(A_HANDLE))
            new = f"https://trace.example.com/v{n}"
            r = await api_a.put(path + "?index=1", [url_value(1, new)], headers=admin_of(A))
            assert r.status == 200
            # The writer itself never answers stale, not even before its notification.
            assert await native_url(a, A_HANDLE) == new
            await asyncio.wait_for(heard, 5)
            assert await native_url(b, A_HANDLE) == new
            got = (await api_b.get(path)).json
            assert next(v for v in got["values"] if v["index"] == 1)["data"]["value"] == new
        assert got["values"] != before["values"]


async def test_a_write_from_the_cli_reaches_a_running_node(
    start_http_node: StartNode, tmp_path: object
) -> None:
    node = await start_http_node()
    assert node.cache is not None
    handle = "88.118.2/CLI-WRITE"
    assert await native_url(node, handle) is None  # cached as not found
    heard = node.cache.invalidated(normalise(handle))
    values = '[{"index": 1, "type": "URL", "data": "https://cli.example.com"}]'
    result = await asyncio.to_thread(
        run_idnode,
        "handle",
        "put",
        handle,
        "-f",
        "-",
        input=values,
        env={
            "IDNODE_DATABASE_URL": node.settings.database_url or "",
            "IDNODE_SIGN_RECORDS": "false",
            "IDNODE_DATA_DIR": str(node.settings.data_dir),
        },
    )
    assert result.returncode == 0, result.stderr
    await asyncio.wait_for(heard, 10)
    assert await native_url(node, handle) == "https://cli.example.com"


async def test_the_writer_forgets_its_own_write_before_acknowledging(
    start_http_node: StartNode,
) -> None:
    """Read-your-writes on the node that wrote, without waiting for any notification:
    the notify triggers are off, so only the write path's own invalidation can help."""
    node = await start_http_node()
    assert node.db is not None
    await node.db.registry.pool.execute("ALTER TABLE handles DISABLE TRIGGER USER")
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        path = "/api/handles/" + A_HANDLE
        assert await native_url(node, A_HANDLE) is not None
        await api.get(path)
        r = await api.put(path + "?index=1", [url_value(1, "https://mine")], headers=admin_of(A))
        assert r.status == 200
        assert await native_url(node, A_HANDLE) == "https://mine"
        got = (await api.get(path)).json
        assert next(v for v in got["values"] if v["index"] == 1)["data"]["value"] == "https://mine"

"""Key rotation and bulk re-signing (node.writes.resign, ``idnode keys rotate`` / ``resign``) on a
real node and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import asyncpg
import orjson

from node.app import Node
from node.demo.dataset import demo_dataset
from node.resolution.resolver import Found
from node.signing.signer import handle_node_prefix, open_key_store
from node.writes.resign import progress_printer, resign_all
from tests.node.http_support import (
    Api,
)
from tests.node.process_support import run_idnode
from tests.node.signing_support import H, put_signed, verify_on


async def rotate(node: Node) -> None:
    store = open_key_store(node.settings)
    await asyncio.to_thread(store.generate, "ES256", int(time.time()), make_current=True)
    await node.reload_signer()


def signer_of(handle: str, index: int) -> str:
    return f"{index}:0.NA/{handle_node_prefix(handle)}"


async def test_rotate_keeps_old_signatures_valid_and_resign_moves_all(
    http_node: Node, api: Api
) -> None:
    demos = [d.handle for d in demo_dataset().handles]
    await rotate(http_node)
    # Records signed by the first key still verify: its certificate stays at 400.
    for handle in demos:
        report = await verify_on(http_node, handle)
        assert report.ok and report.signer == signer_of(handle, 400), report.render()
    # New writes sign with the new key, published at 402.
    await put_signed(api)
    report = await verify_on(http_node, H)
    assert report.ok and report.signer == signer_of(H, 402), report.render()

    assert (
        http_node.db is not None and http_node.writes is not None and http_node.resolver is not None
    )
    stop = asyncio.Event()
    failures: list[str] = []
    answered = 0

    async def resolve_meanwhile() -> None:
        nonlocal answered
        while not stop.is_set():
            for handle in demos[:10]:
                found = await http_node.resolver.resolve(handle, public_only=True)  # type: ignore[union-attr]
                if not isinstance(found, Found):
                    failures.append(f"{handle}: {found}")
                answered += 1
                # A cache hit completes without awaiting anything: yield, so the
                # re-signing interleaves with the resolutions.
                await asyncio.sleep(0)

    out = io.StringIO()
    readers = [asyncio.create_task(resolve_meanwhile()) for _ in range(4)]
    try:
        counts = await resign_all(
            http_node.db.registry, http_node.writes, batch=7, progress=progress_printer(out)
        )
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert not failures and answered > 0
    assert counts["resigned"] >= len(demos) - 5 and counts["current"] >= 1  # H was already current
    assert out.getvalue().endswith("\n") and "resign [" in out.getvalue()
    for handle in demos:
        report = await verify_on(http_node, handle)
        if report.signer is not None:
            assert report.ok and report.signer == signer_of(handle, 402), report.render()
    # Nothing left to do; no saved progress once complete.
    again = await resign_all(http_node.db.registry, http_node.writes, batch=50)
    assert again["resigned"] == 0
    conn = await asyncpg.connect(http_node.settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM resign_progress") == 0
    finally:
        await conn.close()


async def test_resign_resumes_after_saved_progress(http_node: Node) -> None:
    assert http_node.db is not None and http_node.writes is not None
    await rotate(http_node)
    registry = http_node.db.registry
    keys = sorted(
        r["handle_key"] for r in await registry.pool.fetch("SELECT handle_key FROM handles")
    )
    middle = keys[len(keys) // 2]
    await registry.pool.execute(
        "INSERT INTO resign_progress (job, last_key, done, updated_at) VALUES ('*', $1, $2, now())",
        middle,
        len(keys) // 2 + 1,
    )
    counts = await resign_all(registry, http_node.writes, batch=5)
    assert sum(counts.values()) == len([k for k in keys if k > middle])  # resumed after `middle`


async def test_cli_rotate_and_resign(start_http_node: Any) -> None:
    node: Node = await start_http_node()
    data_dir, url = str(node.settings.data_dir), node.settings.database_url
    env = {"IDNODE_DATA_DIR": data_dir, "IDNODE_DATABASE_URL": url}
    refused = await asyncio.to_thread(run_idnode, "resign", "--batch", "0", env=env)
    assert refused.returncode != 0 and "--batch" in refused.stderr
    rotated = await asyncio.to_thread(run_idnode, "keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert orjson.loads(rotated.stdout)["certIndex"] == 402
    resigned = await asyncio.to_thread(run_idnode, "resign", "--batch", "10", env=env)
    assert resigned.returncode == 0, resigned.stderr
    assert orjson.loads(resigned.stdout)["resigned"] > 0 and "resign [" in resigned.stderr
    await node.reload_signer()  # what a restart does: the node publishes the new key's cert
    for demo in demo_dataset().handles:
        report = await verify_on(node, demo.handle)
        if report.signer is not None:
            assert report.ok and report.signer == signer_of(demo.handle, 402), report.render()

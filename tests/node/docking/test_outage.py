"""The top-level node goes away (README "Docking", "Forwarding"): what the elevator node
cached keeps being served, what it has not seen fails fast with RC 3, and the textile
node's docking operations wait in its outbox, across its own restart, until the top is
back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from node.app import Node
from node.client.native import NativeClient
from protocol.codes import ResponseCode
from registry.docking import DockingRow
from registry.rows import PrefixStatus
from tests.node.topology_support import ELEVATOR, STEP_BOUND_S, TEXTILE, TOP, topology


def native(node: Node) -> NativeClient:
    assert node.handle_port
    return NativeClient("127.0.0.1", node.handle_port, udp_timeouts_s=(0.3,))


def upstream_failed(node: Node) -> float:
    labels = {"front": "udp", "result": "upstream_failed"}
    return node.metrics.registry.get_sample_value("idnode_forwarded_requests_total", labels) or 0


async def test_the_tree_without_its_top(pg_server: str, tmp_path: Path) -> None:
    async with topology(pg_server, tmp_path) as tree:
        await tree.docked(TEXTILE, {"88.118", "88.118.2", "88.118.3"})
        elevator, cached = tree[ELEVATOR], "88.118.2/ROLL-2026-000123"
        assert (await native(elevator).resolve(cached)).header.response_code == ResponseCode.SUCCESS

        # The top and the textile node stop; the elevator's copy outlives its TTL.
        await tree.member(TOP).stop()
        await tree.member(TEXTILE).stop()
        tree.member(ELEVATOR).monotonic.advance(3600)
        stale = await native(elevator).resolve(cached)
        assert stale.header.response_code == ResponseCode.SUCCESS  # served stale
        # A prefix it never looked up needs the top: RC 3 at once, counted.
        unseen = await native(elevator).resolve("88.118.5/FIN-2026-000001")
        assert unseen.header.response_code == ResponseCode.SERVER_TOO_BUSY
        assert upstream_failed(elevator) == 1

        # The textile node, top still away: a prefix disabled must be withdrawn upstream.
        textile = await tree.member(TEXTILE).start()
        assert textile.db is not None and textile.docking is not None
        await textile.db.registry.set_prefix_status(
            "88.118.3", PrefixStatus.DISABLED, textile.now()
        )
        row = await _until(textile, "88.118.3", lambda r: r.action == "withdraw" and r.attempts)
        assert row.state == "failed" and "127.0.0.1" in row.last_error
        # ...and still after a restart of the textile node: the outbox is in its database.
        await tree.member(TEXTILE).stop()
        textile = await tree.member(TEXTILE).start()
        assert (await _row(textile, "88.118.3")).state in ("pending", "failed")

        # The top is back (same port): past the backoff, the withdrawal goes through.
        await tree.member(TOP).start()
        tree.member(TEXTILE).clock.advance(600)
        await tree.docked(TEXTILE, {"88.118"})
        await _until(textile, "88.118.3", lambda r: r.state == "withdrawn")
        gone = await native(tree[TOP]).resolve("0.NA/88.118.3")
        assert gone.header.response_code != ResponseCode.SUCCESS


async def _row(node: Node, prefix: str) -> DockingRow:
    assert node.docking is not None
    return next(r for r in await node.docking.outbox.rows() if r.prefix == prefix)


async def _until(node: Node, prefix: str, ok: Callable[[DockingRow], object]) -> DockingRow:
    """Until the outbox row of ``prefix`` satisfies ``ok`` (woken by each delivery round)."""
    docking = node.docking
    assert docking is not None

    seen: list[DockingRow] = []

    async def wait() -> DockingRow:
        while not ok(row := await _row(node, prefix)):
            seen.append(row)
            docking.wake()
            async with docking.changed:
                await docking.changed.wait()
        return row

    try:
        return await asyncio.wait_for(wait(), STEP_BOUND_S)
    except TimeoutError:
        raise AssertionError(f"{prefix} never got there; last seen: {seen[-1:]}") from None

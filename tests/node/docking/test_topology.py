"""The national tree on loopback (tests/node/topology_support.py): the secondaries dock
at start, and the top answers for their prefixes as the reference's prefix servers do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.client.native import NativeClient
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.structured import SiteInfo, decode_admin
from tests.node.topology_support import ELEVATOR, TEXTILE, TOP, Topology, topology


@pytest.fixture
async def tree(pg_server: str, tmp_path: Path) -> AsyncIterator[Topology]:
    async with topology(pg_server, tmp_path) as t:
        await t.docked(TEXTILE, {"88.118", "88.118.2", "88.118.3", "88.118.5"})
        await t.docked(ELEVATOR, {"88.119", "88.119.2", "88.119.3"})
        yield t


def client(tree: Topology, name: str) -> NativeClient:
    port = tree[name].handle_port
    assert port
    return NativeClient("127.0.0.1", port)


async def test_the_secondaries_dock_at_start(tree: Topology) -> None:
    top = client(tree, TOP)
    textile_site = tree[TEXTILE].site
    assert textile_site is not None
    reply = await top.resolve("0.NA/88.118", types=("HS_SITE",))
    assert reply.header.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionReply)
    sites = [SiteInfo.from_wire(v.data) for v in reply.body.values]
    assert sites == [textile_site.info]
    # The enterprise prefix, a derived prefix registered under 88.118, owned by it.
    derived = await top.resolve("0.NA/88.118.2")
    assert isinstance(derived.body, ResolutionReply)
    by_type = {v.type: v for v in derived.body.values}
    assert SiteInfo.from_wire(by_type["HS_SITE"].data) == textile_site.info
    assert decode_admin(by_type["HS_ADMIN"].data).handle == "0.NA/88.118"
    # A prefix awaiting review is not registered upstream.
    assert (await top.resolve("0.NA/88.118.6")).header.response_code != ResponseCode.SUCCESS

"""What can go wrong upstream, on the three-node topology: referral loops and over-long
chains end with an error, not a hang; a server that forges its replies (wrong request
id, handle or digest) is not believed, and each forgery is counted; a record without a
signature is served as such under ``report`` and refused under ``require``; a client
older than 2.10 gets a referral followed for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.client.native import NativeClient
from protocol.bodies import ErrorReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.message import Envelope, Header, Message
from protocol.values import HandleValue
from tests.node.resolution.forward.forger_support import Forger, put_at_top, site_at
from tests.node.topology_support import ELEVATOR, TEXTILE, TOP, Topology, topology


@pytest.fixture
async def forger() -> AsyncIterator[tuple[Forger, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Forger, local_addr=("127.0.0.1", 0))
    try:
        yield proto, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def native(node: Node) -> NativeClient:
    assert node.handle_port
    return NativeClient("127.0.0.1", node.handle_port, timeout_s=10)


def forged(node: Node, mismatch: str) -> float:
    labels = {"mismatch": mismatch}
    return (
        node.metrics.registry.get_sample_value("idnode_upstream_forged_replies_total", labels) or 0
    )


def message_of(reply: Message) -> str:
    return reply.body.message if isinstance(reply.body, ErrorReply) else ""


@pytest.fixture
async def tree(pg_server: str, tmp_path: Path) -> AsyncIterator[Topology]:
    async with topology(pg_server, tmp_path) as t:
        await t.docked(TEXTILE, {"88.118"})
        yield t


async def test_loops_and_long_chains_end_in_an_error(tree: Topology) -> None:
    top_site = tree[TOP].site
    assert top_site is not None
    # 0.NA/88.300 refers its derived prefixes back to the top itself: a loop.
    await put_at_top(tree, "0.NA/88.300", HandleValue(1, "HS_SITE.PREFIX", top_site.info.to_wire()))
    # 0.NA/88.301 -> HS_SERV 0.NA/88.302 -> ... -> 0.NA/88.312: longer than 8 hops.
    for n in range(301, 312):
        await put_at_top(
            tree, f"0.NA/88.{n}", HandleValue(1, "HS_SERV", f"0.NA/88.{n + 1}".encode())
        )
    elevator = native(tree[ELEVATOR])
    loop = await elevator.resolve("88.300.1/X")
    chain = await elevator.resolve("88.301/X")
    assert loop.header.response_code == ResponseCode.SERVER_TOO_BUSY
    assert "loop" in message_of(loop)
    assert chain.header.response_code == ResponseCode.SERVER_TOO_BUSY
    assert "more than 8 hops" in message_of(chain)


@pytest.mark.parametrize("mode", ["request id", "handle", "request digest"])
async def test_a_forged_reply_is_discarded_and_counted(
    tree: Topology, forger: tuple[Forger, int], mode: str
) -> None:
    proto, port = forger
    proto.mode = mode
    await put_at_top(tree, "0.NA/88.400", HandleValue(1, "HS_SITE", site_at(port).to_wire()))
    reply = await native(tree[ELEVATOR]).resolve("88.400/ROLL-1")
    assert reply.header.response_code == ResponseCode.SERVER_TOO_BUSY
    assert forged(tree[ELEVATOR], mode) >= 1


async def test_an_unsigned_record_is_said_to_be_unsigned(
    tree: Topology, forger: tuple[Forger, int]
) -> None:
    _, port = forger  # honest: a right reply, without any signature
    await put_at_top(tree, "0.NA/88.400", HandleValue(1, "HS_SITE", site_at(port).to_wire()))
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"http://127.0.0.1:{tree[ELEVATOR].http_port}/api/handles/88.400/ROLL-1")
        assert r.status == 200 and r.headers["X-Idnode-Signature"] == "unsigned"


async def test_a_client_older_than_2_10_gets_the_referral_followed(tree: Topology) -> None:
    """The top refers 0.NA/88.118.77 (registered nowhere) to the textile node through
    0.NA/88.118's HS_SITE.PREFIX: RC 303 for a 2.11 client; for a 2.6 client the top
    asks the textile node itself and answers with what it says."""
    top, textile = tree[TOP], tree[TEXTILE]
    assert top.handle_port

    def asked() -> float:
        labels = {"front": "udp", "op": "resolution", "rc": "100"}
        return textile.metrics.registry.get_sample_value("idnode_requests_total", labels) or 0

    async def ask(version: tuple[int, int]) -> Message:
        request = Message(
            Envelope(
                *version, suggested_major=version[0], suggested_minor=version[1], request_id=9
            ),
            Header(OpCode.RESOLUTION, flags=OpFlag.RECU | OpFlag.PUBL),
            ResolutionRequest("0.NA/88.118.77"),
        )
        return await native(top).request(request)

    before = asked()
    new = await ask((2, 11))
    assert new.header.response_code == ResponseCode.PREFIX_REFERRAL and asked() == before
    old = await ask((2, 6))
    assert old.header.response_code == ResponseCode.HANDLE_NOT_FOUND
    assert asked() == before + 1  # the top asked the textile node

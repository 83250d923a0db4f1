"""Who gets answered through the tree (``recursion_networks``, RECU, the recursion
count), and ``forward_signatures = require``, on the three-node topology."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.client.native import DEFAULT_FLAGS, NativeClient
from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import Reassembler
from protocol.message import Envelope, Header, Message, decode, encode
from protocol.values import HandleValue
from tests.node.conftest import ipv6_loopback
from tests.node.resolution.forward.forger_support import Forger, put_at_top, site_at
from tests.node.topology_support import ELEVATOR, TEXTILE, topology

ROLL = "88.118.2/ROLL-2026-000123"


def request(handle: str = ROLL, recursion: int = 0, flags: OpFlag = DEFAULT_FLAGS) -> Message:
    return Message(
        Envelope(request_id=secrets.randbits(31) or 1),
        Header(OpCode.RESOLUTION, flags=flags, recursion=recursion, expiration=2**31),
        ResolutionRequest(handle),
    )


async def udp_exchange(host: str, port: int, data: bytes) -> Message:
    """One request from a socket bound to ``host``'s family, the reply reassembled."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    reassembler = Reassembler()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, datagram: bytes, addr: tuple[str, int]) -> None:
            whole = reassembler.feed(datagram, loop.time(), addr)
            if whole is not None and not done.done():
                done.set_result(whole)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return decode(await asyncio.wait_for(done, 5))
    finally:
        transport.close()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
async def test_only_allowed_networks_are_answered_through_the_tree(
    pg_server: str, tmp_path: Path
) -> None:
    """The elevator listens on every address but recurses for 127.0.0.0/8 only: ::1 gets
    RC 301, even sending the very bytes whose reply the cache holds; RECU clear means
    no recursion; a recursion count at the limit gets RC 6."""
    only_v4 = {
        "bind": "::",
        "public_address": "127.0.0.1",
        "recursion_networks": "127.0.0.0/8",
        "udp_max_reply_bytes": 65_536,  # a whole roll over UDP, as the cache check wants
    }
    async with topology(pg_server, tmp_path, elevator=lambda url: only_v4) as tree:
        await tree.docked(TEXTILE, {"88.118", "88.118.2"})
        elevator = tree[ELEVATOR]
        port = elevator.handle_port
        assert port and elevator.handler is not None
        same = encode(request())
        first = await udp_exchange("127.0.0.1", port, same)
        assert first.header.response_code == ResponseCode.SUCCESS
        hits = sum(elevator.handler.front_stats["udp"].hits.values())
        assert (await udp_exchange("127.0.0.1", port, same)).header.response_code == 1
        assert sum(elevator.handler.front_stats["udp"].hits.values()) == hits + 1  # cached
        refused = await udp_exchange("::1", port, same)
        assert refused.header.response_code == ResponseCode.SERVER_NOT_RESP
        allowed = NativeClient("127.0.0.1", port)
        no_recu = await allowed.request(request(flags=OpFlag.CACR | OpFlag.PUBL))
        assert no_recu.header.response_code == ResponseCode.SERVER_NOT_RESP
        limit = elevator.settings.recursion_limit
        deep = await allowed.request(request("88.118.2/ROLL-2026-000124", recursion=limit))
        assert deep.header.response_code == ResponseCode.RECURSION_COUNT_TOO_HIGH
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"http://[::1]:{elevator.http_port}/api/handles/{ROLL}")
            assert (r.status, (await r.json())["responseCode"]) == (400, 301)
            r = await http.get(f"http://127.0.0.1:{elevator.http_port}/api/handles/{ROLL}")
            assert r.status == 200


@pytest.fixture
async def forger() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Forger, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_require_serves_only_records_that_verify(
    pg_server: str, tmp_path: Path, forger: int
) -> None:
    """The textile node's records verify against the trusted roots and are served; a
    prefix server's unsigned record is refused (RC 2, HTTP 502), saying why."""
    require = {"forward_signatures": "require"}
    async with topology(pg_server, tmp_path, elevator=lambda url: require) as tree:
        await tree.docked(TEXTILE, {"88.118", "88.118.2"})
        await put_at_top(tree, "0.NA/88.400", HandleValue(1, "HS_SITE", site_at(forger).to_wire()))
        elevator = tree[ELEVATOR]
        assert elevator.handle_port
        client = NativeClient("127.0.0.1", elevator.handle_port)
        assert (await client.request(request())).header.response_code == ResponseCode.SUCCESS
        unsigned = await client.request(request("88.400/ROLL-1"))
        assert unsigned.header.response_code == ResponseCode.ERROR
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"http://127.0.0.1:{elevator.http_port}/api/handles/88.400/ROLL-1")
            body = await r.json()
        assert r.status == 502 and "unsigned" in body["message"]

"""NativeClient's transport choice against a real node: UDP that stays silent or
answers garbage makes the client retry, then fall back to TCP.

The setup is one port where UDP is a stand-in we control and TCP forwards to the node:
the client is pointed at the stand-in, so what it gets over TCP is the node's answer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from node.app import Node
from node.client.native import NativeClient
from tests.node.native_support import ABC, indexes_of, request_id, served

_U32 = struct.Struct(">I")


class _UdpStandIn(asyncio.DatagramProtocol):
    """Records every datagram; with ``garbage``, answers each with an undecodable reply."""

    def __init__(self, garbage: bool) -> None:
        self.garbage = garbage
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        if self.garbage and self.transport is not None:
            # The request's envelope (so the client takes it as the reply to its
            # request), then a 24-byte header of 0xff: its body length cannot be met.
            junk = b"\xff" * 24
            self.transport.sendto(data[:16] + _U32.pack(len(junk)) + junk, addr)


async def _proxy(
    node_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", node_port)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


@pytest.fixture(params=["silent", "garbage"])
async def stand_in(
    native_node: Node, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[int, _UdpStandIn]]:
    """(port, UDP stand-in): UDP on the port is the stand-in, TCP forwards to the node."""
    node_port = native_node.handle_port
    assert node_port is not None
    loop = asyncio.get_running_loop()
    udp = _UdpStandIn(garbage=request.param == "garbage")
    for _ in range(10):  # a port free for both UDP and TCP
        transport, _ = await loop.create_datagram_endpoint(lambda: udp, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            server = await asyncio.start_server(
                lambda r, w: _proxy(node_port, r, w), "127.0.0.1", port
            )
            break
        except OSError:
            transport.close()
    else:
        pytest.fail("no port free for both UDP and TCP")
    try:
        yield port, udp
    finally:
        server.close()
        await server.wait_closed()
        transport.close()


async def test_client_falls_back_to_tcp(
    native_node: Node, stand_in: tuple[int, _UdpStandIn]
) -> None:
    """Silent UDP (a firewall dropping it): one datagram per attempt timeout, all
    unanswered, then TCP. Garbage UDP (the right request id, an undecodable message):
    not the caller's problem either; the client goes on to TCP at once."""
    port, udp = stand_in
    client = NativeClient("127.0.0.1", port, udp_timeouts_s=(0.1, 0.2))
    reply = await asyncio.wait_for(client.resolve(ABC), 5.0)
    assert indexes_of(reply) == [1, 2, 100]
    assert len(udp.received) == (1 if udp.garbage else 2)
    assert all(request_id(d) == reply.request_id for d in udp.received)
    assert served(native_node, "tcp") == 1 and served(native_node, "udp") == 0

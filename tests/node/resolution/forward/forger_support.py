"""A prefix server of our own making for the forwarding tests: it answers every
resolution with a URL of its choosing, rightly or (``mode``) with a reply that does not
answer the request. And writing prefix records at the top as its operator would."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from protocol.bodies import RequestDigest, ResolutionReply, ResolutionRequest
from protocol.codes import ResponseCode
from protocol.handle import parse_handle
from protocol.message import decode, encode
from protocol.negotiate import build_reply
from protocol.structured import Interface, InterfaceProtocol, InterfaceType, ServerInfo, SiteInfo
from protocol.values import HandleValue
from tests.node.topology_support import TOP, Topology


class Forger(asyncio.DatagramProtocol):
    """A prefix server that answers every resolution with a URL of its choosing, and,
    depending on ``mode``, a reply that does not answer the request."""

    def __init__(self) -> None:
        self.mode = "honest"
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = decode(data)
        assert isinstance(request.body, ResolutionRequest)
        handle = request.body.handle if self.mode != "handle" else "88.400/SOMETHING-ELSE"
        body = ResolutionReply(handle, (HandleValue(1, "URL", b"https://forged.example/"),))
        reply = build_reply(request, ResponseCode.SUCCESS, body, now=time.time(), site_serial=1)
        if self.mode == "request id":
            reply = replace(
                reply, envelope=replace(reply.envelope, request_id=request.request_id ^ 1)
            )
        if self.mode == "request digest" and reply.digest is not None:
            reply = replace(reply, digest=RequestDigest(reply.digest.hash_type, bytes(32)))
        assert self.transport is not None
        self.transport.sendto(encode(reply), addr)


def site_at(port: int) -> SiteInfo:
    interfaces = (Interface(InterfaceType.QUERY, InterfaceProtocol.UDP, port),)
    return SiteInfo(serial=1, servers=(ServerInfo.for_address(1, "127.0.0.1", b"", interfaces),))


async def put_at_top(tree: Topology, handle: str, *values: HandleValue) -> None:
    top = tree[TOP]
    assert top.writes is not None
    await top.writes.put(
        parse_handle(handle), values, actor="test:operator", now=top.now(), source="cli"
    )

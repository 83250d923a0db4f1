"""A resolution request asks for at most ``MAX_REQUESTED_TYPES`` types and
``MAX_REQUESTED_INDEXES`` indexes (protocol.bodies.ResolutionRequest). Past that, a real
node answers RC 4 naming the field, having read only the count: the 52,000-type request
that cost 400 ms of event-loop time is refused before a single type is decoded."""

from __future__ import annotations

import struct

from node.app import Node
from node.client.native import DEFAULT_FLAGS
from protocol.bodies import ErrorReply, RawBody, ResolutionReply
from protocol.codes import OpCode, ResponseCode
from protocol.message import MAX_MESSAGE_BYTES, Envelope, Header, Message, decode, encode
from protocol.values import MAX_REQUESTED_INDEXES, MAX_REQUESTED_TYPES
from tests.node.conftest import EXPIRATION, tcp_exchange
from tests.node.native_support import ABC, request_bytes, udp_exchange

_U32 = struct.Struct(">I")


def oversized(handle: str, indexes: list[int], types: list[str], rid: int) -> bytes:
    """A RESOLUTION request built byte for byte: our encoder refuses such lists."""
    raw = handle.encode()
    body = _U32.pack(len(raw)) + raw
    body += _U32.pack(len(indexes)) + b"".join(_U32.pack(i) for i in indexes)
    body += _U32.pack(len(types)) + b"".join(_U32.pack(len(t)) + t.encode() for t in types)
    header = Header(OpCode.RESOLUTION, flags=DEFAULT_FLAGS, expiration=int(EXPIRATION))
    return encode(Message(Envelope(request_id=rid), header, RawBody(body)))


def malformed(node: Node, front: str) -> float:
    found = node.metrics.registry.get_sample_value(
        "idnode_malformed_requests_total", {"front": front}
    )
    return found or 0.0


def refused(reply: Message, rid: int, field: str) -> str:
    assert (reply.request_id, reply.header.response_code) == (rid, ResponseCode.PROTOCOL_ERROR)
    assert isinstance(reply.body, ErrorReply)
    message = reply.body.message
    assert message.startswith(f"{field} count "), message
    return message


async def test_52k_types_over_tcp_are_refused_with_rc_4(native_node: Node) -> None:
    assert native_node.handle_port
    data = oversized(ABC, [], ["A"] * 52_000, rid=4242)
    assert len(data) <= MAX_MESSAGE_BYTES + 20  # one legal-sized message
    before = malformed(native_node, "tcp")
    reply = decode(await tcp_exchange("127.0.0.1", native_node.handle_port, data))
    message = refused(reply, 4242, "types")
    assert message == f"types count 52000 exceeds the limit of {MAX_REQUESTED_TYPES}"
    assert malformed(native_node, "tcp") == before + 1
    # The node goes on answering.
    good = decode(await tcp_exchange("127.0.0.1", native_node.handle_port, request_bytes(ABC)))
    assert good.header.response_code == ResponseCode.SUCCESS


async def test_one_past_each_bound_over_udp(native_node: Node) -> None:
    reply = await udp_exchange(native_node, oversized(ABC, [], ["URL"] * 257, rid=77))
    refused(reply, 77, "types")
    many = list(range(1, MAX_REQUESTED_INDEXES + 2))
    reply = await udp_exchange(native_node, oversized(ABC, many, [], rid=78))
    assert "exceeds the limit of 1000" in refused(reply, 78, "indexes")


async def test_requests_at_the_bounds_are_answered(native_node: Node) -> None:
    types = (*(f"NOT.THERE.{i}" for i in range(MAX_REQUESTED_TYPES - 1)), "URL")
    indexes = tuple(range(5000, 5000 + MAX_REQUESTED_INDEXES))
    reply = await udp_exchange(native_node, request_bytes(ABC, indexes, types))
    assert reply.header.response_code == ResponseCode.SUCCESS
    assert isinstance(reply.body, ResolutionReply)
    assert {v.type for v in reply.body.values} == {"URL"}

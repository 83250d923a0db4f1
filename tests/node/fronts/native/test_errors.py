"""What the native front does with bad input: garbage and short datagrams, lying
lengths, unknown opcodes, oversized TCP messages. Where the reference answers with
request id 0xffffffff or RC 2, we echo the request id and say RC 4 / RC 5 (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from node.app import Node
from node.client.native import DEFAULT_FLAGS
from protocol.bodies import ErrorReply, RawBody, ResolutionReply
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.message import (
    ENVELOPE_BYTES,
    LENGTH_OFFSET,
    MAX_MESSAGE_BYTES,
    Envelope,
    Header,
    Message,
    decode,
    encode,
)
from tests.node.conftest import UdpPeer, read_message
from tests.node.native_support import ABC, indexes_of, request_bytes, request_id

_U32 = struct.Struct(">I")
BODY_LENGTH_OFFSET = ENVELOPE_BYTES + 20


def malformed(node: Node, front: str) -> float:
    value = node.metrics.registry.get_sample_value(
        "idnode_malformed_requests_total", {"front": front}
    )
    return value or 0.0


def lying_body_length(data: bytes, extra: int = 100) -> bytes:
    """A well-framed request whose header announces more body bytes than it carries."""
    (n,) = _U32.unpack_from(data, BODY_LENGTH_OFFSET)
    return data[:BODY_LENGTH_OFFSET] + _U32.pack(n + extra) + data[BODY_LENGTH_OFFSET + 4 :]


def unsupported(opcode: int, request_id: int) -> bytes:
    header = Header(opcode, flags=DEFAULT_FLAGS)
    return encode(Message(Envelope(request_id=request_id), header, RawBody(b"\0\0\0\x0588.118")))


def assert_error(datagram: bytes, rc: ResponseCode, rid: int, opcode: int) -> Message:
    reply = decode(datagram)
    assert (reply.header.response_code, reply.request_id, reply.header.opcode) == (rc, rid, opcode)
    assert not reply.is_request and isinstance(reply.body, ErrorReply) and reply.body.message
    return reply


async def test_short_datagram_gets_no_reply(native_node: Node, node_udp: UdpPeer) -> None:
    """Under 20 bytes there is no request id to answer to: silence. The short datagram
    goes first and a good request right after; a reply to the short one would be sent
    before the good one's (it needs no database round trip), so the first reply being
    the good one's shows there was none. A short bounded wait then guards against a
    late extra datagram."""
    node_udp.send(b"\x02\x0b\x02\x0b" + bytes(15))  # 19 bytes: an envelope minus one
    good = request_bytes(ABC)
    node_udp.send(good)
    (first,) = await node_udp.recv_message()
    assert request_id(first) == request_id(good)
    assert indexes_of(decode(first)) == [1, 2, 100]
    await node_udp.assert_silent()
    assert malformed(native_node, "udp") == 1  # received and counted, not lost


async def test_garbage_datagram_then_a_good_request(native_node: Node, node_udp: UdpPeer) -> None:
    garbage = random.Random(2641).randbytes(30)
    # 30 random bytes have a readable envelope: its length field claims far more than
    # a message may hold, so the answer is RC 4 to the request id in bytes 8-11.
    assert _U32.unpack_from(garbage, LENGTH_OFFSET)[0] > MAX_MESSAGE_BYTES
    good = request_bytes(ABC)
    node_udp.send(garbage)
    node_udp.send(good)
    replies = {
        request_id(d): d for d in [*await node_udp.recv_message(), *await node_udp.recv_message()]
    }
    assert set(replies) == {request_id(garbage), request_id(good)}
    assert_error(replies[request_id(garbage)], ResponseCode.PROTOCOL_ERROR, request_id(garbage), 0)
    assert indexes_of(decode(replies[request_id(good)])) == [1, 2, 100]
    assert malformed(native_node, "udp") == 1


async def test_lying_body_length_udp(native_node: Node, node_udp: UdpPeer) -> None:
    bad = lying_body_length(request_bytes(ABC, flags=DEFAULT_FLAGS | OpFlag.RRDG))
    node_udp.send(bad)
    (datagram,) = await node_udp.recv_message()
    reply = assert_error(datagram, ResponseCode.PROTOCOL_ERROR, request_id(bad), OpCode.RESOLUTION)
    # No digest of a request that could not be read, even though RRDG was asked for.
    assert reply.digest is None and OpFlag.RRDG not in reply.header.flags
    assert malformed(native_node, "udp") == 1


async def test_lying_body_length_tcp_keeps_the_connection(native_node: Node) -> None:
    """The envelope's message length is right, so the stream stays in step: RC 4 for the
    bad message, then the next one on the same connection is answered."""
    assert native_node.handle_port is not None
    bad = lying_body_length(request_bytes(ABC))
    good = request_bytes(ABC)
    reader, writer = await asyncio.open_connection("127.0.0.1", native_node.handle_port)
    try:
        writer.write(bad + good)
        await writer.drain()
        assert_error(await read_message(reader), ResponseCode.PROTOCOL_ERROR, request_id(bad), 1)
        reply = decode(await read_message(reader))
        assert reply.request_id == request_id(good) and indexes_of(reply) == [1, 2, 100]
    finally:
        writer.close()
        await writer.wait_closed()
    assert malformed(native_node, "tcp") == 1


@pytest.mark.parametrize("opcode", [OpCode.LIST_NAS, OpCode.SESSION_EXCHANGEKEY, 999])
async def test_unknown_opcode_gets_rc5(native_node: Node, node_udp: UdpPeer, opcode: int) -> None:
    assert native_node.handle_port is not None
    udp_req = unsupported(opcode, 0x5150)
    node_udp.send(udp_req)
    (datagram,) = await node_udp.recv_message()
    assert_error(datagram, ResponseCode.OPERATION_NOT_SUPPORTED, 0x5150, opcode)

    tcp_req = unsupported(opcode, 0x5151)
    reader, writer = await asyncio.open_connection("127.0.0.1", native_node.handle_port)
    try:
        writer.write(tcp_req + request_bytes(ABC))
        await writer.drain()
        assert_error(
            await read_message(reader), ResponseCode.OPERATION_NOT_SUPPORTED, 0x5151, opcode
        )
        assert indexes_of(decode(await read_message(reader))) == [1, 2, 100]
    finally:
        writer.close()
        await writer.wait_closed()
    assert malformed(native_node, "udp") == malformed(native_node, "tcp") == 0  # well formed


async def test_oversized_tcp_message_gets_rc4_then_close(native_node: Node) -> None:
    """A length over 262,144 cannot be read past, so the stream cannot be resynchronised:
    RC 4 with the request id echoed, then the node closes (EOF, no further bytes)."""
    assert native_node.handle_port is not None
    env = Envelope(request_id=0x0BADF00D, length=MAX_MESSAGE_BYTES + 1).to_wire()
    reader, writer = await asyncio.open_connection("127.0.0.1", native_node.handle_port)
    try:
        writer.write(env + bytes(64))  # some of the announced bytes; the rest never come
        await writer.drain()
        assert_error(await read_message(reader), ResponseCode.PROTOCOL_ERROR, 0x0BADF00D, 0)
        assert await asyncio.wait_for(reader.read(1), 5.0) == b""
    finally:
        writer.close()
        await writer.wait_closed()
    assert malformed(native_node, "tcp") == 1


async def test_a_reply_sent_to_the_node_is_refused(native_node: Node, node_udp: UdpPeer) -> None:
    """A well-formed message with a response code set is not a request: RC 4, id echoed."""
    header = Header(OpCode.RESOLUTION, ResponseCode.SUCCESS, flags=OpFlag.AUTH)
    node_udp.send(encode(Message(Envelope(request_id=77), header, ResolutionReply(ABC, ()))))
    (datagram,) = await node_udp.recv_message()
    reply = assert_error(datagram, ResponseCode.PROTOCOL_ERROR, 77, OpCode.RESOLUTION)
    assert isinstance(reply.body, ErrorReply) and "request" in reply.body.message
    assert malformed(native_node, "udp") == 1

"""Round trips through the native Handle front of a real node: NativeClient and raw
sockets over UDP and TCP, on loopback, against the golden records in PostgreSQL."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
import struct
from typing import Any

import pytest

from node.app import Node
from node.client.native import DEFAULT_FLAGS, NativeClient
from node.fronts.native import server as server_module
from protocol.bodies import ErrorReply, HashType, ResolutionReply
from protocol.codes import ALL_ADMIN_PERMS, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.message import ENVELOPE_BYTES, Envelope, decode
from protocol.structured import (
    AdminRef,
    InterfaceProtocol,
    InterfaceType,
    ServerInfo,
    SiteInfo,
    decode_admin,
    decode_vlist,
)
from protocol.values import Reference
from tests.node.conftest import (
    EXPIRATION,
    StartNode,
    UdpPeer,
    ipv6_loopback,
    read_message,
    tcp_exchange,
    udp_peer,
)
from tests.node.native_support import (
    ABC,
    SECRET_DATA,
    indexes_of,
    request_bytes,
    request_id,
    served,
)

_U32 = struct.Struct(">I")


def client(node: Node, *, udp: bool = True) -> NativeClient:
    assert node.handle_port is not None
    return NativeClient("127.0.0.1", node.handle_port, udp=udp)


def advertised(server: ServerInfo) -> list[tuple[int, int, int]]:
    return [(i.type, i.protocol, i.port) for i in server.interfaces]


def expected_interfaces(node: Node) -> list[tuple[int, int, int]]:
    """Native TCP (admin + query) and UDP (query) on the bound handle port, and the HTTP
    API on its bound port: the ports actually bound, not the 0s of the settings."""
    assert node.handle_port and node.http_port
    return [
        (InterfaceType.BOTH, InterfaceProtocol.TCP, node.handle_port),
        (InterfaceType.QUERY, InterfaceProtocol.UDP, node.handle_port),
        (InterfaceType.BOTH, InterfaceProtocol.HTTP, node.http_port),
    ]


async def test_udp_and_tcp_resolution(native_node: Node) -> None:
    by_udp = await client(native_node).resolve(ABC)
    assert served(native_node, "udp") == 1 and served(native_node, "tcp") == 0
    by_tcp = await client(native_node, udp=False).resolve(ABC)
    assert served(native_node, "tcp") == 1
    for reply in (by_udp, by_tcp):
        assert indexes_of(reply) == [1, 2, 100]
        assert isinstance(reply.body, ResolutionReply) and reply.body.handle == ABC
        assert reply.body.values[0].data == b"https://example.com/abc123"
        assert reply.header.expiration == EXPIRATION
        assert reply.header.flags == OpFlag.AUTH | DEFAULT_FLAGS
        assert reply.envelope.version == (2, 11)


async def test_large_udp_reply_is_fragmented(start_node: StartNode) -> None:
    # Within a raised cap (replies over udp_max_reply_bytes: test_udp_limits.py).
    native_node = await start_node(udp_max_reply_bytes=4096)
    assert native_node.handle_port is not None
    node_udp = await udp_peer("127.0.0.1", native_node.handle_port)
    try:
        req = request_bytes("88.118.2/BIG40")
        node_udp.send(req)
        datagrams = await node_udp.recv_message()
    finally:
        node_udp.transport.close()
    assert len(datagrams) == 6 and all(len(d) <= 512 for d in datagrams)
    total = _U32.unpack_from(datagrams[0], 16)[0]
    for seq, d in enumerate(datagrams):
        assert request_id(d) == request_id(req)
        assert _U32.unpack_from(d, 12)[0] == seq and _U32.unpack_from(d, 16)[0] == total
        assert d[2] & 0x20 == 0  # never the truncated flag
    whole = decode(datagrams[0][:ENVELOPE_BYTES] + b"".join(d[ENVELOPE_BYTES:] for d in datagrams))
    assert indexes_of(whole) == [*range(1, 41), 100]
    # The client reassembles the same reply over UDP.
    assert indexes_of(await client(native_node).resolve("88.118.2/BIG40")) == [*range(1, 41), 100]
    assert served(native_node, "udp") == 2 and served(native_node, "tcp") == 0


async def test_fragmented_udp_request_is_reassembled(node_udp: UdpPeer) -> None:
    """A request longer than one datagram (many types) arrives in fragments, here last
    fragment first; the node reassembles it and answers once."""
    types = (*tuple(f"NO-SUCH-TYPE-{n:03d}" for n in range(40)), "EMAIL")
    req = request_bytes(ABC, (), types)
    fragments = fragment_encoded(req)
    assert len(fragments) == 2
    for datagram in reversed(fragments):
        node_udp.send(datagram)
    (datagram,) = await node_udp.recv_message()
    assert request_id(datagram) == request_id(req)
    assert indexes_of(decode(datagram)) == [2]


@pytest.mark.parametrize(
    ("handle", "indexes", "types", "expected"),
    [
        (ABC, (1, 100), (), [1, 100]),
        (ABC, (), ("URL", "EMAIL"), [1, 2]),
        (ABC, (100,), ("EMAIL",), [2, 100]),  # a union, not an intersection
        (ABC, (), ("url",), [1]),  # type match ignores ASCII case
        ("88.118.2/SUBTYPES", (), ("URL.",), [1, 2]),  # URL and URL.ALT, not URLX
    ],
    ids=["indexes", "types", "union", "type-case", "subtypes"],
)
async def test_filters(
    native_node: Node,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    expected: list[int],
) -> None:
    assert indexes_of(await client(native_node).resolve(handle, indexes, types)) == expected


@pytest.mark.parametrize(
    ("handle", "indexes", "types", "rc"),
    [
        (ABC, (), ("NOSUCHTYPE",), ResponseCode.VALUES_NOT_FOUND),
        (ABC, (999,), (), ResponseCode.VALUES_NOT_FOUND),
        (ABC, (), ("HS_",), ResponseCode.VALUES_NOT_FOUND),  # no subtype match without '.'
        ("88.118.2/NOPE", (), (), ResponseCode.HANDLE_NOT_FOUND),
        ("88.118.2/été-x", (), (), ResponseCode.HANDLE_NOT_FOUND),  # only a-z fold
        ("99.1/x", (), (), ResponseCode.SERVER_NOT_RESP),
        ("no-slash", (), (), ResponseCode.INVALID_HANDLE),
    ],
    ids=["no-type", "no-index", "HS_", "not-found", "non-ascii-case", "not-served", "invalid"],
)
async def test_error_codes(
    native_node: Node,
    node_udp: UdpPeer,
    handle: str,
    indexes: tuple[int, ...],
    types: tuple[str, ...],
    rc: ResponseCode,
) -> None:
    req = request_bytes(handle, indexes, types)
    node_udp.send(req)
    (datagram,) = await node_udp.recv_message()
    reply = decode(datagram)
    assert (reply.header.response_code, reply.request_id) == (rc, request_id(req))
    assert isinstance(reply.body, ErrorReply)
    if rc == ResponseCode.SERVER_NOT_RESP:
        assert "99.1" in reply.body.message
    assert served(native_node, "udp", rc=rc) == 1


@pytest.mark.parametrize(
    ("handle", "expected"),
    [
        ("88.118.2/布料-001", [1, 2, 100]),
        ("88.118.2/ÉTÉ-x", [1, 100]),
        ("88.118.2/abc123", [1, 2, 100]),
    ],
)
async def test_utf8_and_ascii_case_folding_echo_the_handle_as_sent(
    native_node: Node, handle: str, expected: list[int]
) -> None:
    reply = await client(native_node).resolve(handle)
    assert indexes_of(reply) == expected
    assert isinstance(reply.body, ResolutionReply) and reply.body.handle == handle


@pytest.mark.parametrize(
    "flags", [DEFAULT_FLAGS, DEFAULT_FLAGS & ~OpFlag.PUBL], ids=["PUBL", "no-PUBL"]
)
async def test_non_public_value_is_never_sent(node_udp: UdpPeer, flags: OpFlag) -> None:
    """To an anonymous caller: with PUBL, the public values silently; without it, a
    challenge whenever a non-public value is among those asked for (admin capture #1)."""
    public_only = OpFlag.PUBL in flags
    needs = ResponseCode.AUTHENTICATION_NEEDED
    cases = [
        ((), (), ResponseCode.SUCCESS if public_only else needs),
        ((2,), (), ResponseCode.VALUES_NOT_FOUND if public_only else needs),
        ((), ("SECRET",), ResponseCode.VALUES_NOT_FOUND if public_only else needs),
        ((1,), (), ResponseCode.SUCCESS),  # only a public value asked for: no challenge
    ]
    for indexes, types, rc in cases:
        node_udp.send(request_bytes("88.118.2/PRIVATE", indexes, types, flags=flags))
        (datagram,) = await node_udp.recv_message()
        assert SECRET_DATA not in datagram and b"SECRET" not in datagram
        reply = decode(datagram)
        assert reply.header.response_code == rc
        if rc == ResponseCode.SUCCESS:
            assert indexes_of(reply) == ([1, 100] if indexes == () else [1])
            assert (OpFlag.PUBL in reply.header.flags) == (OpFlag.PUBL in flags)


async def test_prefix_record_is_synthesized_when_not_stored(native_node: Node) -> None:
    assert native_node.db is not None and native_node.site is not None
    assert await native_node.db.registry.get_handle("0.NA/88.118.2") is None
    reply = await client(native_node).resolve("0.NA/88.118.2")
    assert indexes_of(reply) == [1, 100, 200]
    assert isinstance(reply.body, ResolutionReply)
    site, admin, group = reply.body.values
    assert site.type == "HS_SITE" and SiteInfo.from_wire(site.data) == native_node.site.info
    (server,) = SiteInfo.from_wire(site.data).servers
    assert advertised(server) == expected_interfaces(native_node)
    assert admin.type == "HS_ADMIN"
    assert decode_admin(admin.data) == AdminRef("88.118.2/ADMIN", 300, int(ALL_ADMIN_PERMS))
    # The prefix's admin group, which REST clients name in the records they create.
    assert group.type == "HS_VLIST" and decode_vlist(group.data) == (
        Reference("88.118.2/ADMIN", 300),
    )


async def test_pipelined_requests_on_one_tcp_connection(native_node: Node) -> None:
    assert native_node.handle_port is not None
    cases = [
        (ABC, 1),
        ("88.118.2/BIG40", 1),
        ("88.118.2/NOPE", 100),
        ("88.118.2/REFS", 1),
        ("88.118.2/布料-001", 1),
        ("99.1/x", 301),
        ("no-slash", 102),
    ] * 4
    requests = [
        request_bytes(h, envelope=Envelope(request_id=0x1000 + n)) for n, (h, _) in enumerate(cases)
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", native_node.handle_port)
    try:
        writer.write(b"".join(requests))  # all at once, without waiting for replies
        await writer.drain()
        replies = [decode(await read_message(reader)) for _ in requests]
        assert [r.request_id for r in replies] == [request_id(q) for q in requests]
        assert [r.header.response_code for r in replies] == [rc for _, rc in cases]
        for reply, (handle, rc) in zip(replies, cases, strict=False):
            if rc == 1:
                assert isinstance(reply.body, ResolutionReply) and reply.body.handle == handle
        # Still open and serving after the burst.
        writer.write(request_bytes(ABC, envelope=Envelope(request_id=7)))
        await writer.drain()
        assert decode(await read_message(reader)).request_id == 7
    finally:
        writer.close()
        await writer.wait_closed()
    assert served(native_node, "tcp") == 4 * 4 + 1


@pytest.mark.parametrize(
    ("version", "hash_type", "hash_name"),
    [((2, 11), HashType.SHA256, "sha256"), ((2, 1), HashType.SHA1, "sha1")],
)
async def test_request_digest(
    node_udp: UdpPeer, version: tuple[int, int], hash_type: HashType, hash_name: str
) -> None:
    """RRDG: the reply starts its body with a digest of the request's header + body as
    sent (no envelope, no credential); SHA-256 from 2.10, SHA-1 for a 2.1 client, which
    also gets its reply at 2.1 (still suggesting 2.11)."""
    env = Envelope(*version, suggested_major=version[0], suggested_minor=version[1], request_id=99)
    req = request_bytes(ABC, flags=DEFAULT_FLAGS | OpFlag.RRDG, envelope=env)
    node_udp.send(req)
    (datagram,) = await node_udp.recv_message()
    reply = decode(datagram)
    assert reply.envelope.version == version and reply.envelope.suggested_version == (2, 11)
    assert OpFlag.RRDG in reply.header.flags and reply.digest is not None
    expected = hashlib.new(
        hash_name, req[ENVELOPE_BYTES:-4]
    ).digest()  # credential length: 4 zero bytes
    assert req[-4:] == bytes(4)
    assert (reply.digest.hash_type, reply.digest.digest) == (hash_type, expected)
    body = datagram[ENVELOPE_BYTES + 24 :]  # after the header: u8 hash type, then the digest
    assert body[0] == hash_type and body[1 : 1 + len(expected)] == expected
    assert indexes_of(reply) == [1, 2, 100]


async def test_old_client_without_digest_gets_its_version(node_udp: UdpPeer) -> None:
    env = Envelope(2, 1, suggested_major=2, suggested_minor=1, request_id=5)
    node_udp.send(request_bytes(ABC, envelope=env))
    (datagram,) = await node_udp.recv_message()
    assert datagram[:4] == bytes([2, 1, 2, 11])
    reply = decode(datagram)
    assert reply.digest is None and OpFlag.RRDG not in reply.header.flags
    assert indexes_of(reply) == [1, 2, 100]


async def test_site_info_over_udp_and_tcp(native_node: Node) -> None:
    assert native_node.site is not None
    assert await client(native_node).site_info() == native_node.site.info
    assert await client(native_node, udp=False).site_info() == native_node.site.info
    assert served(native_node, "udp", "get_site_info") == 1
    assert served(native_node, "tcp", "get_site_info") == 1
    (server,) = native_node.site.info.servers
    assert advertised(server) == expected_interfaces(native_node)
    assert server.ip.exploded == "127.0.0.1"


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback(start_node: StartNode) -> None:
    node6 = await start_node("::1")
    assert node6.handle_port is not None and node6.site is not None
    # The HS_SITE carries ::1 as its 16 bytes. (The reference reads any address with 12
    # leading zero bytes as IPv4, so ::1 comes out as 0.0.0.1 there: a format ambiguity.)
    assert node6.site.info.servers[0].address == bytes(15) + b"\x01"
    for udp in (True, False):
        reply = await NativeClient("::1", node6.handle_port, udp=udp).resolve(ABC)
        assert indexes_of(reply) == [1, 2, 100]
    assert served(node6, "udp") == 1 and served(node6, "tcp") == 1
    # A raw request over TCP on ::1 too.
    raw = await tcp_exchange("::1", node6.handle_port, request_bytes(ABC))
    assert decode(raw).header.response_code == ResponseCode.SUCCESS


async def test_port_0_picks_again_when_the_udp_port_is_busy_for_tcp(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With port 0, UDP picks a port and TCP must bind the same number, which another
    socket may hold (it happened under parallel test runs). Simulated at the OS
    boundary: the first TCP bind fails with EADDRINUSE, as bind(2) would. The node must
    release that UDP port and pick again rather than fail to start."""
    real_listener = server_module.tcp_listener
    refused: list[int] = []

    def busy_once(host: str, port: int, **kw: Any) -> socket.socket:
        if not refused:
            refused.append(port)
            raise OSError(errno.EADDRINUSE, "address already in use")
        return real_listener(host, port, **kw)

    monkeypatch.setattr(server_module, "tcp_listener", busy_once)
    node = await start_node()
    assert node.handle_port is not None and len(refused) == 1
    assert indexes_of(await client(node).resolve(ABC)) == [1, 2, 100]
    assert indexes_of(await client(node, udp=False).resolve(ABC)) == [1, 2, 100]
    if node.handle_port != refused[0]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", refused[0]))  # the abandoned UDP port was closed

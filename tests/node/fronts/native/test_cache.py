"""The native fronts' reply cache, against a real node over real UDP and TCP sockets on
a real PostgreSQL seeded with the golden records.

Hits are proved by the node's own counters (``idnode_cache_hits_total`` rises, the
registry reads counted by ``idnode_cache_registry_reads_total`` do not); what a hit
sends is compared with what a node without a cache sends for the same request on the
same database at the same clock (the full path), byte for byte. The node's wall clock
and monotonic clock are stepped by hand: no sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from node.client.native import DEFAULT_FLAGS, NativeClient
from node.settings import load_settings
from protocol.bodies import ErrorReply, ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.handle import parse_handle
from protocol.keys import decode_public_key
from protocol.message import (
    ENVELOPE_BYTES,
    EXPIRATION_OFFSET,
    Envelope,
    Header,
    Message,
    decode,
    encode,
)
from protocol.msgsign import verify_message
from protocol.negotiate import REPLY_LIFETIME_S
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from tests.node.conftest import (
    CLOCK,
    SEED_TIME,
    UdpPeer,
    read_message,
    seed_golden,
    tcp_exchange,
    udp_peer,
)
from tests.node.http_support import SteppedClock
from tests.node.native_support import notifications_off, settle

ABC = "88.118.2/ABC123"
ABC_URL = b"https://example.com/abc123"
BIG = "88.118.2/BIG40"
NEW = "88.118.2/NEW-1"
_U32 = struct.Struct(">I")


@dataclass
class Nodes:
    """``cached``: the node under test. ``plain``: a node on the same database and the
    same clocks with the cache off, the reference for what the full path sends."""

    cached: Node
    plain: Node
    wall: SteppedClock
    mono: SteppedClock
    database_url: str

    @property
    def port(self) -> int:
        assert self.cached.handle_port is not None
        return self.cached.handle_port


def _settings(database_url: str, data_dir: Path, **flags: Any) -> Any:
    # As tests/node/conftest.py's seeded node: all ports 0, cheap secret hashing,
    # unsigned records (the golden replies are of unsigned records).
    return load_settings(
        env={},
        flags={
            "database_url": database_url,
            "data_dir": str(data_dir),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "prefixes": "88.118",
            "sign_records": False,
            # BIG40's 6 datagrams go over UDP (the cap itself: test_udp_limits.py).
            "udp_max_reply_bytes": 4096,
            **flags,
        },
    )


@pytest.fixture
async def nodes(database_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    wall, mono = SteppedClock(CLOCK), SteppedClock(1000.0)
    started: list[Node] = []
    try:
        cached = Node(_settings(database_url, tmp_path / "cached"), clock=wall, monotonic=mono)
        started.append(cached)
        await cached.start()
        await seed_golden(cached)
        assert cached.resolver is not None
        await cached.resolver.refresh_prefixes()
        await settle(cached)
        plain = Node(
            _settings(database_url, tmp_path / "plain", cache_enabled=False),
            clock=wall,
            monotonic=mono,
        )
        started.append(plain)
        await plain.start()
        assert plain.cache is None and cached.cache is not None
        yield Nodes(cached, plain, wall, mono, database_url)
    finally:
        for node in reversed(started):
            await node.stop()


@pytest.fixture
async def peer(nodes: Nodes) -> AsyncIterator[UdpPeer]:
    p = await udp_peer("127.0.0.1", nodes.port)
    try:
        yield p
    finally:
        p.transport.close()


# --- helpers ------------------------------------------------------------------------------


def resolution(
    handle: str,
    indexes: tuple[int, ...] = (),
    types: tuple[str, ...] = (),
    *,
    session_id: int = 0,
    request_id: int = 1,
    expiration: int = int(CLOCK),
    flags: OpFlag = DEFAULT_FLAGS,
    version: tuple[int, int] = (2, 10),
    suggested: tuple[int, int] = (2, 11),
) -> bytes:
    env = Envelope(
        *version,
        suggested_major=suggested[0],
        suggested_minor=suggested[1],
        session_id=session_id,
        request_id=request_id,
    )
    header = Header(OpCode.RESOLUTION, flags=flags, expiration=expiration)
    return encode(Message(env, header, ResolutionRequest(handle, indexes, types)))


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def hits(node: Node, front: str) -> float:
    return sample(node, "idnode_cache_hits_total", front=front, op="resolution")


def misses(node: Node, front: str) -> float:
    return sample(node, "idnode_cache_misses_total", front=front, op="resolution")


def reads(node: Node) -> float:
    return sample(node, "idnode_cache_registry_reads_total")


def served(node: Node, front: str, rc: int = 1) -> float:
    return sample(node, "idnode_requests_total", front=front, op="resolution", rc=str(rc))


def readdressed(reply: bytes, request: bytes, expiration: int) -> bytes:
    """``reply`` as it must read when sent to ``request`` at the given expiration."""
    out = bytearray(reply)
    out[4:12] = request[4:12]
    _U32.pack_into(out, EXPIRATION_OFFSET, expiration)
    return bytes(out)


def whole(datagrams: list[bytes]) -> bytes:
    return datagrams[0][:ENVELOPE_BYTES] + b"".join(d[ENVELOPE_BYTES:] for d in datagrams)


async def ask_udp(peer: UdpPeer, data: bytes) -> list[bytes]:
    peer.send(data)
    return await peer.recv_message()


async def ask_plain(nodes: Nodes, data: bytes) -> bytes:
    """The full path's reply: the cache-less node over TCP (a whole message)."""
    assert nodes.plain.handle_port is not None
    return await tcp_exchange("127.0.0.1", nodes.plain.handle_port, data)


def urls(reply: bytes) -> list[bytes]:
    m = decode(reply)
    assert m.header.response_code == ResponseCode.SUCCESS, m
    assert isinstance(m.body, ResolutionReply)
    return [v.data for v in m.body.values if v.type == "URL"]


async def write(node: Node, handle: str, values: list[HandleValue]) -> None:
    assert node.writes is not None
    await node.writes.put(
        parse_handle(handle), values, actor="test:cache", now=SEED_TIME, source="test"
    )


def url_record(url: bytes) -> list[HandleValue]:
    return [HandleValue(1, "URL", url), HandleValue(2, "EMAIL", b"ops@example.com")]


# --- hits -------------------------------------------------------------------------------


async def test_udp_repeat_is_a_hit_with_only_ids_and_expiration_patched(
    nodes: Nodes, peer: UdpPeer
) -> None:
    node = nodes.cached
    first = resolution(ABC, session_id=1, request_id=101)
    (reply1,) = await ask_udp(peer, first)
    assert (hits(node, "udp"), misses(node, "udp"), reads(node)) == (0, 1, 1)
    assert urls(reply1) == [ABC_URL]

    nodes.wall.advance(3600.5)  # a later request: the hit must stamp the new expiration
    second = resolution(ABC, session_id=0xCAFEF00D, request_id=0x7FFF0001, expiration=42)
    (reply2,) = await ask_udp(peer, second)
    assert (hits(node, "udp"), misses(node, "udp"), reads(node)) == (1, 1, 1)
    expiration = int(CLOCK + 3600.5) + REPLY_LIFETIME_S
    assert reply2.hex() == readdressed(reply1, second, expiration).hex()
    # ...which is exactly what the full path sends for this request at this time.
    assert reply2.hex() == (await ask_plain(nodes, second)).hex()
    m = decode(reply2)
    assert (m.envelope.session_id, m.request_id, m.header.expiration) == (
        0xCAFEF00D,
        0x7FFF0001,
        expiration,
    )


async def test_tcp_repeat_is_a_hit_and_shares_the_udp_entry(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    first = resolution(ABC, request_id=1)
    reply1 = await tcp_exchange("127.0.0.1", nodes.port, first)
    assert (hits(node, "tcp"), misses(node, "tcp"), reads(node)) == (0, 1, 1)
    # Pipelined on one connection: both answered from the cache, in order.
    requests = [resolution(ABC, request_id=n, session_id=n * 7) for n in (2, 3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", nodes.port)
    try:
        writer.write(b"".join(requests))
        await writer.drain()
        replies = [await read_message(reader) for _ in requests]
    finally:
        writer.close()
        await writer.wait_closed()
    assert (hits(node, "tcp"), reads(node)) == (2, 1)
    for request, reply in zip(requests, replies, strict=False):
        assert reply.hex() == readdressed(reply1, request, int(CLOCK) + REPLY_LIFETIME_S).hex()
    # The UDP front answers from the entry the TCP front filled (same bytes).
    (by_udp,) = await ask_udp(peer, resolution(ABC, request_id=4))
    assert (hits(node, "udp"), misses(node, "udp"), reads(node)) == (1, 0, 1)
    assert (
        by_udp.hex()
        == readdressed(reply1, resolution(ABC, request_id=4), int(CLOCK) + REPLY_LIFETIME_S).hex()
    )


async def test_each_request_shape_gets_its_own_reply(nodes: Nodes, peer: UdpPeer) -> None:
    """Different filters, spellings, flags and versions of one handle are different
    replies: a hit for one never answers another."""
    node = nodes.cached
    shapes: list[dict[str, Any]] = [
        {"handle": ABC},
        {"handle": "88.118.2/abc123"},  # echoed as asked
        {"handle": ABC, "indexes": (1,)},
        {"handle": ABC, "types": ("EMAIL",)},
        {"handle": ABC, "indexes": (999,)},  # RC 200
        {"handle": ABC, "flags": DEFAULT_FLAGS & ~OpFlag.PUBL},
        {"handle": ABC, "flags": DEFAULT_FLAGS | OpFlag.RRDG},
        {"handle": ABC, "version": (2, 1), "suggested": (2, 1)},
    ]

    def build(n: int, shape: dict[str, Any]) -> bytes:
        handle = shape["handle"]
        rest = {k: v for k, v in shape.items() if k != "handle"}
        return resolution(handle, request_id=n, session_id=n, **rest)

    first_round = [build(100 + n, s) for n, s in enumerate(shapes)]
    firsts = [(await ask_udp(peer, q))[0] for q in first_round]
    assert hits(node, "udp") == 0 and misses(node, "udp") == len(shapes)
    second_round = [build(200 + n, s) for n, s in enumerate(shapes)]
    for request, first in zip(second_round, firsts, strict=False):
        (got,) = await ask_udp(peer, request)
        assert got.hex() == (await ask_plain(nodes, request)).hex()
        if OpFlag.RRDG not in decode(request).header.flags:
            assert got.hex() == readdressed(first, request, int(CLOCK) + REPLY_LIFETIME_S).hex()
    assert hits(node, "udp") == len(shapes) and reads(node) == 1  # one row read for all
    assert decode(firsts[1]).body.handle == "88.118.2/abc123"  # type: ignore[union-attr]
    assert decode(firsts[4]).header.response_code == ResponseCode.VALUES_NOT_FOUND


@pytest.mark.parametrize(
    ("version", "name"), [((2, 11), "sha256"), ((2, 6), "sha1"), ((2, 1), "sha1")]
)
async def test_hit_carries_the_digest_of_its_own_request(
    nodes: Nodes, peer: UdpPeer, version: tuple[int, int], name: str
) -> None:
    node = nodes.cached
    flags = DEFAULT_FLAGS | OpFlag.RRDG
    await ask_udp(
        peer, resolution(ABC, request_id=1, flags=flags, version=version, suggested=version)
    )
    second = resolution(
        ABC, request_id=2, session_id=9, flags=flags, version=version, suggested=version
    )
    (reply,) = await ask_udp(peer, second)
    assert hits(node, "udp") == 1
    m = decode(reply)
    assert m.envelope.version == version and m.digest is not None
    assert m.digest.digest == hashlib.new(name, second[ENVELOPE_BYTES:-4]).digest()
    assert reply.hex() == (await ask_plain(nodes, second)).hex()


async def test_long_reply_is_fragmented_on_a_hit(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    first = resolution(BIG, request_id=1)
    datagrams1 = await ask_udp(peer, first)
    assert len(datagrams1) == 6 and misses(node, "udp") == 1
    second = resolution(BIG, request_id=0x0BADCAFE, session_id=3)
    datagrams2 = await ask_udp(peer, second)
    assert hits(node, "udp") == 1
    assert len(datagrams2) == 6 and all(len(d) <= 512 for d in datagrams2)
    for seq, (d1, d2) in enumerate(zip(datagrams1, datagrams2, strict=False)):
        assert _U32.unpack_from(d2, 12)[0] == seq
        # Every fragment carries the new ids; the expiration is in the first only.
        assert d2[4:12] == second[4:12]
        assert d2.hex() == (d1[:4] + second[4:12] + d1[12:]).hex()
    assert whole(datagrams2).hex() == (await ask_plain(nodes, second)).hex()
    # The native client reassembles a hit like any reply (its requests are 2.11: a
    # shape of their own, so the first is a miss).
    for _ in range(2):
        reply = await NativeClient("127.0.0.1", nodes.port).resolve(BIG)
    assert hits(node, "udp") == 2
    assert isinstance(reply.body, ResolutionReply)
    assert [v.index for v in reply.body.values] == [*range(1, 41), 100]
    # Over TCP the same hit is one message.
    third = resolution(BIG, request_id=5)
    by_tcp = await tcp_exchange("127.0.0.1", nodes.port, third)
    assert (
        hits(node, "tcp") == 1
        and by_tcp.hex()
        == readdressed(whole(datagrams1), third, int(CLOCK) + REPLY_LIFETIME_S).hex()
    )
    assert reads(node) == 1


async def test_certified_requests_are_never_served_from_the_cache(
    nodes: Nodes, peer: UdpPeer
) -> None:
    node = nodes.cached
    # The plain shape is cached and hit...
    await ask_udp(peer, resolution(ABC, request_id=1))
    await ask_udp(peer, resolution(ABC, request_id=2))
    assert hits(node, "udp") == 1
    assert node.site is not None
    key = decode_public_key(node.site.info.servers[0].public_key)
    assert isinstance(key, rsa.RSAPublicKey)  # the HS_SITE key (RSA-2048)
    for udp in (True, False, True, False):
        reply = await NativeClient("127.0.0.1", nodes.port, udp=udp, verify_key=key).resolve(ABC)
        assert reply.credential is not None and OpFlag.CERT in reply.header.flags
        assert verify_message(reply, key)
        assert isinstance(reply.body, ResolutionReply) and reply.body.values[0].data == ABC_URL
    # ...the certified ones are not, whichever front, however often asked.
    assert (hits(node, "udp"), hits(node, "tcp")) == (1, 0)
    # A raw CERT request repeated with the same bytes but another id: signed afresh.
    for n in (10, 11):
        m = decode(
            whole(
                await ask_udp(
                    peer, resolution(ABC, request_id=n, flags=DEFAULT_FLAGS | OpFlag.CERT)
                )
            )
        )
        assert m.request_id == n and m.credential is not None and verify_message(m, key)
    assert hits(node, "udp") == 1
    assert served(node, "udp") == 2 + 2 + 2


# --- invalidation ------------------------------------------------------------------------


async def test_a_write_through_the_node_is_seen_by_the_next_request(
    nodes: Nodes, peer: UdpPeer
) -> None:
    node = nodes.cached
    for n in range(2):
        (reply,) = await ask_udp(peer, resolution(ABC, request_id=n + 1))
        assert urls(reply) == [ABC_URL]
    reply = await tcp_exchange("127.0.0.1", nodes.port, resolution(ABC, request_id=3))
    assert urls(reply) == [ABC_URL] and (hits(node, "udp"), hits(node, "tcp"), reads(node)) == (
        1,
        1,
        1,
    )

    new_url = b"https://example.com/abc123/v2"
    async with notifications_off(nodes.database_url):
        await write(node, ABC, url_record(new_url))
        # The write is acknowledged: no front may answer with the old record any more.
        (after_udp,) = await ask_udp(peer, resolution(ABC, request_id=4))
        after_tcp = await tcp_exchange("127.0.0.1", nodes.port, resolution(ABC, request_id=5))
        assert urls(after_udp) == urls(after_tcp) == [new_url]
        assert reads(node) == 2 and (hits(node, "udp"), hits(node, "tcp")) == (
            1,
            2,
        )  # refilled, then hit
        # Each shape cached before is gone, not just the one asked first.
        (filtered,) = await ask_udp(peer, resolution(ABC, (1,), request_id=6))
        assert urls(filtered) == [new_url]


async def test_a_write_elsewhere_is_seen_once_notified(nodes: Nodes, peer: UdpPeer) -> None:
    """A write by another writer (plain SQL here; another node or the CLI alike) reaches
    the cache through NOTIFY: once it has been heard, no stale reply."""
    node = nodes.cached
    assert node.cache is not None
    await ask_udp(peer, resolution(ABC, request_id=1))
    (cached,) = await ask_udp(peer, resolution(ABC, request_id=2))
    assert hits(node, "udp") == 1 and urls(cached) == [ABC_URL]
    heard = node.cache.invalidated("88.118.2/ABC123")
    new_url = b"https://example.com/abc123/sql"
    conn = await asyncpg.connect(nodes.database_url)
    try:
        await conn.execute(
            'UPDATE handles SET "values" = $1, version = version + 1 WHERE handle_key = $2',
            encode_values(url_record(new_url)),
            "88.118.2/ABC123",
        )
    finally:
        await conn.close()
    await asyncio.wait_for(heard, 5.0)
    (reply,) = await ask_udp(peer, resolution(ABC, request_id=3))
    assert urls(reply) == [new_url] and hits(node, "udp") == 1


async def test_not_found_is_cached_until_the_handle_is_created(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    for n in range(3):
        (reply,) = await ask_udp(peer, resolution(NEW, request_id=n + 1))
        m = decode(reply)
        assert m.header.response_code == ResponseCode.HANDLE_NOT_FOUND and isinstance(
            m.body, ErrorReply
        )
    assert (hits(node, "udp"), misses(node, "udp"), reads(node)) == (2, 1, 1)
    assert served(node, "udp", ResponseCode.HANDLE_NOT_FOUND) == 3

    async with notifications_off(nodes.database_url):
        await write(node, NEW, url_record(b"https://example.com/new-1"))
        (reply,) = await ask_udp(peer, resolution(NEW, request_id=9))
        assert urls(reply) == [b"https://example.com/new-1"]
        assert reads(node) == 2 and hits(node, "udp") == 2


async def test_entries_expire_on_the_monotonic_clock(nodes: Nodes, peer: UdpPeer) -> None:
    """Not-found is kept for cache_negative_ttl_s (5 s), a record for its smallest TTL
    capped at cache_ttl_cap_s (600 s): past that, the registry is read again."""
    node = nodes.cached
    await ask_udp(peer, resolution(NEW, request_id=1))
    await ask_udp(peer, resolution(ABC, request_id=2))
    assert reads(node) == 2
    nodes.mono.advance(4.9)
    await ask_udp(peer, resolution(NEW, request_id=3))
    assert (hits(node, "udp"), reads(node)) == (1, 2)
    nodes.mono.advance(0.2)  # past the negative TTL
    await ask_udp(peer, resolution(NEW, request_id=4))
    await ask_udp(peer, resolution(ABC, request_id=5))
    assert (hits(node, "udp"), reads(node)) == (2, 3)
    nodes.mono.advance(600)  # past the cap
    (reply,) = await ask_udp(peer, resolution(ABC, request_id=6))
    assert urls(reply) == [ABC_URL] and (hits(node, "udp"), reads(node)) == (2, 4)


# --- counting ------------------------------------------------------------------------------


async def test_requests_total_counts_hits(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    for n in range(3):
        await ask_udp(peer, resolution(ABC, request_id=n + 1))
    for n in range(4):
        await tcp_exchange("127.0.0.1", nodes.port, resolution(ABC, request_id=n + 10))
    await ask_udp(peer, resolution(ABC, (999,), request_id=20))
    await ask_udp(peer, resolution(ABC, (999,), request_id=21))
    assert (hits(node, "udp"), hits(node, "tcp")) == (3, 4)
    assert served(node, "udp") == 3 and served(node, "tcp") == 4
    assert served(node, "udp", ResponseCode.VALUES_NOT_FOUND) == 2
    # Scraping again does not count them twice.
    assert served(node, "udp") == 3 and served(node, "tcp") == 4
    latency = sample(node, "idnode_cache_hit_seconds_count", front="udp", op="resolution")
    assert latency == 3

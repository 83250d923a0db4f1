"""The UDP front's ready replies, against a real node over real UDP on a real PostgreSQL
seeded with the golden records.

A reply hit again within the same second of the node's wall clock goes out from the
datagrams kept ready at its first hit, with only the ids of the new request patched in
(node.fronts.native.udp). Every reply here is compared, byte for byte and datagram for
datagram, with what a node without a cache sends for the same request on the same
database at the same clock (the full path), fragmented as UDP sends it: for varied ids,
one datagram and six, across seconds (forward and back), after writes and expiry, with
request digests, and for requests that share a body but not a header. The clocks are
stepped by hand: no sleeping.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from node.app import Node
from node.client.native import DEFAULT_FLAGS
from node.fronts.native.segments import MAX_SEGMENTS
from node.fronts.native.udp import UdpFront
from node.settings import load_settings
from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.handle import parse_handle
from protocol.message import ENVELOPE_BYTES, Envelope, Header, Message, decode, encode
from protocol.negotiate import REPLY_LIFETIME_S
from protocol.values import HandleValue
from tests.node.conftest import CLOCK, SEED_TIME, UdpPeer, seed_golden, tcp_exchange, udp_peer
from tests.node.http_support import SteppedClock
from tests.node.native_support import notifications_off, settle

ABC = "88.118.2/ABC123"
BIG = "88.118.2/BIG40"
# Ids at the edges and in between: every byte of both fields takes part.
IDS = [(0, 1), (0xFFFFFFFF, 0xFFFFFFFF), (0x01020304, 0xA0B0C0D0), (7, 0x80000000), (3, 2)]


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

    @property
    def front(self) -> UdpFront:
        assert self.cached.native is not None
        return self.cached.native.udp


def _settings(database_url: str, data_dir: Path, **flags: Any) -> Any:
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
            "udp_max_reply_bytes": 4096,  # BIG40's 6 datagrams go over UDP
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


def resolution(
    handle: str,
    *,
    ids: tuple[int, int] = (0, 1),
    types: tuple[str, ...] = (),
    flags: OpFlag = DEFAULT_FLAGS,
    version: tuple[int, int] = (2, 10),
    suggested: tuple[int, int] = (2, 11),
    expiration: int = int(CLOCK),
) -> bytes:
    env = Envelope(
        *version,
        suggested_major=suggested[0],
        suggested_minor=suggested[1],
        session_id=ids[0],
        request_id=ids[1],
    )
    header = Header(OpCode.RESOLUTION, flags=flags, expiration=expiration)
    return encode(Message(env, header, ResolutionRequest(handle, (), types)))


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def hits(node: Node) -> float:
    return sample(node, "idnode_cache_hits_total", front="udp", op="resolution")


def reads(node: Node) -> float:
    return sample(node, "idnode_cache_registry_reads_total")


async def full_path(nodes: Nodes, data: bytes) -> list[str]:
    """The datagrams UDP carries for the cache-less node's reply to ``data`` (hex)."""
    assert nodes.plain.handle_port is not None
    reply = await tcp_exchange("127.0.0.1", nodes.plain.handle_port, data)
    return [bytes(d).hex() for d in fragment_encoded(reply)]


async def ask(peer: UdpPeer, data: bytes) -> list[str]:
    peer.send(data)
    return [d.hex() for d in await peer.recv_message()]


async def same_as_full_path(nodes: Nodes, peer: UdpPeer, data: bytes) -> list[str]:
    got = await ask(peer, data)
    assert got == await full_path(nodes, data)
    return got


def whole(datagrams: list[str]) -> bytes:
    """The message a reply's datagrams (hex) carry."""
    parts = [bytes.fromhex(d) for d in datagrams]
    return parts[0][:ENVELOPE_BYTES] + b"".join(d[ENVELOPE_BYTES:] for d in parts)


def ready(nodes: Nodes) -> int:
    return len(nodes.front._ready)


# --- repeats within a second ------------------------------------------------------------------


@pytest.mark.parametrize(("handle", "datagrams"), [(ABC, 1), (BIG, 6)])
async def test_repeats_go_out_as_the_full_path_sends_them(
    nodes: Nodes, peer: UdpPeer, handle: str, datagrams: int
) -> None:
    node = nodes.cached
    first = await same_as_full_path(nodes, peer, resolution(handle, ids=(9, 9)))
    assert len(first) == datagrams and hits(node) == 0 and ready(nodes) == 0
    for n, ids in enumerate(IDS):
        if n == 3:
            nodes.wall.advance(0.75)  # later, within the same second: still ready
        # A client's expiration is not part of what the reply depends on.
        got = await same_as_full_path(nodes, peer, resolution(handle, ids=ids, expiration=n))
        assert ready(nodes) == 1 and hits(node) == n + 1
        sent_ids = ids[0].to_bytes(4, "big") + ids[1].to_bytes(4, "big")
        assert [bytes.fromhex(d)[4:12] for d in got] == [sent_ids] * datagrams
    assert reads(node) == 1
    # On Linux the datagrams of a ready reply leave in one call, cut by the kernel.
    assert nodes.front._segments == (MAX_SEGMENTS if sys.platform == "linux" else 1)


async def test_without_segmentation_offload_the_same_datagrams(nodes: Nodes, peer: UdpPeer) -> None:
    """A kernel refusing to cut a reply into datagrams (EIO) turns the offload off:
    from then on the datagrams go one by one, the same bytes."""
    node = nodes.cached
    await same_as_full_path(nodes, peer, resolution(BIG, ids=(1, 1)))
    await same_as_full_path(nodes, peer, resolution(BIG, ids=(1, 2)))
    assert ready(nodes) == 1
    nodes.front.error_received(OSError(errno.EIO, "Input/output error"))
    assert nodes.front._segments == 1 and ready(nodes) == 0
    for ids in IDS:
        got = await same_as_full_path(nodes, peer, resolution(BIG, ids=ids))
        assert len(got) == 6
    assert ready(nodes) == 1 and hits(node) == 1 + len(IDS)
    # Other send errors (ICMP for an earlier reply) change nothing.
    nodes.front.error_received(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert nodes.front._segments == 1 and ready(nodes) == 1


async def test_a_new_second_stamps_a_new_expiration(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    await ask(peer, resolution(BIG, ids=(1, 1)))
    before = [await same_as_full_path(nodes, peer, resolution(BIG, ids=(2, n))) for n in (2, 3)]
    assert ready(nodes) == 1
    for step in (1.0, 3600.25, -7200.5):  # forward, far forward, and back
        nodes.wall.advance(step)
        for n in (4, 5):
            got = await same_as_full_path(nodes, peer, resolution(BIG, ids=(2, n)))
            expiration = decode(whole(got)).header.expiration
            assert expiration == int(nodes.wall()) + REPLY_LIFETIME_S
            assert got != before[0] and ready(nodes) == 1
    assert hits(node) == 2 + 6 and reads(node) == 1


# --- what must not be answered from ready datagrams ---------------------------------------------


async def test_a_write_replaces_what_is_ready(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    for n in range(3):
        await same_as_full_path(nodes, peer, resolution(ABC, ids=(1, n)))
    assert ready(nodes) == 1
    new_url = b"https://example.com/abc123/ready"
    async with notifications_off(nodes.database_url):
        assert node.writes is not None
        await node.writes.put(
            parse_handle(ABC),
            [HandleValue(1, "URL", new_url)],
            actor="test:ready",
            now=SEED_TIME,
            source="test",
        )
        for n in range(3, 6):  # a miss, then hits of the new record
            got = await same_as_full_path(nodes, peer, resolution(ABC, ids=(1, n)))
            body = decode(whole(got)).body
            assert isinstance(body, ResolutionReply) and body.values[0].data == new_url
    assert reads(node) == 2 and hits(node) == 2 + 2


async def test_an_expired_entry_is_read_again(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    for n in range(3):
        await ask(peer, resolution(ABC, ids=(1, n)))
    assert ready(nodes) == 1 and reads(node) == 1
    nodes.mono.advance(601)  # past cache_ttl_cap_s; the wall clock stands still
    await same_as_full_path(nodes, peer, resolution(ABC, ids=(1, 9)))
    assert reads(node) == 2 and hits(node) == 2


async def test_a_flush_leaves_nothing_ready_to_send(nodes: Nodes, peer: UdpPeer) -> None:
    node = nodes.cached
    assert node.cache is not None
    for n in range(3):
        await ask(peer, resolution(ABC, ids=(1, n)))
    assert ready(nodes) == 1 and hits(node) == 2
    node.cache.flush()
    await same_as_full_path(nodes, peer, resolution(ABC, ids=(1, 9)))
    assert reads(node) == 2 and hits(node) == 2


@pytest.mark.parametrize("version", [(2, 11), (2, 6)])
async def test_replies_with_a_request_digest_are_fitted_every_time(
    nodes: Nodes, peer: UdpPeer, version: tuple[int, int]
) -> None:
    flags = DEFAULT_FLAGS | OpFlag.RRDG
    for ids in IDS:
        await same_as_full_path(
            nodes, peer, resolution(BIG, ids=ids, flags=flags, version=version, suggested=version)
        )
    assert hits(nodes.cached) == len(IDS) - 1 and ready(nodes) == 0


async def test_requests_sharing_a_body_get_their_own_replies(nodes: Nodes, peer: UdpPeer) -> None:
    """Same handle, same lists; another version, suggestion or flags: another shape,
    another reply, whichever was made ready last."""
    headers: list[dict[str, Any]] = [
        {},
        {"version": (2, 11)},
        {"suggested": (2, 5)},
        {"flags": DEFAULT_FLAGS & ~OpFlag.PUBL},
    ]
    for n in range(3):
        for h in headers:
            await same_as_full_path(nodes, peer, resolution(ABC, ids=(n, n), **h))
    assert hits(nodes.cached) == 2 * len(headers)


async def test_a_type_filter_is_a_shape_of_its_own(nodes: Nodes, peer: UdpPeer) -> None:
    for n in range(3):
        for types in ((), ("URL",), ("EMAIL",)):
            await same_as_full_path(nodes, peer, resolution(ABC, ids=(n, n), types=types))
    assert hits(nodes.cached) == 6 and reads(nodes.cached) == 1


# --- misses answered from a learned reply head (node.fronts.native.quick) ---------------------

OTHERS = [BIG, "88.118.2/布料-001", "88.118.2/ÉTÉ-X", "88.118.2/SUBTYPES"]
HEADS: list[dict[str, Any]] = [
    {},  # the reference client's: 2.10, RECU|CACR|PUBL
    {"version": (2, 11)},
    {"version": (2, 5), "suggested": (2, 5)},
    {"flags": DEFAULT_FLAGS & ~OpFlag.PUBL},
    {"flags": OpFlag.AUTH | OpFlag.CACR},
    {"types": ("URL",)},
]


def requests(node: Node, rc: str) -> float:
    return sample(node, "idnode_requests_total", front="udp", op="resolution", rc=rc)


@pytest.mark.parametrize("head", HEADS, ids=[str(h) for h in HEADS])
async def test_misses_with_a_learned_head_are_spliced_as_the_full_path_sends_them(
    nodes: Nodes, peer: UdpPeer, head: dict[str, Any]
) -> None:
    quick = nodes.cached.handler.quick if nodes.cached.handler else None
    assert quick is not None
    await same_as_full_path(nodes, peer, resolution(ABC, ids=(0, 5), **head))  # learns the head
    assert quick.answered == 0
    for n, handle in enumerate(OTHERS, 1):
        await same_as_full_path(nodes, peer, resolution(handle, ids=(0, 10 + n), **head))
        assert quick.answered == n
    # Kept as the full path keeps its replies: asked again, each is a hit.
    for n, handle in enumerate(OTHERS, 1):
        await same_as_full_path(nodes, peer, resolution(handle, ids=(0, 20 + n), **head))
    assert hits(nodes.cached) == len(OTHERS) and quick.answered == len(OTHERS)
    assert requests(nodes.cached, "1") == 1 + 2 * len(OTHERS)


async def test_what_the_quick_path_leaves_to_the_full_path(nodes: Nodes, peer: UdpPeer) -> None:
    quick = nodes.cached.handler.quick if nodes.cached.handler else None
    assert quick is not None
    await same_as_full_path(nodes, peer, resolution(ABC, ids=(0, 1)))
    others = [
        resolution("88.118.2/NOPE", ids=(0, 2)),  # not found
        resolution(BIG, ids=(3, 4)),  # a session id: the session decides the reply
        resolution(OTHERS[1], flags=DEFAULT_FLAGS | OpFlag.RRDG),  # a digest: head not learned
    ]
    # A body the reader refuses (a handle longer than the body): RC 4, as ever.
    bad = bytearray(resolution(OTHERS[2], ids=(0, 7)))
    bad[ENVELOPE_BYTES + 24 : ENVELOPE_BYTES + 28] = (1 << 20).to_bytes(4, "big")
    others.append(bytes(bad))
    for data in others:
        await same_as_full_path(nodes, peer, data)
    refused = decode(whole(await ask(peer, bytes(bad))))
    assert refused.header.response_code == ResponseCode.PROTOCOL_ERROR
    # PUBL clear and a value only admins may read: the challenge, as ever.
    private = DEFAULT_FLAGS & ~OpFlag.PUBL
    await same_as_full_path(nodes, peer, resolution(ABC, ids=(0, 6), flags=private))
    challenge = decode(whole(await ask(peer, resolution("88.118.2/PRIVATE", flags=private))))
    assert challenge.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    assert quick.answered == 0

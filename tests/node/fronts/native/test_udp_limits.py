"""The native UDP front under abuse (issue 14, findings 1 and 7), on real nodes over
loopback: replies capped at ``udp_max_reply_bytes`` (a larger answer is one small RC 2
asking for TCP, so a spoofed source is never sent more than the cap per request),
replies rate-limited per source network with slip, a per-source cap on requests in
flight, and a reassembly table one source cannot take from another.

Linux loopback answers for all of 127.0.0.0/8, so 127.0.0.2 and 127.0.1.2 act as other
clients: 127.0.0.2 shares 127.0.0.1's /24 (one UDP source network), 127.0.1.2 does not.
Loopback is exempt from per-source limits by default; tests of those limits empty
``rate_limit_exempt_networks``, as on a node facing the internet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from node.app import Node
from node.client.native import DEFAULT_FLAGS, NativeClient
from node.demo.seed import seed_records
from node.fronts.native.overcap import RATE_LIMITED, TOO_LARGE
from node.settings import load_settings
from protocol.bodies import ErrorReply, HashType, ResolutionReply
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.message import ENVELOPE_BYTES, Envelope, Message, decode
from protocol.negotiate import digest_of
from tests.node.conftest import (
    CLOCK,
    EXPIRATION,
    SEED_ACTOR,
    SEED_TIME,
    StartNode,
    UdpPeer,
    _Datagrams,
    seed_golden,
    tcp_exchange,
    udp_peer,
)
from tests.node.flood_support import MissFlooder
from tests.node.http_support import A, Api, SteppedClock, admin_of, admin_value
from tests.node.native_support import ABC, indexes_of, request_bytes, request_id, served
from tests.node.wait_support import until

BIG = "88.118.2/BIG40"  # 41 values: a 2.7 KB reply, 6 datagrams
NOBODY_EXEMPT = {"rate_limit_exempt_networks": ""}


def sample(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def too_large(node: Node) -> float:
    return sample(node, "idnode_udp_replies_too_large_total")


def rate_limited(node: Node, action: str) -> float:
    return sample(node, "idnode_replies_rate_limited_total", front="udp", action=action)


def dropped(node: Node, reason: str) -> float:
    return sample(node, "idnode_dropped_requests_total", front="udp", reason=reason)


def udp_hits(node: Node) -> int:
    assert node.handler is not None
    return sum(node.handler.front_stats["udp"].hits.values())


def assert_retry_over_tcp(datagram: bytes, request: bytes, message: str) -> Message:
    """One small RC 2 datagram answering ``request``: ids and opcode echoed, the node's
    expiration, the request digest if asked, unsigned, saying to use TCP."""
    reply = decode(datagram)
    asked = decode(request)
    assert reply.header.response_code == ResponseCode.ERROR
    assert reply.header.opcode == OpCode.RESOLUTION
    assert (reply.envelope.session_id, reply.envelope.request_id) == (
        asked.envelope.session_id,
        asked.envelope.request_id,
    )
    assert reply.envelope.sequence == 0 and len(datagram) - ENVELOPE_BYTES == reply.envelope.length
    assert reply.header.expiration == EXPIRATION
    if OpFlag.RRDG in asked.header.flags:
        assert reply.digest == digest_of(asked, HashType.SHA256)
    else:
        assert reply.digest is None
    assert reply.credential is None and OpFlag.CERT not in reply.header.flags
    assert reply.body == ErrorReply(message)
    assert len(datagram) <= 200
    return reply


# -- 1. the reply cap -----------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [DEFAULT_FLAGS, DEFAULT_FLAGS | OpFlag.RRDG, DEFAULT_FLAGS | OpFlag.CERT],
    ids=["plain", "digest", "cert"],
)
async def test_over_cap_reply_is_one_small_rc2(
    native_node: Node, node_udp: UdpPeer, flags: OpFlag
) -> None:
    """Both paths: the first request is answered by a task (a cache miss), the second
    from the reply cache, synchronously. (CERT requests are never cached: both go the
    task path, and the RC 2 is not signed.)"""
    for n in range(2):
        req = request_bytes(
            BIG, flags=flags, envelope=Envelope(session_id=77 + n, request_id=n + 5)
        )
        node_udp.send(req)
        (datagram,) = await node_udp.recv_message()
        assert_retry_over_tcp(datagram, req, TOO_LARGE)
    await node_udp.assert_silent()
    assert too_large(native_node) == 2
    assert udp_hits(native_node) == (0 if OpFlag.CERT in flags else 1)
    # Counted as sent: two RC 2, no RC 1; a certified one never signed (not even to be
    # thrown away: the size is known before the signature).
    resolutions = {
        rc: sample(native_node, "idnode_requests_total", front="udp", op="resolution", rc=rc)
        for rc in ("1", "2")
    }
    assert resolutions == {"1": 0.0, "2": 2.0}
    signed = sample(native_node, "idnode_native_signed_replies_total", outcome="signed")
    assert signed == 0.0
    # TCP still answers the whole record.
    reply = decode(await tcp_exchange("127.0.0.1", native_node.handle_port or 0, req))
    assert indexes_of(reply) == [*range(1, 41), 100]


async def test_replies_under_the_cap_are_fragmented_as_before(start_node: StartNode) -> None:
    """A reply of several datagrams within the cap: 492-byte payloads, numbered 0..n-1,
    on both paths."""
    node = await start_node(udp_max_reply_bytes=3000)
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        for _ in range(2):
            req = request_bytes(BIG)
            peer.send(req)
            datagrams = await peer.recv_message()
            assert len(datagrams) == 6 and sum(map(len, datagrams)) <= 3000
            assert all(len(d) == 512 for d in datagrams[:-1])
            assert [int.from_bytes(d[12:16]) for d in datagrams] == list(range(6))
            assert all(request_id(d) == request_id(req) for d in datagrams)
            whole = decode(datagrams[0][:ENVELOPE_BYTES] + b"".join(d[20:] for d in datagrams))
            assert indexes_of(whole) == [*range(1, 41), 100]
        assert udp_hits(node) == 1 and too_large(node) == 0
    finally:
        peer.transport.close()


async def test_the_cap_counts_every_datagram_of_a_reply(start_node: StartNode) -> None:
    """BIG40's reply is a 2,566-byte message, sent as 6 datagrams of 2,666 bytes in all
    (5 repeated envelopes): a cap of 2,665 is what goes on the wire, not the message."""
    node = await start_node(udp_max_reply_bytes=2665)
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        req = request_bytes(BIG)
        assert len(await tcp_exchange("127.0.0.1", node.handle_port, req)) == 2566
        peer.send(req)
        (datagram,) = await peer.recv_message()
        assert_retry_over_tcp(datagram, req, TOO_LARGE)
        # Filtered to fewer values, the same record fits (2 datagrams).
        req = request_bytes(BIG, tuple(range(1, 11)))
        peer.send(req)
        assert len(await peer.recv_message()) == 2
    finally:
        peer.transport.close()


async def test_a_cap_below_one_datagram(start_node: StartNode) -> None:
    """ABC's reply is one 228-byte datagram: over a 200-byte cap on both paths."""
    node = await start_node(udp_max_reply_bytes=200)
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        for _ in range(2):  # a miss, then a hit
            req = request_bytes(ABC)
            peer.send(req)
            assert_retry_over_tcp(await peer.recv(), req, TOO_LARGE)
        assert udp_hits(node) == 1 and too_large(node) == 2
        assert len(await tcp_exchange("127.0.0.1", node.handle_port, req)) == 228
    finally:
        peer.transport.close()


async def test_our_client_falls_back_to_tcp_on_rc2(native_node: Node) -> None:
    """NativeClient (``idnode resolve``, the tree resolver, forwarding) takes the RC 2
    over UDP as the reference client does: TCP at once, the whole record."""
    assert native_node.handle_port is not None
    client = NativeClient("127.0.0.1", native_node.handle_port, timeout_s=5.0)
    started = time.monotonic()
    reply = await client.resolve(BIG, flags=DEFAULT_FLAGS | OpFlag.RRDG)
    assert indexes_of(reply) == [*range(1, 41), 100]
    assert time.monotonic() - started < 0.5  # no UDP re-sends before TCP (they wait 0.5 s)
    assert too_large(native_node) == 1
    assert served(native_node, "tcp") == 1


def minimal_request(handle: str) -> bytes:
    return request_bytes(handle, flags=OpFlag.PUBL)


async def amplification(node: Node, handle: str) -> float:
    """Bytes sent back for one minimal request, over the request's bytes (the second
    request is a cache hit: both paths count)."""
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    worst = 0.0
    try:
        for _ in range(2):
            req = minimal_request(handle)
            peer.send(req)
            datagrams = await peer.recv_message()
            await peer.assert_silent()
            worst = max(worst, sum(map(len, datagrams)) / len(req))
    finally:
        peer.transport.close()
    return worst


async def test_amplification_is_bounded_for_the_worst_record(http_node: Node, api: Api) -> None:
    """The largest record an enterprise admin can write whose reply still fits a
    message (60 values of 4,200 bytes: a 260 KB reply, 529 datagrams uncapped), and a
    demo roll (3.1 KB): a minimal UDP request gets at most the cap plus one envelope;
    TCP still gets everything."""
    cap = http_node.settings.udp_max_reply_bytes
    handle = "88.118.2/AMPLIFIER"
    values = [admin_value("88.118.2")] + [
        {"index": i, "type": "NOTE", "data": {"format": "string", "value": "x" * 4200}}
        for i in range(1, 61)
    ]
    r = await api.put(f"/api/handles/{handle}", values, headers=admin_of(A))
    assert r.status in (200, 201), r.text
    assert http_node.handle_port is not None
    for name in (handle, "88.118.2/ROLL-2026-000123"):
        req = minimal_request(name)
        assert await amplification(http_node, name) <= (cap + ENVELOPE_BYTES) / len(req)
        whole = decode(await tcp_exchange("127.0.0.1", http_node.handle_port, req))
        assert whole.header.response_code == ResponseCode.SUCCESS
        assert isinstance(whole.body, ResolutionReply)
        if name == handle:
            assert len(whole.body.values) >= 61 and whole.envelope.length > 255_000
    assert too_large(http_node) == 4


# -- 2. reply rate limiting per source network ------------------------------------------


@pytest.fixture
async def stepped_node(database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """``await stepped_node(**flags)``: a seeded node whose monotonic clock (reply cache,
    rate limits) the test moves, and that clock."""
    started: list[Node] = []

    async def start(**flags: Any) -> tuple[Node, SteppedClock]:
        settings = load_settings(
            env={},
            flags={
                "database_url": database_url,
                "data_dir": str(tmp_path / "node"),
                "bind": "127.0.0.1",
                "handle_port": 0,
                "admin_port": 0,
                "http_port": 0,
                "prefixes": "88.118",
                "sign_records": False,
                **flags,
            },
        )
        clock = SteppedClock()
        node = Node(settings, clock=lambda: CLOCK, monotonic=clock)
        started.append(node)
        await node.start()
        assert node.resolver is not None
        await seed_golden(node)
        await node.resolver.refresh_prefixes()
        return node, clock

    try:
        yield start
    finally:
        for node in started:
            await node.stop()


async def test_reply_rate_limit_drops_and_slips(stepped_node: Any) -> None:
    node, clock = await stepped_node(
        **NOBODY_EXEMPT, udp_rrl_replies_per_s=3, udp_rrl_slip=2, udp_max_reply_bytes=3000
    )
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        for _ in range(2):  # a miss (task path), then a hit: two of the 3 tokens
            peer.send(request_bytes(ABC))
            assert decode(await peer.recv()).header.response_code == ResponseCode.SUCCESS
        burst = [request_bytes(ABC) for _ in range(8)]  # 1 token left: 7 over the rate
        for req in burst:
            peer.send(req)
        got = {request_id(d): d for d in [await peer.recv() for _ in range(4)]}
        assert decode(got[request_id(burst[0])]).header.response_code == ResponseCode.SUCCESS
        for n in (2, 4, 6):  # every 2nd over the rate slips through as an RC 2
            assert_retry_over_tcp(got[request_id(burst[n])], burst[n], RATE_LIMITED)
        # Misses over the rate are not even resolved: no task, no registry.
        misses = [request_bytes(f"88.118.2/NOPE-{n}") for n in range(2)]
        for req in misses:
            peer.send(req)
        assert_retry_over_tcp(await peer.recv(), misses[0], RATE_LIMITED)
        await peer.assert_silent()
        assert served(node, "udp", rc=ResponseCode.HANDLE_NOT_FOUND) == 0
        assert (rate_limited(node, "dropped"), rate_limited(node, "slipped")) == (5, 4)
        # A second later the bucket holds 3 tokens again: a hit, a hit of 6 datagrams
        # (one reply, one token), a miss.
        clock.advance(1.0)
        for handle in (ABC, BIG):
            peer.send(request_bytes(handle, flags=DEFAULT_FLAGS))
            assert len(await peer.recv_message()) == (1 if handle == ABC else 6)
        peer.send(request_bytes("88.118.2/NOPE-3"))
        assert decode(await peer.recv()).header.response_code == ResponseCode.HANDLE_NOT_FOUND
        over = [request_bytes(ABC) for _ in range(2)]  # the 10th and 11th over the rate
        for req in over:
            peer.send(req)
        assert_retry_over_tcp(await peer.recv(), over[0], RATE_LIMITED)
        await peer.assert_silent()
        assert (rate_limited(node, "dropped"), rate_limited(node, "slipped")) == (6, 5)
    finally:
        peer.transport.close()


async def test_rate_limit_counts_per_network(stepped_node: Any) -> None:
    """127.0.0.2 shares 127.0.0.1's /24 and its bucket; 127.0.1.2 has its own."""
    node, _ = await stepped_node(**NOBODY_EXEMPT, udp_rrl_replies_per_s=2, udp_rrl_slip=0)
    assert node.handle_port is not None
    # 127.0.0.1 takes its /24's 2 tokens (burst 2, and the clock stands still).
    for host, answered in (("127.0.0.1", 2), ("127.0.0.2", 0), ("127.0.1.2", 2)):
        peer = await bound_peer(host, node.handle_port)
        try:
            for _ in range(2):
                peer.send(request_bytes(ABC))
            for _ in range(answered):
                assert decode(await peer.recv()).header.response_code == ResponseCode.SUCCESS
            await peer.assert_silent()
        finally:
            peer.transport.close()
    assert (rate_limited(node, "dropped"), rate_limited(node, "slipped")) == (2, 0)


async def test_loopback_is_exempt_by_default(stepped_node: Any) -> None:
    node, _ = await stepped_node(udp_rrl_replies_per_s=1)
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        for _ in range(20):
            peer.send(request_bytes(ABC))
        for _ in range(20):
            assert decode(await peer.recv()).header.response_code == ResponseCode.SUCCESS
    finally:
        peer.transport.close()
    assert rate_limited(node, "dropped") == rate_limited(node, "slipped") == 0


async def bound_peer(host: str, port: int) -> UdpPeer:
    """A UDP socket from ``host`` (any 127/8 address) connected to the node."""
    transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(
        _Datagrams, local_addr=(host, 0), remote_addr=("127.0.0.1", port)
    )
    return UdpPeer(transport, proto)


# -- 3. requests in flight per source ---------------------------------------------------


async def test_requests_in_flight_are_capped_per_source(start_node: StartNode) -> None:
    """With the registry held (a lock on its table), misses stay in flight: one source
    network gets ``udp_max_inflight_per_source`` of them, the rest are dropped and
    counted; another network still gets a task, and its answer once the registry is
    back."""
    node = await start_node(**NOBODY_EXEMPT, udp_max_inflight_per_source=4)
    assert node.handle_port is not None and node.db is not None
    front = node.native.udp if node.native is not None else None
    assert front is not None
    flood = await bound_peer("127.0.0.2", node.handle_port)
    polite = await bound_peer("127.0.1.2", node.handle_port)
    conn = await asyncpg.connect(node.db.dsn)
    try:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
        misses = [request_bytes(f"88.118.2/NOPE-{n}") for n in range(10)]
        for req in misses:
            flood.send(req)
        await until(lambda: dropped(node, "source_inflight") == 6)
        assert front.inflight == 4
        polite_request = request_bytes(ABC)
        polite.send(polite_request)
        await until(lambda: front.inflight == 5)
        await lock.rollback()
        reply = decode(await polite.recv())
        assert reply.request_id == request_id(polite_request)
        assert indexes_of(reply) == [1, 2, 100]
        answered = {request_id(await flood.recv()) for _ in range(4)}
        assert answered == {request_id(req) for req in misses[:4]}
        await flood.assert_silent()
        assert front.inflight == 0 and front.held.sources() == 0
    finally:
        await conn.close()
        flood.transport.close()
        polite.transport.close()


POLITE = 200
POLITE_PER_S = 25
DEADLINE_S = 0.1
# More misses a second than this small machine resolves (each is a registry read, up to
# milliseconds here: PostgreSQL shares the CPUs): before the per-source limits, the
# flood took the node and the polite client got nothing.
FLOOD_PER_S = 2_000
# A reply rate the machine can afford one network with room to spare (a node sets it
# from its own capacity; the default, 1,000, is for a node that resolves many times that).
FLOOD_RATE_LIMIT = 50


async def test_a_source_flooding_misses_does_not_starve_another(start_node: StartNode) -> None:
    """127.0.0.2 sends cache misses, 2,000 a second; 127.0.1.2 (another /24) resolves
    records nobody has asked for yet, one at a time: nearly all within 100 ms. Nothing
    is exempt, as on a node facing the internet: the flood is held to its reply rate
    and its requests in flight, and the polite client stays within its own.

    The polite client keeps a schedule (25 a second, each waiting for its answer): one
    sending back-to-back as fast as it can is itself a flood under a reply rate."""
    node = await start_node(**NOBODY_EXEMPT, udp_rrl_replies_per_s=FLOOD_RATE_LIMIT)
    assert node.handle_port is not None and node.db is not None
    polite_handles = [f"88.118.2/POLITE-{n:03d}" for n in range(POLITE)]
    await seed_records(
        node.db.registry,
        [
            (h, [{"index": 1, "type": "URL", "data": "https://example.com/p"}])
            for h in polite_handles
        ],
        actor=SEED_ACTOR,
        now=SEED_TIME,
        writes=node.writes,
    )

    def flood_held() -> float:
        return (
            served(node, "udp", rc=ResponseCode.HANDLE_NOT_FOUND)
            + rate_limited(node, "dropped")
            + rate_limited(node, "slipped")
            + dropped(node, "source_inflight")
        )

    peer = await bound_peer("127.0.1.2", node.handle_port)
    flooder = MissFlooder(
        "127.0.0.1", node.handle_port, "127.0.0.2", FLOOD_PER_S, "88.118.2"
    ).start()
    loop = asyncio.get_running_loop()
    try:
        await until(lambda: flood_held() > 1000, 30.0)  # the flood is on
        answered = 0
        schedule = loop.time()
        for n, handle in enumerate(polite_handles):
            # Keep the schedule (not a wait for anything to happen).
            await asyncio.sleep(max(0.0, schedule + n / POLITE_PER_S - loop.time()))
            req = request_bytes(handle)
            peer.send(req)
            try:
                async with asyncio.timeout(DEADLINE_S):
                    while request_id(reply := await peer.recv()) != request_id(req):
                        pass  # a late reply to an earlier request
            except TimeoutError:
                continue
            assert decode(reply).header.response_code == ResponseCode.SUCCESS
            answered += 1
    finally:
        sent = flooder.stop()
        peer.transport.close()
    assert sent > 0 and rate_limited(node, "dropped") > 0
    assert answered >= 0.99 * POLITE, (
        f"{answered} of {POLITE} answered within 100 ms; the flood: {sent} sent, "
        f"{flood_held():.0f} taken by the node"
    )


# -- 4. reassembly -----------------------------------------------------------------------


async def test_bogus_first_fragments_do_not_block_another_source(start_node: StartNode) -> None:
    """A legitimate 2-fragment request, half sent; then 300 bogus first fragments from
    another address; then its second half: it is answered."""
    node = await start_node()
    assert node.handle_port is not None
    types = (*tuple(f"NO-SUCH-TYPE-{n:03d}" for n in range(40)), "EMAIL")
    legit = request_bytes(ABC, (), types)
    first, second = fragment_encoded(legit)
    polite = await udp_peer("127.0.0.1", node.handle_port)
    flood = await bound_peer("127.0.1.2", node.handle_port)
    try:
        polite.send(first)
        for _ in range(300):
            flood.send(bytes(fragment_encoded(request_bytes(ABC, (), types))[0]))
        # The flooder's own whole request comes after its fragments: once it is
        # answered, the node has taken every fragment before it.
        probe = request_bytes(ABC)
        flood.send(probe)
        while request_id(await flood.recv()) != request_id(probe):
            pass
        polite.send(second)
        (reply,) = await polite.recv_message()
        assert request_id(reply) == request_id(legit)
        assert indexes_of(decode(reply)) == [2]
    finally:
        polite.transport.close()
        flood.transport.close()
    assert dropped(node, "reassembly_source") >= 290

"""Golden replay: every request captured from the reference server (CNRI Handle.Net 9.2)
is sent, as captured, to a real node over the captured transport, and the node's reply
datagrams / TCP message must equal the captured ones byte for byte.

Documented exceptions, and only these:

(a) Expiration (u32 at message offset 36, in the first datagram or the TCP message):
    the reference stamps its own clock + 12 h; ours must be our clock + 43200 instead.
(b) GET_SITE_INFO (#13, #14): the body is the answering site's HS_SITE, and the
    reference's holds its RSA key and port 2651. Ours must be *our* site info: the
    reference's with our key (RSA-2048 too, so the same 289 encoded bytes), our port
    on its TCP and UDP interfaces, plus one interface it does not have (our HTTP API,
    6 bytes). So outside the body everything equals the capture except the two length
    fields (envelope message length, header body length), each larger by exactly the
    body's growth; the test checks both halves.
(c) #21/#22 carry the reference's HS_SITE values as *data* of the stored record
    0.NA/88.118, so the node is seeded with the values decoded from the captured #21
    reply; both then match byte for byte (fragmentation included) except (a).

#17-#20 are raw version-negotiation probes (2.1 with and without a suggestion, 2.10
suggesting 2.1, 3.0): they replay like any other exchange.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from node.app import Node
from protocol.bodies import ResolutionReply, ResolutionRequest, SiteInfoReply
from protocol.codes import OpCode, ResponseCode
from protocol.handle import parse_handle
from protocol.message import (
    ENVELOPE_BYTES,
    EXPIRATION_OFFSET,
    HEADER_BYTES,
    LENGTH_OFFSET,
    decode,
)
from protocol.structured import Interface, InterfaceProtocol, InterfaceType, SiteInfo
from tests.conftest import scratch_database
from tests.node.conftest import (
    EXPIRATION,
    SEED_ACTOR,
    SEED_TIME,
    start_seeded_node,
    tcp_exchange,
    udp_peer,
)
from tests.protocol.golden import Exchange, by_number, load

EXCHANGES = load()
SITE_INFO = {13, 14}  # GET_SITE_INFO: body is the answering site's (exception b)
PREFIX_RECORD = "0.NA/88.118"
_U32 = struct.Struct(">I")
BODY_LENGTH_OFFSET = ENVELOPE_BYTES + 20
module_loop = pytest.mark.asyncio(loop_scope="module")  # the loop golden_node lives on


def reassemble(datagrams: list[bytes]) -> bytes:
    """A message from its fragments, in order (the first carries sequence 0)."""
    return datagrams[0][:ENVELOPE_BYTES] + b"".join(d[ENVELOPE_BYTES:] for d in datagrams)


def expiration(first: bytes) -> int:
    return int(_U32.unpack_from(first, EXPIRATION_OFFSET)[0])


def with_expiration(first: bytes, value: int) -> bytes:
    return first[:EXPIRATION_OFFSET] + _U32.pack(value) + first[EXPIRATION_OFFSET + 4 :]


def captured(exchange: Exchange) -> tuple[bytes, list[bytes], str]:
    """(request bytes, reply datagrams or the one TCP message, transport)."""
    (request,) = exchange.direction("C>S")
    replies = [line.data for line in exchange.direction("S>C")]
    return request.data, replies, request.transport


async def replay(node: Node, exchange: Exchange) -> list[bytes]:
    """Send the captured request over its captured transport; return what came back."""
    assert node.handle_port is not None
    request, _, transport = captured(exchange)
    if transport == "udp":
        peer = await udp_peer("127.0.0.1", node.handle_port)
        try:
            peer.send(request)
            return await peer.recv_message()
        finally:
            peer.transport.close()
    assert transport.startswith("tcp#"), transport
    return [await tcp_exchange("127.0.0.1", node.handle_port, request)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def golden_node(
    pg_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Node]:
    """One node for the whole replay (every exchange only reads): the golden seed, plus
    the capture's phase-2 record 0.NA/88.118 holding exactly the values the reference
    returned for it in #21 (exception c)."""
    async with scratch_database(pg_server) as url:
        # The reference caps no UDP reply: #9 is replayed as its six datagrams.
        node = await start_seeded_node(
            url, tmp_path_factory.mktemp("golden"), udp_max_reply_bytes=65_536
        )
        try:
            assert node.db is not None
            stored = decode(reassemble(captured(by_number(21))[1]))
            assert isinstance(stored.body, ResolutionReply) and stored.body.handle == PREFIX_RECORD
            await node.db.registry.put_handle(
                parse_handle(PREFIX_RECORD),
                stored.body.values,
                actor=SEED_ACTOR,
                now=SEED_TIME,
                keep_timestamps=True,
            )
            yield node
        finally:
            await node.stop()


def test_the_capture_has_what_the_exceptions_assume() -> None:
    """Guards the replay's premises, so a changed vector file fails loudly here."""
    assert [e.number for e in EXCHANGES] == list(range(1, 23))
    for e in EXCHANGES:
        request, replies, _ = captured(e)
        assert expiration(replies[0]) != EXPIRATION  # (a) is a real difference
        kind = decode(request).header.opcode
        assert kind == (OpCode.GET_SITE_INFO if e.number in SITE_INFO else OpCode.RESOLUTION)
    assert len(captured(by_number(21))[1]) == 2  # a fragmented reply from stored data
    assert (
        decode(captured(by_number(22))[1][0]).header.response_code == ResponseCode.PREFIX_REFERRAL
    )


@module_loop
@pytest.mark.parametrize(
    "exchange", [e for e in EXCHANGES if e.number not in SITE_INFO], ids=lambda e: f"#{e.number}"
)
async def test_replay_matches_byte_for_byte(golden_node: Node, exchange: Exchange) -> None:
    _, expected, transport = captured(exchange)
    got = await replay(golden_node, exchange)
    assert expiration(got[0]) == EXPIRATION  # (a): our clock + 12 h, not the reference's
    expected = [with_expiration(expected[0], EXPIRATION), *expected[1:]]
    assert [d.hex() for d in got] == [d.hex() for d in expected], exchange.title
    if transport == "udp":
        assert all(len(d) <= 512 for d in got)


@module_loop
@pytest.mark.parametrize("number", sorted(SITE_INFO))
async def test_site_info_replay(golden_node: Node, number: int) -> None:
    """(b): our site info in the reference's framing; inside, only key, ports and our
    extra HTTP interface differ."""
    exchange = by_number(number)
    _, expected, _ = captured(exchange)
    (got,) = await replay(golden_node, exchange)
    site = golden_node.site
    assert site is not None
    ours = site.info.to_wire()

    reply = decode(got)
    assert reply.body == SiteInfoReply(site.info)
    assert expiration(got) == EXPIRATION
    # Outside the body (envelope, header, credential length) everything matches the
    # capture but the two lengths, which grow by exactly what our body adds.
    (ref,) = expected
    head = ENVELOPE_BYTES + HEADER_BYTES
    ref_body_length = _U32.unpack_from(ref, BODY_LENGTH_OFFSET)[0]
    growth = len(ours) - ref_body_length
    framing = bytearray(with_expiration(ref, EXPIRATION)[:head])
    _U32.pack_into(framing, LENGTH_OFFSET, _U32.unpack_from(ref, LENGTH_OFFSET)[0] + growth)
    _U32.pack_into(framing, BODY_LENGTH_OFFSET, ref_body_length + growth)
    assert got.hex() == (bytes(framing) + ours + ref[head + ref_body_length :]).hex()

    # Inside: the reference's site with our public key, our ports and our HTTP
    # interface is our site.
    ref_site = SiteInfo.from_wire(ref[head : head + ref_body_length])
    (ref_server,) = ref_site.servers
    (our_server,) = site.info.servers
    assert ref_server.public_key != our_server.public_key
    port, http_port = golden_node.handle_port, golden_node.http_port
    assert port is not None and http_port is not None
    assert [i.port for i in ref_server.interfaces] == [2651, 2651] != [port, port]
    http = Interface(InterfaceType.BOTH, InterfaceProtocol.HTTP, http_port)
    ported = dataclasses.replace(
        ref_server,
        public_key=our_server.public_key,
        interfaces=(*(dataclasses.replace(i, port=port) for i in ref_server.interfaces), http),
    )
    assert dataclasses.replace(ref_site, servers=(ported,)) == site.info
    assert growth == 6  # the HTTP interface: u8 type, u8 protocol, u32 port


def _cache_hits(node: Node, transport: str) -> float:
    labels = {"front": "udp" if transport == "udp" else "tcp", "op": "resolution"}
    return node.metrics.registry.get_sample_value("idnode_cache_hits_total", labels) or 0.0


async def _announce_change(node: Node, key: str) -> None:
    """Notify a change of ``key`` as any committed write does (migration 0003's payload:
    clock line, then keys) and wait until the node has dropped its cache entry."""
    assert node.cache is not None and node.db is not None
    dropped = node.cache.invalidated(key)
    conn = await asyncpg.connect(node.db.dsn)
    try:
        await conn.execute(
            "SELECT pg_notify('idnode_handles', $1)", f"{int(time.time() * 1000)}\n{key}"
        )
    finally:
        await conn.close()
    await asyncio.wait_for(dropped, 5.0)


@module_loop
@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: f"#{e.number}")
async def test_replay_twice_the_cached_reply_matches(golden_node: Node, exchange: Exchange) -> None:
    """Each captured request sent twice. The second is answered from the reply cache
    (resolutions answered from a record or its absence: not site info, not the #22
    referral) and is the first reply again but for the expiration, so it matches the
    capture with exceptions (a)-(c) as above.

    The handle's entry is dropped first (a change notification), so each exchange
    starts cold whatever ran before on this node: an entry keeps at most
    MAX_REPLIES_PER_ENTRY reply shapes, and the capture holds 12 of 88.118.2/ABC123."""
    request, expected, transport = captured(exchange)
    body = decode(request).body
    if isinstance(body, ResolutionRequest):
        await _announce_change(golden_node, parse_handle(body.handle).key)
    before = _cache_hits(golden_node, transport)
    first = await replay(golden_node, exchange)
    assert _cache_hits(golden_node, transport) == before  # cold: the full path
    second = await replay(golden_node, exchange)
    cacheable = exchange.number not in SITE_INFO and exchange.number != 22
    assert _cache_hits(golden_node, transport) - before == (1 if cacheable else 0)
    assert expiration(first[0]) == expiration(second[0]) == EXPIRATION  # the node's clock is fixed
    assert [with_expiration(second[0], 0), *second[1:]] == [
        with_expiration(first[0], 0),
        *first[1:],
    ]
    if exchange.number in SITE_INFO:
        return  # (b): compared with the capture by test_site_info_replay
    expected = [with_expiration(expected[0], EXPIRATION), *expected[1:]]
    assert [d.hex() for d in second] == [d.hex() for d in expected], exchange.title
    if transport == "udp":
        assert all(len(d) <= 512 for d in second)

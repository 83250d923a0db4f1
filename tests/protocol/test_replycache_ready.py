"""What the UDP front's ready replies rest on (node.fronts.native.udp), without a node.

``request_key`` stands in for ``resolution_shape`` on the hot path: requests with equal
keys must have equal shapes (or none at all), whatever their bytes. And a kept reply
fitted to two requests of one shape within the same second must differ, once
fragmented, only in the ids every datagram carries (bytes 4-11): so the datagrams sent
to the first request, with the ids of the second patched in, are byte for byte what
fitting and fragmenting anew would send. Not so with a request digest (RRDG): those
replies are fitted every time. The requests are the captured golden exchanges.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import EXPIRATION_OFFSET, Envelope, Header, Message, decode, encode
from protocol.negotiate import build_reply
from protocol.replycache import ReplyTemplate, request_key, resolution_shape
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from tests.protocol.golden import load

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
T = 1_795_500_000.0
_U32 = struct.Struct(">I")
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@cache
def golden_requests() -> tuple[bytes, ...]:
    """Every captured resolution request, reassembled."""
    out = []
    for e in load():
        lines = e.direction("C>S")
        ra = Reassembler()
        whole = None
        for line in lines:
            whole = ra.feed(line.data, now=0.0) if line.is_udp else line.data
        assert whole is not None
        if decode(whole).header.opcode == OpCode.RESOLUTION:
            out.append(whole)
    return tuple(out)


def readdressed(data: bytes, session_id: int, request_id: int, expiration: int) -> bytes:
    out = bytearray(data)
    _U32.pack_into(out, 4, session_id)
    _U32.pack_into(out, 8, request_id)
    _U32.pack_into(out, EXPIRATION_OFFSET, expiration)
    return bytes(out)


def request(
    handle: str,
    types: tuple[str, ...] = (),
    *,
    flags: OpFlag = FLAGS,
    version: tuple[int, int] = (2, 10),
    suggested: tuple[int, int] = (2, 11),
) -> bytes:
    env = Envelope(*version, suggested_major=suggested[0], suggested_minor=suggested[1])
    header = Header(OpCode.RESOLUTION, flags=flags, expiration=int(T))
    return encode(Message(env, header, ResolutionRequest(handle, (), types)))


def kept_reply(data: bytes, values: int, now: float) -> ReplyTemplate:
    """The reply a node keeps for ``data``: a record of ``values`` URLs."""
    handle = "88.118.2/READY"
    record = tuple(
        HandleValue(i + 1, "URL", b"https://example.com/%04d" % i) for i in range(values)
    )
    reply = build_reply(
        decode(data), ResponseCode.SUCCESS, ResolutionReply(handle, record), now=now, site_serial=1
    )
    return ReplyTemplate(encode(reply), encode_values(record))


# --- request_key ---------------------------------------------------------------------------


def test_the_key_leaves_out_ids_and_expiration_only() -> None:
    for data in golden_requests():
        again = readdressed(data, 0xDEADBEEF, 0x7FFFFFFF, 12345)
        assert again != data and request_key(again) == request_key(data)
        assert len(request_key(data)) == len(data) - 12
        # Any other byte changes it.
        for at in (0, 3, 12, 16, 20, 24, 35, 40, len(data) - 1):
            other = bytearray(data)
            other[at] ^= 0x01
            assert request_key(bytes(other)) != request_key(data), at


def test_different_shapes_have_different_keys() -> None:
    base = request("88.118.2/ABC123")
    variants = [
        base,
        request("88.118.2/ABC124"),
        request("88.118.2/ABC123", ("URL",)),
        request("88.118.2/ABC123", flags=FLAGS | OpFlag.RRDG),
        request("88.118.2/ABC123", version=(2, 11)),
        request("88.118.2/ABC123", suggested=(2, 10)),
    ]
    shapes = [resolution_shape(v) for v in variants]
    assert None not in shapes and len(set(shapes)) == len(variants)
    assert len({request_key(v) for v in variants}) == len(variants)


@SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=120),
        st.sampled_from(golden_requests()),
        # A golden request with one byte changed: mostly no shape, sometimes another.
        st.tuples(st.sampled_from(golden_requests()), st.integers(0, 10_000), u32).map(
            lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2] & 0xFF]) + t[0][t[1] % len(t[0]) + 1 :]
        ),
    ),
    ids=st.tuples(u32, u32, u32),
)
def test_equal_keys_mean_equal_shapes(data: bytes, ids: tuple[int, int, int]) -> None:
    """Any bytes, and the same bytes with other ids and expiration (all a key leaves
    out): the same key, and the same shape or none for both."""
    other = data if len(data) < EXPIRATION_OFFSET + 4 else readdressed(data, *ids)
    assert request_key(other) == request_key(data)
    assert resolution_shape(other) == resolution_shape(data)


@SETTINGS
@given(data=st.sampled_from(golden_requests()), tail=st.binary(min_size=1, max_size=8))
def test_longer_or_shorter_requests_never_share_a_key(data: bytes, tail: bytes) -> None:
    assert request_key(data + tail) != request_key(data)
    assert request_key(data[: -len(tail)]) != request_key(data)


# --- ready datagrams -------------------------------------------------------------------------


def patched(datagrams: list[bytes], data: bytes) -> list[bytes]:
    """``datagrams`` with the ids of ``data`` in each, as the UDP front sends them."""
    return [d[:4] + data[4:12] + d[12:] for d in datagrams]


@SETTINGS
@given(
    values=st.sampled_from([1, 3, 11, 40]),
    version=st.sampled_from([((2, 10), (2, 11)), ((2, 5), (0, 0)), ((2, 1), (2, 1))]),
    ids1=st.tuples(u32, u32, u32),
    ids2=st.tuples(u32, u32, u32),
    second=st.integers(min_value=0, max_value=2**32),
    at1=st.floats(min_value=0, max_value=0.999),
    at2=st.floats(min_value=0, max_value=0.999),
)
def test_patched_datagrams_are_the_fitted_ones(
    values: int,
    version: tuple[tuple[int, int], tuple[int, int]],
    ids1: tuple[int, int, int],
    ids2: tuple[int, int, int],
    second: int,
    at1: float,
    at2: float,
) -> None:
    """Two requests of one shape, answered within one second: the second's datagrams
    are the first's with its ids, one datagram or many."""
    base = request("88.118.2/READY", version=version[0], suggested=version[1])
    first, again = readdressed(base, *ids1), readdressed(base, *ids2)
    kept = kept_reply(base, values, T)
    sent = [bytes(d) for d in fragment_encoded(kept.fit(first, second + at1))]
    expected = [bytes(d) for d in fragment_encoded(kept.fit(again, second + at2))]
    assert patched(sent, again) == expected
    # Every datagram begins with the same 4 bytes: the reply's version and flags.
    assert len({d[:4] for d in sent}) == 1


def test_long_replies_take_several_datagrams_and_short_ones_one() -> None:
    data = request("88.118.2/READY")
    assert len(fragment_encoded(kept_reply(data, 1, T).fit(data, T))) == 1
    assert len(fragment_encoded(kept_reply(data, 40, T).fit(data, T))) > 2


def test_not_with_a_request_digest() -> None:
    """A reply carrying the digest of its request differs in more than the ids: the
    front fits those every time (ReplyTemplate.digest is set)."""
    base = request("88.118.2/READY", flags=FLAGS | OpFlag.RRDG)
    kept = kept_reply(base, 11, T)
    assert kept.digest is not None
    first, again = readdressed(base, 1, 2, 3), readdressed(base, 4, 5, 6)
    sent = [bytes(d) for d in fragment_encoded(kept.fit(first, T))]
    expected = [bytes(d) for d in fragment_encoded(kept.fit(again, T))]
    assert patched(sent, again) != expected
    assert kept_reply(request("88.118.2/READY"), 11, T).digest is None


def test_not_across_seconds() -> None:
    data = request("88.118.2/READY")
    kept = kept_reply(data, 3, T)
    assert kept.fit(data, T + 0.999) == kept.fit(data, T)
    assert kept.fit(data, T + 1.0) != kept.fit(data, T)
    assert replace(decode(bytes(kept.fit(data, T + 1.0))).header, expiration=0) == replace(
        decode(bytes(kept.fit(data, T))).header, expiration=0
    )

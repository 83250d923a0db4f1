"""The reply cache's wire arithmetic (protocol.replycache), without a node.

``resolution_shape`` must name exactly the request bytes a resolution reply depends on:
None for anything that is not a plain, cacheable resolution; equal for requests that
differ only in what ``ReplyTemplate.fit`` patches; different as soon as anything the
reply is built from differs. ``fit`` must turn the reply built for one request into the
reply that ``build_reply`` + ``encode`` would build from scratch for another request of
the same shape at another time: byte for byte, request digests (SHA-1 and SHA-256)
included. The requests and replies are the captured golden exchanges.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bodies import Body, ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import (
    ENVELOPE_BYTES,
    EXPIRATION_OFFSET,
    LENGTH_OFFSET,
    Credential,
    Envelope,
    Header,
    Message,
    decode,
    encode,
)
from protocol.negotiate import REPLY_LIFETIME_S, build_reply, digest_hash_type, reply_version
from protocol.replycache import ReplyTemplate, resolution_shape
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from tests.protocol.golden import Exchange, load

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERIAL = 1  # the site serial the replies carry (any value: it is not a request field)
T1 = 1_795_500_000.0
T2 = T1 + 3_601.75  # a later miss would stamp another expiration
DEFAULT_FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Resolution:
    """A golden resolution exchange: the request as captured, the reply's code and body."""

    number: int
    request: bytes
    rc: int
    body: Body


def _reassemble(e: Exchange, direction: str) -> bytes:
    lines = e.direction(direction)
    if not lines[0].is_udp:
        (line,) = lines
        return line.data
    ra = Reassembler()
    for line in lines:
        whole = ra.feed(line.data, now=0.0)
    assert whole is not None
    return whole


@cache
def resolutions() -> tuple[Resolution, ...]:
    out = []
    for e in load():
        request = _reassemble(e, "C>S")
        if decode(request).header.opcode != OpCode.RESOLUTION:
            continue
        reply = decode(_reassemble(e, "S>C"))
        out.append(Resolution(e.number, request, reply.header.response_code, reply.body))
    return tuple(out)


def _ids(r: Resolution) -> str:
    return f"#{r.number}"


def restamped(data: bytes, *, session_id: int, request_id: int, expiration: int) -> bytes:
    """``data`` with the three request fields a reply does not depend on changed."""
    out = bytearray(data)
    _U32.pack_into(out, 4, session_id)
    _U32.pack_into(out, 8, request_id)
    _U32.pack_into(out, EXPIRATION_OFFSET, expiration)
    return bytes(out)


def variant(
    data: bytes,
    *,
    version: tuple[int, int] | None = None,
    suggested: tuple[int, int] | bool | None = False,
    flags: OpFlag | None = None,
    recursion: int | None = None,
    body: ResolutionRequest | None = None,
) -> bytes:
    """The request re-encoded with one thing changed (``suggested=None``: no suggestion)."""
    m = decode(data)
    env, header = m.envelope, m.header
    if version is not None:
        env = replace(env, major=version[0], minor=version[1])
    if suggested is not False:
        s = suggested if isinstance(suggested, tuple) else (0, 0)
        env = replace(env, suggested_major=s[0], suggested_minor=s[1])
    if flags is not None:
        header = replace(header, flags=flags)
    if recursion is not None:
        header = replace(header, recursion=recursion)
    return encode(Message(env, header, body if body is not None else m.body))


def from_scratch(request: bytes, rc: int, body: Body, now: float) -> bytes:
    return encode(build_reply(decode(request), rc, body, now=now, site_serial=SERIAL))


def plain_request(
    handle: str = "88.118.2/ABC123",
    indexes: tuple[int, ...] = (),
    types: tuple[str, ...] = (),
    *,
    flags: OpFlag = DEFAULT_FLAGS,
    opcode: int = OpCode.RESOLUTION,
    credential: Credential | None = None,
) -> bytes:
    header = Header(opcode, flags=flags, expiration=int(T1))
    return encode(
        Message(
            Envelope(request_id=7),
            header,
            ResolutionRequest(handle, indexes, types),
            None,
            credential,
        )
    )


# --- resolution_shape: None ------------------------------------------------------------


def test_the_golden_resolutions_have_a_shape_and_site_info_has_none() -> None:
    assert [r.number for r in resolutions()] == [n for n in range(1, 23) if n not in (13, 14)]
    for r in resolutions():
        assert resolution_shape(r.request) is not None, r.number
    for e in load():
        request = _reassemble(e, "C>S")
        if decode(request).header.opcode == OpCode.GET_SITE_INFO:
            assert resolution_shape(request) is None


@pytest.mark.parametrize(
    "opcode",
    [
        OpCode.GET_SITE_INFO,
        OpCode.CREATE_HANDLE,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.MODIFY_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.VERIFY_RESPONSE,
        0,
        0x0101,
        0x01000000,
    ],
    ids=str,
)
def test_no_shape_for_other_opcodes(opcode: int) -> None:
    """The same bytes with only the opcode field changed (a resolution body under
    another opcode, as a confused or hostile client may send)."""
    data = bytearray(plain_request())
    assert resolution_shape(bytes(data)) is not None
    _U32.pack_into(data, ENVELOPE_BYTES, opcode)
    assert resolution_shape(bytes(data)) is None


def test_no_shape_with_a_credential() -> None:
    cred = Credential.make(
        "HS_SIGNED", "SHA-256", b"\x01" * 32, signer_handle="88.118.2/ADMIN", signer_index=300
    )
    signed = plain_request(credential=cred)
    assert decode(signed).credential == cred
    assert resolution_shape(signed) is None
    # A credential length of 4 holding junk is still "a credential present".
    data = bytearray(plain_request())
    data[-4:] = b"\x00\x00\x00\x04"
    data += b"\x00\x00\x00\x00"
    _U32.pack_into(data, LENGTH_OFFSET, len(data) - ENVELOPE_BYTES)
    assert resolution_shape(bytes(data)) is None


@pytest.mark.parametrize("extra", [OpFlag(0), OpFlag.RRDG, OpFlag.DNRF])
def test_no_shape_with_cert(extra: OpFlag) -> None:
    assert resolution_shape(plain_request(flags=DEFAULT_FLAGS | extra)) is not None
    assert resolution_shape(plain_request(flags=DEFAULT_FLAGS | extra | OpFlag.CERT)) is None


@pytest.mark.parametrize("r", resolutions(), ids=_ids)
def test_no_shape_for_truncated_or_extended_data(r: Resolution) -> None:
    data = r.request
    for cut in sorted({1, 2, 4, 5, len(data) - ENVELOPE_BYTES, len(data) - 60, len(data) - 1}):
        assert resolution_shape(data[: len(data) - cut]) is None, cut
    for tail in (b"\x00", b"\x00" * 4, b"\x00" * 8):
        assert resolution_shape(data + tail) is None
        # ...even with the envelope length made to agree: the body length then does not.
        grown = bytearray(data + tail)
        _U32.pack_into(grown, LENGTH_OFFSET, len(grown) - ENVELOPE_BYTES)
        assert resolution_shape(bytes(grown)) is None
    assert resolution_shape(b"") is None and resolution_shape(data[:ENVELOPE_BYTES]) is None


def test_no_shape_for_a_fragment() -> None:
    """A request too long for one datagram arrives in fragments; each announces the
    whole message's length (not its own), and none has a shape. The reassembled whole
    has one."""
    types = tuple(f"NO-SUCH-TYPE-{n:03d}" for n in range(40))
    whole = plain_request(types=types)
    fragments = fragment_encoded(whole)
    assert len(fragments) == 2
    for fragment in fragments:
        assert _U32.unpack_from(fragment, LENGTH_OFFSET)[0] != len(fragment) - ENVELOPE_BYTES
        assert resolution_shape(fragment) is None
    assert resolution_shape(whole) is not None
    # A small request whose length field disagrees by one either way.
    data = bytearray(plain_request())
    for delta in (-1, 1):
        bad = bytearray(data)
        _U32.pack_into(bad, LENGTH_OFFSET, len(data) - ENVELOPE_BYTES + delta)
        assert resolution_shape(bytes(bad)) is None


@SETTINGS
@given(st.binary(max_size=200))
def test_shape_of_arbitrary_bytes_is_bytes_or_none(data: bytes) -> None:
    shape = resolution_shape(data)
    assert shape is None or isinstance(shape, bytes)


# --- resolution_shape: equal and different ----------------------------------------------


@pytest.mark.parametrize("r", resolutions(), ids=_ids)
def test_shape_ignores_session_request_id_and_expiration(r: Resolution) -> None:
    again = restamped(r.request, session_id=0xDEADBEEF, request_id=0x7FFFFFFF, expiration=12345)
    assert again != r.request
    assert resolution_shape(again) == resolution_shape(r.request)


def _differs(a: bytes, b: bytes) -> None:
    assert a != b
    sa, sb = resolution_shape(a), resolution_shape(b)
    assert sa is not None and sb is not None and sa != sb


def test_shape_differs_with_the_handle_index_and_type_lists() -> None:
    base = plain_request("88.118.2/ABC123", (1,), ("URL",))
    _differs(
        base, plain_request("88.118.2/abc123", (1,), ("URL",))
    )  # the reply echoes the spelling
    _differs(base, plain_request("88.118.2/ABC124", (1,), ("URL",)))
    _differs(base, plain_request("88.118.2/ABC123", (2,), ("URL",)))
    _differs(base, plain_request("88.118.2/ABC123", (1, 2), ("URL",)))
    _differs(base, plain_request("88.118.2/ABC123", (), ("URL",)))
    _differs(base, plain_request("88.118.2/ABC123", (1,), ("url",)))
    _differs(base, plain_request("88.118.2/ABC123", (1,), ("URL", "EMAIL")))
    _differs(base, plain_request("88.118.2/ABC123", (1,), ()))
    # Same lengths throughout, one byte apart.
    _differs(plain_request("88.118.2/X", (), ()), plain_request("88.118.2/Y", (), ()))
    _differs(plain_request("88.118.2/X", (1,), ()), plain_request("88.118.2/X", (256,), ()))


@pytest.mark.parametrize(
    "flag",
    [OpFlag.RRDG, OpFlag.PUBL, OpFlag.RECU, OpFlag.CACR, OpFlag.DNRF, OpFlag.KPAL, OpFlag.AUTH],
    ids=lambda f: f.name,
)
def test_shape_differs_with_each_flag(flag: OpFlag) -> None:
    _differs(plain_request(flags=DEFAULT_FLAGS & ~flag), plain_request(flags=DEFAULT_FLAGS | flag))


@pytest.mark.parametrize("r", resolutions(), ids=_ids)
def test_shape_differs_with_version_bytes_and_recursion(r: Resolution) -> None:
    data = r.request
    for offset in range(4):  # major, minor, flags + suggested major, suggested minor
        changed = bytearray(data)
        changed[offset] ^= 0x01
        _differs(data, bytes(changed))
    m = decode(data)
    _differs(data, variant(data, recursion=m.header.recursion + 1))
    _differs(data, variant(data, suggested=None if m.envelope.suggested_version else (2, 11)))
    _differs(data, variant(data, flags=m.header.flags ^ OpFlag.RRDG))


# --- ReplyTemplate.fit ------------------------------------------------------------------

# (request version, suggested version or None) -> the request digest the reply carries
VERSIONS = [
    ((2, 10), (2, 11)),  # the reference client: reply at 2.11, SHA-256
    ((2, 1), None),  # RFC 3652 envelope: reply at 2.1, SHA-1
    ((2, 1), (2, 1)),
    ((2, 5), (2, 6)),  # reply at 2.6: still SHA-1
    ((2, 10), (2, 7)),  # reply at 2.7: SHA-256 from here
    ((3, 0), (3, 0)),  # capped at 2.11
    ((2, 0), (2, 0)),  # below 2.1: RRDG asked for, no digest sent
]


def _version_id(v: tuple[tuple[int, int], tuple[int, int] | None]) -> str:
    version, suggested = v
    return f"{version[0]}.{version[1]}" + (f"~{suggested[0]}.{suggested[1]}" if suggested else "")


def check_fit(request1: bytes, request2: bytes, rc: int, body: Body) -> bytes:
    """The reply to request1 at T1, fitted to request2 at T2, is the reply built from
    scratch for request2 at T2."""
    assert resolution_shape(request1) == resolution_shape(request2) is not None
    first = from_scratch(request1, rc, body, T1)
    expected = from_scratch(request2, rc, body, T2)
    template = ReplyTemplate(first)
    assert template.rc == rc
    got = template.fit(request2, T2)
    assert bytes(got).hex() == expected.hex()
    assert template.data == first  # the template is not changed by fitting
    if isinstance(body, ResolutionReply) and body.values:
        # The values section referenced from the record's own wire bytes, not copied.
        wire = encode_values(body.values)
        shared = ReplyTemplate(first, shared_tail=wire)
        assert shared.tail is wire and len(shared.head) == len(first) - len(wire) - 4
        assert bytes(shared.fit(request2, T2)).hex() == expected.hex()
        assert shared.data == first
    unrelated = ReplyTemplate(first, shared_tail=b"\x00\x00\x00\x09not the values")
    assert unrelated.tail is None and bytes(unrelated.fit(request2, T2)) == expected
    return expected


@pytest.mark.parametrize("r", resolutions(), ids=_ids)
def test_fit_golden_request_as_captured(r: Resolution) -> None:
    request2 = restamped(r.request, session_id=0x01020304, request_id=0x0A0B0C0D, expiration=99)
    reply = decode(check_fit(r.request, request2, r.rc, r.body))
    assert (reply.envelope.session_id, reply.request_id) == (0x01020304, 0x0A0B0C0D)
    assert reply.header.expiration == int(T2) + REPLY_LIFETIME_S


@pytest.mark.parametrize("versions", VERSIONS, ids=_version_id)
@pytest.mark.parametrize("r", resolutions(), ids=_ids)
def test_fit_with_request_digest(
    r: Resolution, versions: tuple[tuple[int, int], tuple[int, int] | None]
) -> None:
    version, suggested = versions
    m = decode(r.request)
    request1 = variant(
        r.request, version=version, suggested=suggested, flags=m.header.flags | OpFlag.RRDG
    )
    request2 = restamped(request1, session_id=5, request_id=0xFFFFFFFF, expiration=0)
    reply = decode(check_fit(request1, request2, r.rc, r.body))
    hash_type = digest_hash_type(reply_version(decode(request1).envelope))
    if hash_type is None:
        assert reply.digest is None and OpFlag.RRDG not in reply.header.flags
        return
    name = "sha1" if reply.envelope.version < (2, 7) else "sha256"
    assert reply.digest is not None and reply.digest.hash_type == hash_type
    # The digest is of request2 as sent (header + body, no credential), not of request1.
    assert reply.digest.digest == hashlib.new(name, request2[ENVELOPE_BYTES:-4]).digest()
    assert reply.digest.digest != hashlib.new(name, request1[ENVELOPE_BYTES:-4]).digest()


def test_fit_covers_both_digests() -> None:
    """The version table above reaches SHA-1 and SHA-256 replies and a digest-less one."""
    kinds = set()
    for version, suggested in VERSIONS:
        env = Envelope(
            *version,
            suggested_major=(suggested or (0, 0))[0],
            suggested_minor=(suggested or (0, 0))[1],
        )
        kinds.add(digest_hash_type(reply_version(env)))
    assert {k.name if k is not None else None for k in kinds} == {"SHA1", "SHA256", None}


def test_fit_wraps_the_expiration_as_build_reply_does() -> None:
    request = plain_request()
    late = float(0xFFFFFFFF - 10)  # now + 12 h overflows a u32
    body = ResolutionReply("88.118.2/ABC123", (HandleValue(1, "URL", b"https://example.com/"),))
    first = from_scratch(request, ResponseCode.SUCCESS, body, T1)
    assert bytes(ReplyTemplate(first).fit(request, late)) == from_scratch(
        request, ResponseCode.SUCCESS, body, late
    )


# --- property: any ids, any time ---------------------------------------------------------

u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@SETTINGS
@given(
    r=st.sampled_from(resolutions()),
    versions=st.sampled_from(VERSIONS),
    rrdg=st.booleans(),
    ids1=st.tuples(u32, u32, u32),
    ids2=st.tuples(u32, u32, u32),
    t1=st.floats(min_value=0, max_value=2.0**32 + 2 * REPLY_LIFETIME_S, allow_nan=False),
    t2=st.floats(min_value=0, max_value=2.0**32 + 2 * REPLY_LIFETIME_S, allow_nan=False),
)
def test_fit_equals_a_reply_from_scratch(
    r: Resolution,
    versions: tuple[tuple[int, int], tuple[int, int] | None],
    rrdg: bool,
    ids1: tuple[int, int, int],
    ids2: tuple[int, int, int],
    t1: float,
    t2: float,
) -> None:
    version, suggested = versions
    flags = decode(r.request).header.flags | (OpFlag.RRDG if rrdg else OpFlag(0))
    base = variant(r.request, version=version, suggested=suggested, flags=flags)
    request1 = restamped(base, session_id=ids1[0], request_id=ids1[1], expiration=ids1[2])
    request2 = restamped(base, session_id=ids2[0], request_id=ids2[1], expiration=ids2[2])
    assert resolution_shape(request1) == resolution_shape(request2) is not None
    first = from_scratch(request1, r.rc, r.body, t1)
    assert bytes(ReplyTemplate(first).fit(request2, t2)) == from_scratch(request2, r.rc, r.body, t2)

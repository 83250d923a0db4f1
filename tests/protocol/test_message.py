"""Message codec: bodies, request digests, credentials, bounds, error recovery, signed
bytes, reply conventions and UDP fragmentation."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace

import pytest

from protocol.bodies import (
    Body,
    ChallengeReply,
    ErrorReply,
    HashType,
    RawBody,
    ReferralReply,
    RequestDigest,
    ResolutionReply,
    ResolutionRequest,
    SiteInfoReply,
    SiteInfoRequest,
    resolution_reply_body,
)
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.fragment import Reassembler, fragment, fragment_encoded
from protocol.message import (
    MAX_MESSAGE_BYTES,
    Credential,
    Envelope,
    EnvelopeFlag,
    Header,
    MalformedMessage,
    Message,
    decode,
    encode,
    encode_header,
    header_and_body,
    peek_request_id,
)
from protocol.negotiate import (
    at_least,
    build_reply,
    digest_hash_type,
    encode_reply,
    expiration_for,
    negotiate,
    request_digest,
    signed_bytes,
)
from protocol.structured import Interface, ServerInfo, SiteInfo
from protocol.valuecodec import encode_values
from protocol.values import HandleValue, Reference

NOW = 1_795_443_835.7
DEFAULT_BODY = ResolutionRequest("88.118.2/ABC123")
VALUES = (
    HandleValue(1, "URL", b"https://example.com/x", references=(Reference("88.118/ADMIN", 300),)),
    HandleValue(
        2, "EMAIL", b"ops@example.com", ttl=3600, permissions=0x0C, timestamp=1_700_000_000
    ),
)
SITE = SiteInfo(
    serial=3,
    servers=(
        ServerInfo.for_address(1, "10.0.0.7", b"", (Interface(3, 1, 2641), Interface(2, 0, 2641))),
    ),
)


def request(
    body: Body = DEFAULT_BODY,
    *,
    opcode: int = OpCode.RESOLUTION,
    flags: OpFlag = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL,
    envelope: Envelope | None = None,
) -> Message:
    env = envelope or Envelope(2, 10, session_id=5, request_id=0x1234ABCD)
    return Message(
        env, Header(opcode, flags=flags, site_serial=1, recursion=2, expiration=77), body
    )


def roundtrip(msg: Message) -> Message:
    data = encode(msg)
    back = decode(data)
    assert back == replace(msg, envelope=replace(msg.envelope, length=len(data) - 20))
    assert encode(back) == data
    return back


# --- bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ResolutionRequest("88.118.2/ABC123"),
        ResolutionRequest("88.118.2/布料-001", (1, 100, 0xFFFFFFFF), ("URL", "HS_SITE.", "")),
        SiteInfoRequest(),
    ],
)
def test_request_bodies_roundtrip(body: Body) -> None:
    opcode = OpCode.GET_SITE_INFO if isinstance(body, SiteInfoRequest) else OpCode.RESOLUTION
    roundtrip(request(body, opcode=opcode))


@pytest.mark.parametrize(
    ("rc", "body"),
    [
        (ResponseCode.SUCCESS, ResolutionReply("88.118.2/abc123", VALUES)),
        (ResponseCode.SUCCESS, ResolutionReply("x/y", ())),
        (ResponseCode.VALUES_NOT_FOUND, ErrorReply()),
        (ResponseCode.HANDLE_NOT_FOUND, ErrorReply("handle not found: 88.118.2/Ω")),
        (ResponseCode.PREFIX_REFERRAL, ReferralReply("", VALUES[:1])),
        (ResponseCode.SERVICE_REFERRAL, ReferralReply("0.NA/88.118", None)),
        (ResponseCode.PREFIX_REFERRAL, ReferralReply("", ())),
        (ResponseCode.AUTHENTICATION_NEEDED, ChallengeReply(bytes(range(16)))),
        (ResponseCode.ERROR, ErrorReply("boom")),
        (601, ErrorReply("an unknown response code carries an error message")),
    ],
)
def test_reply_bodies_roundtrip(rc: int, body: Body) -> None:
    reply = build_reply(request(), rc, body, now=NOW, site_serial=1)
    back = roundtrip(reply)
    assert back.body == body


def test_site_info_reply_roundtrip() -> None:
    req = request(SiteInfoRequest(), opcode=OpCode.GET_SITE_INFO)
    back = roundtrip(
        build_reply(req, ResponseCode.SUCCESS, SiteInfoReply(SITE), now=NOW, site_serial=3)
    )
    assert back.body == SiteInfoReply(SITE)
    assert back.header.site_serial == 3


def test_referral_without_count_has_no_trailing_bytes() -> None:
    with_none = encode(
        build_reply(
            request(), ResponseCode.PREFIX_REFERRAL, ReferralReply(), now=NOW, site_serial=1
        )
    )
    with_empty = encode(
        build_reply(
            request(), ResponseCode.PREFIX_REFERRAL, ReferralReply("", ()), now=NOW, site_serial=1
        )
    )
    assert len(with_empty) == len(with_none) + 4


def test_cached_body_bytes_equal_structured_body() -> None:
    structured = encode_reply(
        request(), ResponseCode.SUCCESS, ResolutionReply("a/b", VALUES), now=NOW, site_serial=1
    )
    cached = resolution_reply_body("a/b", encode_values(VALUES))
    assert (
        encode_reply(request(), ResponseCode.SUCCESS, cached, now=NOW, site_serial=1) == structured
    )
    assert decode(structured).body_bytes == cached


def test_unknown_opcode_decodes_with_raw_body() -> None:
    unknown = request(RawBody(b"\x00\x00\x00\x01/\xff\xfe"), opcode=1234)
    back = roundtrip(unknown)
    assert back.header.opcode == 1234 and back.body == RawBody(b"\x00\x00\x00\x01/\xff\xfe")
    # A known opcode without a body codec is raw too (LIST_NAS here).
    assert isinstance(roundtrip(request(RawBody(b"abc"), opcode=OpCode.LIST_NAS)).body, RawBody)
    reply = decode(
        encode_reply(
            back, ResponseCode.OPERATION_NOT_SUPPORTED, ErrorReply(), now=NOW, site_serial=1
        )
    )
    assert reply.request_id == 0x1234ABCD and reply.envelope.session_id == 5
    assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


def test_local_range_errors() -> None:
    with pytest.raises(LocalProtocolError):
        encode(request(ResolutionRequest("a/b", (-1,))))
    with pytest.raises(LocalProtocolError):
        encode(request(envelope=Envelope(2, 10, request_id=1 << 32)))
    with pytest.raises(LocalProtocolError):
        encode(request(envelope=Envelope(2, 10, suggested_major=4)))


# --- request digest -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envelope", "hash_type"),
    [
        (Envelope(2, 10), HashType.SHA256),  # 2.10 suggesting 2.11 -> 2.11
        (Envelope(2, 7, suggested_major=0, suggested_minor=0), HashType.SHA256),
        (Envelope(2, 1, suggested_major=0, suggested_minor=0), HashType.SHA1),
        (Envelope(2, 10, suggested_major=2, suggested_minor=6), HashType.SHA1),
    ],
)
def test_rrdg_digest_follows_reply_version(envelope: Envelope, hash_type: HashType) -> None:
    req_bytes = encode(request(flags=OpFlag.RRDG | OpFlag.PUBL, envelope=envelope))
    req = decode(req_bytes)
    reply = build_reply(
        req, ResponseCode.SUCCESS, ResolutionReply("a/b", VALUES), now=NOW, site_serial=1
    )
    assert reply.digest is not None and reply.digest.hash_type == hash_type
    assert OpFlag.RRDG in reply.header.flags
    # What is digested: the request's header + body, no envelope, no credential.
    covered = req_bytes[20 : 20 + 24 + len(req.body_bytes)]
    assert reply.digest.digest == hashlib.new(hash_type.name.lower(), covered).digest()
    assert header_and_body(req) == covered
    back = roundtrip(reply)
    assert back.digest == reply.digest and back.body == ResolutionReply("a/b", VALUES)


@pytest.mark.parametrize(
    "hash_type", [HashType.MD5, HashType.SHA1, HashType.SHA256, HashType.MD5_OLD_FORMAT]
)
def test_every_digest_type_roundtrips(hash_type: HashType) -> None:
    reply = build_reply(
        request(), ResponseCode.HANDLE_NOT_FOUND, ErrorReply("nope"), now=NOW, site_serial=1
    )
    digest = RequestDigest(hash_type, request_digest(b"request header and body", hash_type))
    with_digest = replace(
        reply, header=replace(reply.header, flags=reply.header.flags | OpFlag.RRDG), digest=digest
    )
    back = roundtrip(with_digest)
    assert back.digest == digest and back.body == ErrorReply("nope")
    assert digest.digest == request_digest(b"request header and body", hash_type)


def test_digest_needs_rrdg_and_vice_versa() -> None:
    reply = build_reply(
        request(), ResponseCode.SUCCESS, ResolutionReply("a/b", ()), now=NOW, site_serial=1
    )
    with pytest.raises(LocalProtocolError):
        encode(replace(reply, digest=RequestDigest(HashType.SHA1, bytes(20))))
    with pytest.raises(LocalProtocolError):
        encode(replace(reply, header=replace(reply.header, flags=OpFlag.AUTH | OpFlag.RRDG)))


def test_no_digest_below_2_1_and_forced_digest_for_challenges() -> None:
    old = request(flags=OpFlag.RRDG, envelope=Envelope(2, 0, suggested_major=0, suggested_minor=0))
    reply = build_reply(
        old, ResponseCode.SUCCESS, ResolutionReply("a/b", ()), now=NOW, site_serial=1
    )
    assert reply.digest is None and OpFlag.RRDG not in reply.header.flags
    challenge = build_reply(
        request(),
        ResponseCode.AUTHENTICATION_NEEDED,
        ChallengeReply(b"n" * 16),
        now=NOW,
        site_serial=1,
        extra_flags=OpFlag.RRDG,
    )
    assert challenge.digest is not None and challenge.digest.hash_type == HashType.SHA256
    assert roundtrip(challenge).body == ChallengeReply(b"n" * 16)


def test_unknown_digest_type_is_malformed() -> None:
    reply = build_reply(
        request(flags=OpFlag.RRDG),
        ResponseCode.SUCCESS,
        ResolutionReply("a/b", ()),
        now=NOW,
        site_serial=1,
    )
    data = bytearray(encode(reply))
    data[44] = 9
    with pytest.raises(MalformedMessage) as e:
        decode(bytes(data))
    assert e.value.request_id == 0x1234ABCD and e.value.header is not None


# --- credential -----------------------------------------------------------------------


def test_credential_section_roundtrip() -> None:
    cred = Credential.make(
        "HS_SIGNED", "SHA-256", b"\x01" * 256, signer_handle="0.NA/88.118", signer_index=7
    )
    reply = build_reply(
        request(), ResponseCode.SUCCESS, ResolutionReply("a/b", VALUES), now=NOW, site_serial=1
    )
    back = roundtrip(replace(reply, credential=cred))
    assert back.credential == cred
    assert (back.credential.digest_algorithm, back.credential.signature) == (
        "SHA-256",
        b"\x01" * 256,
    )
    assert back.credential.type == "HS_SIGNED" and back.credential.signer_index == 7
    # Layout: u8 version, u8 reserved, u16 options, handle, u32 index, type, u32 section length.
    raw = encode(back)
    tail = raw[20 + 24 + len(back.body_bytes) :]
    (length,) = struct.unpack(">I", tail[:4])
    assert length == len(tail) - 4
    assert tail[4:8] == b"\x00\x00\x00\x00" and tail[8:12] == b"\x00\x00\x00\x0b"
    mac = Credential.make("HS_MAC", "HMAC-SHA256", b"\x02" * 32)
    assert roundtrip(replace(reply, credential=mac)).credential == mac


def test_malformed_credential_keeps_request_id() -> None:
    data = bytearray(
        encode(replace(request(), credential=Credential.make("HS_SIGNED", "SHA-256", b"sig")))
    )
    cred_at = 20 + 24 + len(request().body_bytes)
    data[cred_at + 4 + 4 : cred_at + 4 + 8] = b"\x7f\x00\x00\x00"  # signer handle length lies
    with pytest.raises(MalformedMessage) as e:
        decode(bytes(data))
    assert e.value.request_id == 0x1234ABCD and e.value.header is not None


def test_message_may_end_without_credential_length() -> None:
    data = encode(request())[:-4]
    data = data[:16] + struct.pack(">I", len(data) - 20) + data[20:]
    msg = decode(data)
    assert msg.credential is None and msg.body == ResolutionRequest("88.118.2/ABC123")


# --- bounds and error recovery --------------------------------------------------------


def test_too_short_has_no_request_id() -> None:
    for n in range(20):
        with pytest.raises(RemoteProtocolError) as e:
            decode(bytes(n))
        assert not isinstance(e.value, MalformedMessage)
        assert peek_request_id(bytes(n)) is None


def test_oversize_and_inconsistent_lengths() -> None:
    good = encode(request())
    cases = {
        "oversize": good[:16] + struct.pack(">I", MAX_MESSAGE_BYTES + 1) + good[20:],
        "longer than data": good[:16] + struct.pack(">I", len(good) - 19) + good[20:],
        "shorter than data": good + b"\x00",
        "no header": good[:16] + struct.pack(">I", 10) + good[20:30],
        "body beyond message": good[:40] + struct.pack(">I", 1000) + good[44:],
        "body short": good[:40] + struct.pack(">I", len(request().body_bytes) - 1) + good[44:],
        "trailing after credential": good[:16]
        + struct.pack(">I", len(good) - 18)
        + good[20:]
        + b"\0\0",
        "compressed": good[:2] + bytes([good[2] | 0x80]) + good[3:],
    }
    for name, data in cases.items():
        with pytest.raises(MalformedMessage) as e:
            decode(data)
        assert e.value.request_id == 0x1234ABCD, name
        assert e.value.response_code == (
            ResponseCode.OPERATION_NOT_SUPPORTED
            if name == "compressed"
            else ResponseCode.PROTOCOL_ERROR
        )
        assert peek_request_id(data) == 0x1234ABCD


def test_request_id_recovered_from_malformed_body() -> None:
    good = encode(request())
    bad = good[:44] + b"\xff\xff\xff\xff" + good[48:]  # handle length far beyond the body
    with pytest.raises(MalformedMessage) as e:
        decode(bad)
    assert e.value.request_id == 0x1234ABCD
    assert e.value.header is not None and e.value.header.opcode == OpCode.RESOLUTION
    assert e.value.envelope.session_id == 5
    invalid_utf8 = good[:48] + b"\xc3\x28" + good[50:]
    with pytest.raises(MalformedMessage):
        decode(invalid_utf8)


def test_oversize_encode_refused() -> None:
    big = HandleValue(1, "BLOB", bytes(65_536))
    reply = build_reply(
        request(), ResponseCode.SUCCESS, ResolutionReply("a/b", (big,) * 4), now=NOW, site_serial=1
    )
    with pytest.raises(LocalProtocolError):
        encode(reply)


def test_errors_are_protocol_errors() -> None:
    assert issubclass(MalformedMessage, RemoteProtocolError) and issubclass(
        MalformedMessage, ProtocolError
    )


# --- reply conventions, versions, signed bytes ----------------------------------------


def test_reply_flags_and_fields() -> None:
    req = request(flags=OpFlag(0x19000000) | OpFlag.DNRF | OpFlag.KPAL | OpFlag.CERT | OpFlag.CONT)
    reply = build_reply(
        req, ResponseCode.SUCCESS, b"", now=NOW, site_serial=9, extra_flags=OpFlag.CERT
    )
    assert reply.header.flags == OpFlag.AUTH | OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL | OpFlag.CERT
    assert reply.header.expiration == int(NOW) + 43_200 == expiration_for(NOW)
    assert (reply.header.site_serial, reply.header.recursion, reply.header.opcode) == (
        9,
        2,
        OpCode.RESOLUTION,
    )
    assert reply.envelope.version == (2, 11) and reply.envelope.suggested_version == (2, 11)
    assert (reply.envelope.session_id, reply.request_id) == (5, 0x1234ABCD)
    assert (
        build_reply(
            request(flags=OpFlag(0)), ResponseCode.SUCCESS, b"", now=NOW, site_serial=1
        ).header.flags
        == OpFlag.AUTH
    )


def test_negotiation_rules() -> None:
    assert negotiate((2, 10), (2, 11)) == (2, 11)
    assert negotiate((2, 1), None) == (2, 1)
    assert negotiate((2, 10), (2, 1)) == (2, 1)
    assert negotiate((3, 0), (3, 0)) == (2, 11)
    assert negotiate((2, 12), None) == (2, 11)
    # 5.x: very old 2.0 clients; the reference neither caps nor treats it as recent.
    assert negotiate((5, 0), None) == (5, 0)
    assert not at_least((5, 0), (2, 1)) and at_least((2, 11), (2, 7))
    assert digest_hash_type((5, 0)) is None and digest_hash_type((2, 0)) is None


def test_header_offsets_for_patching() -> None:
    data = encode_reply(
        request(), ResponseCode.HANDLE_NOT_FOUND, ErrorReply(), now=NOW, site_serial=1
    )
    assert data[4:8] == struct.pack(">I", 5) and data[8:12] == struct.pack(">I", 0x1234ABCD)
    assert data[36:40] == struct.pack(">I", int(NOW) + 43_200)
    assert encode_header(decode(data).header, len(decode(data).body_bytes)) == data[20:44]


def _signed_fixture(version: tuple[int, int]) -> Message:
    env = Envelope(
        *version,
        suggested_major=2,
        suggested_minor=11,
        session_id=0x01020304,
        request_id=0x0A0B0C0D,
    )
    return replace(
        request(envelope=env),
        credential=Credential.make("HS_SIGNED", "SHA-256", b"s", signer_index=0x55),
    )


def test_signed_bytes_layouts() -> None:
    m = _signed_fixture((2, 11))
    hb = header_and_body(m)
    assert (
        signed_bytes(m)
        == bytes([2, 11, 2, 11]) + struct.pack(">III", 0x01020304, 0x0A0B0C0D, 0x55) + hb
    )
    assert (
        signed_bytes(m, session_counter=0)
        == bytes([2, 11, 2, 11]) + struct.pack(">III", 0x01020304, 0x0A0B0C0D, 0) + hb
    )
    m = _signed_fixture((2, 7))  # no suggested version below 2.8
    assert signed_bytes(m) == bytes([2, 7]) + struct.pack(">III", 0x01020304, 0x0A0B0C0D, 0x55) + hb
    m = _signed_fixture((2, 6))  # the reference's overwritten-offset layout
    assert signed_bytes(m) == bytes([2, 6, 0x01, 0x02]) + struct.pack(">I", 0x55) + bytes(6) + hb
    assert signed_bytes(_signed_fixture((2, 5))) == hb
    # A decoded message signs the bytes as received.
    back = decode(encode(_signed_fixture((2, 11))))
    assert signed_bytes(back).endswith(back.received) and back.received == hb


# --- fragmentation --------------------------------------------------------------------


def _big_reply() -> bytes:
    values = tuple(
        HandleValue(i, "URL", f"https://example.com/{i:04}".encode()) for i in range(1, 60)
    )
    return encode_reply(
        request(), ResponseCode.SUCCESS, ResolutionReply("a/b", values), now=NOW, site_serial=1
    )


def test_fragment_and_reassemble() -> None:
    data = _big_reply()
    parts = fragment_encoded(data)
    assert len(parts) > 2 and all(len(p) <= 512 for p in parts) and len(parts[-1]) < 512
    for seq, p in enumerate(parts):
        env = Envelope.from_wire(p)
        assert (env.sequence, env.length, env.request_id) == (seq, len(data) - 20, 0x1234ABCD)
        assert not env.flags & EnvelopeFlag.TRUNCATED
    ra = Reassembler()
    order = [parts[-1], parts[-1], *parts[-2::-1]]  # out of order, with a duplicate
    results = [ra.feed(p, now=1.0, source="peer") for p in order]
    assert results[:-1] == [None] * len(parts) and results[-1] == data
    assert ra.pending == 0 and ra.buffered_bytes == 0
    assert fragment(Envelope.from_wire(data), data[20:], 1000) == fragment_encoded(data, 1000)
    assert fragment_encoded(encode(request())) == [encode(request())]
    assert ra.feed(encode(request()), now=2.0) == encode(request())


def test_reassembly_rejects_inconsistent_fragments() -> None:
    parts = fragment_encoded(_big_reply())
    ra = Reassembler()
    ra.feed(parts[0], now=0.0)
    liar = parts[1][:16] + struct.pack(">I", 5000) + parts[1][20:]  # another total length
    with pytest.raises(RemoteProtocolError):
        ra.feed(liar, now=0.0)
    assert ra.pending == 1  # the liar is dropped, the message kept
    for p in parts[1:-1]:
        assert ra.feed(p, now=0.0) is None
    padded_last = parts[-1][:20] + b"y" * 492  # fragments now exceed the total
    with pytest.raises(RemoteProtocolError):
        ra.feed(padded_last, now=0.0)
    assert ra.pending == 0 and ra.buffered_bytes == 0
    with pytest.raises(RemoteProtocolError):
        ra.feed(parts[0][:16] + struct.pack(">I", MAX_MESSAGE_BYTES + 1) + parts[0][20:], now=0.0)
    with pytest.raises(RemoteProtocolError):
        ra.feed(parts[0][:19], now=0.0)
    with pytest.raises(RemoteProtocolError):
        ra.feed(parts[0][:20], now=0.0)  # empty fragment
    with pytest.raises(RemoteProtocolError):
        ra.feed(parts[0] + b"z" * 5000, now=0.0)  # more bytes than the message


def test_reassembly_gaps_are_rejected() -> None:
    data = _big_reply()
    total = len(data) - 20
    head = data[:20]
    a = head[:12] + struct.pack(">I", 0) + head[16:] + data[20 : 20 + total - 10]
    b = head[:12] + struct.pack(">I", 2) + head[16:] + data[20 + total - 10 :]
    ra = Reassembler()
    assert ra.feed(a, now=0.0) is None
    with pytest.raises(RemoteProtocolError):
        ra.feed(b, now=0.0)


def test_reassembly_expiry_and_bounds() -> None:
    parts = fragment_encoded(_big_reply())
    ra = Reassembler(timeout_s=5.0, max_pending=2)
    ra.feed(parts[0], now=0.0, source=1)
    assert ra.pending == 1
    assert ra.expire(4.9) == 0 and ra.expire(5.0) == 1 and ra.pending == 0 and ra.expired == 1
    for src in range(3):
        ra.feed(parts[0], now=10.0, source=src)
    assert ra.pending == 2 and ra.evicted == 1
    small = Reassembler(max_buffered_bytes=1000)
    for src in range(5):
        small.feed(parts[0], now=0.0, source=src)
    assert small.buffered_bytes <= 1000 and small.evicted >= 3
    capped = Reassembler(max_message_bytes=1000)
    with pytest.raises(RemoteProtocolError):
        capped.feed(parts[0], now=0.0)

"""Bodies of the admin, challenge, session and IDIS login opcodes: round trips through
the message codec, properties over generated bodies and arbitrary bytes, truncations
that fail naming the field, and the layout quirks (session setup padding, trailing
bytes after a resolution request)."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.admin import (
    LIST_CHUNK,
    EmptyReply,
    HandleListReply,
    HandleReply,
    HandleRequest,
    RemoveValuesRequest,
    ValuesRequest,
    chunk_handles,
)
from protocol.authbodies import ChallengeAnswer, VerifyChallengeReply, VerifyChallengeRequest
from protocol.bodies import (
    REQUEST_BODIES,
    SUCCESS_BODIES,
    Body,
    ChallengeReply,
    ResolutionRequest,
    encode_body,
)
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.idis import LoginIdSystemRequest, LoginRequest
from protocol.message import Envelope, Header, Message, decode, encode
from protocol.sessionbodies import (
    DHPublicKey,
    SessionMode,
    SessionSetupReply,
    SessionSetupRequest,
    dh_reply_data,
    java_bytes,
    parse_dh_reply_data,
)
from protocol.values import HandleValue, Reference
from protocol.wirebase import Reader, Writer
from tests.protocol.admin_golden import GROUP2_P

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALUE = HandleValue(1, "URL", b"https://example.com/a", references=(Reference("88.118/A", 300),))
ADMIN = HandleValue(100, "HS_ADMIN", bytes.fromhex("0fff0000000c38382e3131382f41444d494e0000012c"))
DH_KEY = DHPublicKey(0x6051B7A7 << 992, GROUP2_P, 2)

# (opcode, body) of every new request body, and the success replies by opcode.
REQUESTS: list[tuple[int, Body]] = [
    (OpCode.CREATE_HANDLE, ValuesRequest("88.118.2/X", (ADMIN, VALUE))),
    (OpCode.ADD_VALUE, ValuesRequest("88.118.2/X", (VALUE,))),
    (OpCode.MODIFY_VALUE, ValuesRequest("88.118.2/X", ())),
    (OpCode.DELETE_HANDLE, HandleRequest("88.118.2/X")),
    (OpCode.REMOVE_VALUE, RemoveValuesRequest("88.118.2/X", (2, 0xFFFFFFFF))),
    (OpCode.LIST_HANDLES, HandleRequest("0.NA/88.118.2")),
    (OpCode.HOME_NA, HandleRequest("0.NA/88.118.77")),
    (OpCode.UNHOME_NA, HandleRequest("0.NA/88.118.77")),
    (OpCode.LIST_HOMED_NAS, HandleRequest("/")),
    (OpCode.SESSION_TERMINATE, HandleRequest("/")),
    (OpCode.CHALLENGE_RESPONSE, ChallengeAnswer("HS_SECKEY", "88.118/ADMIN", 300, b"\x02" * 21)),
    (
        OpCode.VERIFY_RESPONSE,
        VerifyChallengeRequest("88.118/ADMIN", 300, b"n" * 16, b"d" * 32, b"r"),
    ),
    (
        OpCode.SESSION_SETUP,
        SessionSetupRequest(
            SessionMode.DIFFIE_HELLMAN, 86400, "88.118/ADMIN", 300, DH_KEY.to_bytes()
        ),
    ),
    (OpCode.SESSION_SETUP, SessionSetupRequest(SessionMode.CIPHER_SERVER, 60, "88.118/A", 1)),
    (OpCode.SESSION_SETUP, SessionSetupRequest(SessionMode.CIPHER_CLIENT, 60, "88.118/A", 1, b"k")),
    (
        OpCode.SESSION_SETUP,
        SessionSetupRequest(SessionMode.CIPHER_HANDLE, 60, "88.118/A", 1, None, "88.118/K", 7),
    ),
    (OpCode.LOGIN_ID_SYSTEM, LoginIdSystemRequest("88.118/USER", 300)),
    (OpCode.LOGIN, LoginRequest("user", "pässword")),
]
REPLIES: list[tuple[int, Body]] = [
    (OpCode.CREATE_HANDLE, HandleReply("88.118.2/X")),
    *((op, EmptyReply()) for op in (101, 102, 103, 104, 300, 301, 401, 2001)),
    (OpCode.LIST_HANDLES, HandleListReply(("88.118.2/A", "88.118.2/ÉTÉ-X"))),
    (OpCode.LIST_HOMED_NAS, HandleListReply(())),
    (OpCode.VERIFY_RESPONSE, VerifyChallengeReply(True)),
    (OpCode.VERIFY_RESPONSE, VerifyChallengeReply(False)),
    (OpCode.SESSION_SETUP, SessionSetupReply(SessionMode.DIFFIE_HELLMAN, dh_reply_data(DH_KEY))),
]


def raw_message(opcode: int, rc: int, body: bytes) -> bytes:
    """A well-framed message around arbitrary body bytes."""
    header = struct.pack(">IIIHBBII", opcode, rc, 0, 1, 0, 0, 0, len(body))
    payload = header + body + b"\0\0\0\0"
    return struct.pack(">BBBBIIII", 2, 11, 2, 11, 0, 7, 0, len(payload)) + payload


def message(opcode: int, body: Body, rc: int = ResponseCode.RESERVED) -> Message:
    flags = OpFlag.AUTH if rc else OpFlag(0)
    return Message(Envelope(request_id=7, session_id=3), Header(opcode, rc, flags), body)


@pytest.mark.parametrize(("opcode", "body"), REQUESTS, ids=lambda x: repr(x)[:40])
def test_requests_roundtrip(opcode: int, body: Body) -> None:
    data = encode(message(opcode, body))
    back = decode(data)
    assert back.body == body and type(back.body) is type(body)
    assert encode(back) == data


@pytest.mark.parametrize(("opcode", "body"), REPLIES, ids=lambda x: repr(x)[:40])
def test_success_replies_roundtrip(opcode: int, body: Body) -> None:
    data = encode(message(opcode, body, ResponseCode.SUCCESS))
    back = decode(data)
    assert back.body == body and type(back.body) is type(body)
    assert encode(back) == data


def test_dispatch_tables_cover_the_admin_opcodes() -> None:
    assert {op for op, _ in REQUESTS} <= set(REQUEST_BODIES)
    assert {op for op, _ in REPLIES} <= set(SUCCESS_BODIES)
    assert OpCode.LIST_NAS not in REQUEST_BODIES  # still raw: no layout known


def test_challenge_reply_forms() -> None:
    """The 2.1+ form (nonce only, digest in the message) and the < 2.1 form (nonce then
    MD5 digest; admin capture #4)."""
    w = Writer()
    w.blob(b"n" * 16)
    assert encode_body(ChallengeReply(b"n" * 16)) == w.getvalue()
    w.blob(b"d" * 16)
    assert encode_body(ChallengeReply(b"n" * 16, b"d" * 16)) == w.getvalue()
    assert ChallengeReply.read(Reader(w.getvalue())) == ChallengeReply(b"n" * 16, b"d" * 16)


def test_admin_layouts() -> None:
    """Bytes as the reference writes them (admin capture #7, #9, #10)."""
    assert encode_body(HandleRequest("/")) == bytes.fromhex("000000012f")
    assert encode_body(RemoveValuesRequest("a", (2,))) == b"\0\0\0\x01a\0\0\0\x01\0\0\0\x02"
    assert encode_body(HandleListReply(("a", "bc"))) == b"\0\0\0\x02\0\0\0\x01a\0\0\0\x02bc"
    assert encode_body(EmptyReply()) == b""
    assert encode_body(VerifyChallengeReply(True)) == b"\x01"
    assert encode_body(LoginIdSystemRequest("u", 300)) == b"\0\0\0\x01u\0\0\x01\x2c"
    assert encode_body(LoginRequest("u", "p")) == b"\0\0\0\x01u\0\0\0\0\0\0\0\x01\0\0\0\x01p"
    # LOGIN is the resolution layout: the password sits in the type-list slot.
    as_resolution = ResolutionRequest.read(Reader(encode_body(LoginRequest("u", "p"))))
    assert as_resolution == ResolutionRequest("u", (), ("p",))


def test_login_request_hides_the_password() -> None:
    assert "s3cret" not in repr(LoginRequest("user", "s3cret"))


def test_chunk_handles() -> None:
    assert chunk_handles([]) == [()]
    names = [f"88.118.2/H{i}" for i in range(2 * LIST_CHUNK + 1)]
    chunks = chunk_handles(names)
    assert [len(c) for c in chunks] == [LIST_CHUNK, LIST_CHUNK, 1]
    assert [h for c in chunks for h in c] == names


# --- quirks ---------------------------------------------------------------------------


def test_session_setup_padding_written_and_optional() -> None:
    req = SessionSetupRequest(SessionMode.DIFFIE_HELLMAN, 86400, "88.118/A", 300, b"key")
    data = encode_body(req)
    assert data.endswith(b"\0\0") and len(data) == 2 + 4 + 12 + 4 + 7 + 2
    unpadded = SessionSetupRequest.read(Reader(data[:-2]))
    assert unpadded == req and not unpadded.padded
    assert encode_body(unpadded) == data[:-2]  # re-encodes as received
    with pytest.raises(RemoteProtocolError, match="padding"):
        SessionSetupRequest.read(Reader(data[:-2] + b"\0\1"))
    with pytest.raises(RemoteProtocolError, match="padding"):
        SessionSetupRequest.read(Reader(data + b"\0"))
    reply = SessionSetupReply(SessionMode.DIFFIE_HELLMAN, b"data")
    assert encode_body(reply) == b"\0\x04\0\0\0\x04data\0\0"
    assert SessionSetupReply.read(Reader(b"\0\x04\0\0\0\x04data")) == reply


def test_session_setup_refuses_inconsistent_fields() -> None:
    bad = [
        SessionSetupRequest(SessionMode.DIFFIE_HELLMAN, 1, "h", 1),  # no key
        SessionSetupRequest(SessionMode.CIPHER_SERVER, 1, "h", 1, b"k"),  # a key
        SessionSetupRequest(SessionMode.CIPHER_HANDLE, 1, "h", 1, None, "k"),  # no index
        SessionSetupRequest(SessionMode.CIPHER_SERVER, 1, "h", 1, None, "k", 1),
        SessionSetupRequest(SessionMode.CIPHER_SERVER, -1, "h", 1),
        SessionSetupRequest(SessionMode(4), 1, "h", 1 << 32, b"k"),
    ]
    for req in bad:
        with pytest.raises(LocalProtocolError):
            encode_body(req)
    with pytest.raises(RemoteProtocolError, match="unknown session mode 9"):
        SessionSetupRequest.read(Reader(b"\0\x09" + bytes(20)))


def test_resolution_request_accepts_trailing_bytes() -> None:
    """Teleinfo's id-pointer-sdk appends 4 bytes after the type list; they are consumed,
    counted and not written back. A truncated body still fails."""
    plain = ResolutionRequest("88.118.2/A", (1,), ("URL",))
    data = encode_body(plain)
    back = ResolutionRequest.read(Reader(data + b"\0\0\0\x01"))
    assert back == plain and back.trailing == 4
    assert encode_body(back) == data
    msg = decode(raw_message(OpCode.RESOLUTION, 0, data + b"\0\0\0\x01"))
    assert msg.body == plain and isinstance(msg.body, ResolutionRequest)
    assert msg.body.trailing == 4
    for n in range(len(data)):
        with pytest.raises(RemoteProtocolError, match=r"truncated|exceeds"):
            ResolutionRequest.read(Reader(data[:n]))


def test_dh_public_key_layout() -> None:
    """Java BigInteger.toByteArray: p of a 1024-bit group is 129 bytes with a leading 00,
    g = 2 is one byte (admin capture #2)."""
    key = DHPublicKey(0x7F, GROUP2_P, 2)
    data = key.to_bytes()
    assert data.startswith(b"\0\0\0\x0aDH_PUB_KEY\0\0\0\0\0\x01\x7f\0\0\0\x81\0\xff")
    assert data.endswith(b"\0\0\0\x01\x02")
    assert DHPublicKey.from_bytes(data) == key
    assert DHPublicKey.from_bytes(data + b"ignored") == key
    assert java_bytes(0) == b"\0" and java_bytes(0x80) == b"\0\x80" and java_bytes(0x7F) == b"\x7f"
    algorithm, back = parse_dh_reply_data(dh_reply_data(key))
    assert (algorithm, back) == (3, key)
    with pytest.raises(RemoteProtocolError, match="not DH_PUB_KEY"):
        DHPublicKey.from_bytes(b"\0\0\0\x0bRSA_PUB_KEY" + data[14:])
    empty_y = data[:16] + b"\0\0\0\0" + data[21:]
    with pytest.raises(RemoteProtocolError, match=r"DH y is empty"):
        DHPublicKey.from_bytes(empty_y)
    # A number with its top bit set and no sign byte is negative, as Java reads it.
    assert DHPublicKey.from_bytes(data[:16] + b"\0\0\0\x01\xff" + data[21:]).y == -1
    with pytest.raises(LocalProtocolError):
        DHPublicKey(-1, 23, 2).to_bytes()
    with pytest.raises(LocalProtocolError):
        DHPublicKey(1, 23, 2, flags=1 << 16).to_bytes()


def test_login_counts_are_fixed() -> None:
    good = encode_body(LoginRequest("u", "p"))
    with pytest.raises(RemoteProtocolError, match="login index count is 1"):
        LoginRequest.read(Reader(good[:5] + b"\0\0\0\x01" + good[9:]))
    with pytest.raises(RemoteProtocolError, match="login password count is 2"):
        LoginRequest.read(Reader(good[:9] + b"\0\0\0\x02" + good[13:]))


def test_verify_reply_byte_is_zero_or_one() -> None:
    assert VerifyChallengeReply.read(Reader(b"\0")) == VerifyChallengeReply(False)
    with pytest.raises(RemoteProtocolError, match="verification result byte is 2"):
        VerifyChallengeReply.read(Reader(b"\x02"))


def test_empty_reply_refuses_bytes() -> None:
    data = encode(message(OpCode.DELETE_HANDLE, EmptyReply(), ResponseCode.SUCCESS))
    bad = data[:16] + struct.pack(">I", len(data) - 20 + 1) + data[20:40] + b"\0\0\0\x01x"
    bad += data[44:]
    with pytest.raises(RemoteProtocolError, match="trailing bytes in message body"):
        decode(bad)


def test_local_range_errors() -> None:
    for body in (
        RemoveValuesRequest("h", (-1,)),
        ChallengeAnswer("HS_SECKEY", "h", 1 << 32, b""),
        VerifyChallengeRequest("h", -1, b"", b"", b""),
        LoginIdSystemRequest("h", 1 << 32),
    ):
        with pytest.raises(LocalProtocolError):
            encode_body(body)


# --- truncations name the field ---------------------------------------------------------

_UNNAMED = {"u8", "u16", "u32", "bytes", "byte string", "UTF-8 string"}


# Prefixes that are themselves complete bodies: a 2.1+ challenge without the legacy
# digest, a session setup without its padding.
def _no_prefix(data: bytes) -> set[int]:
    return set()


_VALID_PREFIXES: dict[type, Callable[[bytes], set[int]]] = {
    ChallengeReply: lambda data: {4 + int.from_bytes(data[:4], "big")},
    SessionSetupRequest: lambda data: {len(data) - 2},
    SessionSetupReply: lambda data: {len(data) - 2},
}


@pytest.mark.parametrize(
    "body",
    [b for _, b in REQUESTS + REPLIES] + [ChallengeReply(b"n" * 16, b"d" * 16)],
    ids=lambda b: type(b).__name__,
)
def test_truncations_name_the_field(body: Body) -> None:
    data = encode_body(body)
    reader = type(body).read
    valid = _VALID_PREFIXES.get(type(body), _no_prefix)(data)
    for n in range(len(data)):
        if n in valid:
            assert type(reader(Reader(data[:n]))) is type(body)
            continue
        with pytest.raises(RemoteProtocolError) as e:
            reader(Reader(data[:n]))
        m = re.match(r"truncated (.+?): need \d+ bytes", e.value.message) or re.match(
            r"(.+?) count \d+ exceeds", e.value.message
        )
        assert m, e.value.message
        assert m.group(1) not in _UNNAMED, e.value.message


# --- properties -------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
text = st.text(max_size=20)
blobs = st.binary(max_size=40)
values = st.builds(
    HandleValue,
    index=u32,
    type=st.text(max_size=10),
    data=blobs,
    ttl=u32,
    timestamp=u32,
    permissions=st.integers(0, 15),
    references=st.lists(st.builds(Reference, text, u32), max_size=2).map(tuple),
)
dh_keys = st.builds(
    DHPublicKey,
    st.integers(0, 1 << 300),
    st.integers(0, 1 << 300),
    st.integers(0, 5),
    st.integers(0, 0xFFFF),
)
request_bodies = st.one_of(
    st.tuples(
        st.sampled_from([100, 102, 104]),
        st.builds(ValuesRequest, text, st.lists(values, max_size=3).map(tuple)),
    ),
    st.tuples(st.sampled_from([101, 105, 300, 301, 302, 401]), st.builds(HandleRequest, text)),
    st.tuples(
        st.just(103), st.builds(RemoveValuesRequest, text, st.lists(u32, max_size=5).map(tuple))
    ),
    st.tuples(st.just(200), st.builds(ChallengeAnswer, text, text, u32, blobs)),
    st.tuples(st.just(201), st.builds(VerifyChallengeRequest, text, u32, blobs, blobs, blobs)),
    st.tuples(
        st.just(400),
        st.one_of(
            st.builds(
                SessionSetupRequest,
                st.sampled_from([SessionMode.CIPHER_CLIENT, SessionMode.DIFFIE_HELLMAN]),
                u32,
                text,
                u32,
                blobs,
            ),
            st.builds(SessionSetupRequest, st.just(SessionMode.CIPHER_SERVER), u32, text, u32),
            st.builds(
                SessionSetupRequest,
                st.just(SessionMode.CIPHER_HANDLE),
                u32,
                text,
                u32,
                st.none(),
                text,
                u32,
            ),
        ),
    ),
    st.tuples(st.just(2000), st.builds(LoginRequest, text, text)),
    st.tuples(st.just(2001), st.builds(LoginIdSystemRequest, text, u32)),
)
reply_bodies = st.one_of(
    st.tuples(st.just(100), st.builds(HandleReply, text)),
    st.tuples(st.sampled_from([101, 102, 103, 104, 300, 301, 401, 2001]), st.just(EmptyReply())),
    st.tuples(
        st.sampled_from([105, 302]),
        st.builds(HandleListReply, st.lists(text, max_size=5).map(tuple)),
    ),
    st.tuples(st.just(201), st.builds(VerifyChallengeReply, st.booleans())),
    st.tuples(
        st.just(400), st.builds(SessionSetupReply, st.sampled_from(list(SessionMode)), blobs)
    ),
)


@SETTINGS
@given(request_bodies)
def test_generated_requests_roundtrip(item: tuple[int, Body]) -> None:
    opcode, body = item
    data = encode(message(opcode, body))
    assert decode(data).body == body
    assert encode(decode(data)) == data


@SETTINGS
@given(reply_bodies, st.booleans())
def test_generated_replies_roundtrip(item: tuple[int, Body], challenge: bool) -> None:
    opcode, body = item
    data = encode(message(opcode, body, ResponseCode.SUCCESS))
    assert decode(data).body == body and encode(decode(data)) == data
    if challenge:  # the same opcode challenged: a 402 body, whatever the opcode
        c = decode(encode(message(opcode, ChallengeReply(b"n" * 16), 402)))
        assert c.body == ChallengeReply(b"n" * 16)


@SETTINGS
@given(dh_keys)
def test_dh_keys_roundtrip(key: DHPublicKey) -> None:
    assert DHPublicKey.from_bytes(key.to_bytes()) == key


_OPCODES = sorted(set(REQUEST_BODIES) | set(SUCCESS_BODIES))


@SETTINGS
@given(st.sampled_from(_OPCODES), st.sampled_from([0, 1, 402]), st.binary(max_size=300))
def test_arbitrary_bodies_decode_or_fail_cleanly(opcode: int, rc: int, body: bytes) -> None:
    """Any bytes under any opcode: a body or a ProtocolError, and a body re-encodes to
    the same bytes (less the trailing bytes a resolution request may carry)."""
    data = raw_message(opcode, rc, body)
    try:
        msg = decode(data)
    except ProtocolError:
        return
    again = encode(msg)
    trailing = msg.body.trailing if isinstance(msg.body, ResolutionRequest) else 0
    assert len(again) == len(data) - trailing
    if not trailing:
        assert again == data

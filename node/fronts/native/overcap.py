"""Replies that must not go out over UDP as made: too large for ``udp_max_reply_bytes``,
or over the source network's reply rate (the ones that "slip" through). Either way the
client gets one small RC 2 (error) datagram saying to retry over TCP, which the
reference client does at once (docs/protocol.md, "Making clients use TCP for large
answers"). A spoofed source can thus be sent at most that much per request.

Built from the request's bytes alone (no I/O), and cheaply: under a flood every other
datagram over the rate may slip, so only the envelope and header are read (two struct
unpacks) and the body is only hashed when the request asks for its digest. The reply
is what ``protocol.negotiate.build_reply`` + ``protocol.message.encode`` make of the
decoded request (tests/node/fronts/native/test_overcap.py holds them equal): version
negotiated, session and request id and opcode echoed, AUTH and RECU/CACR/PUBL, the
recursion count, expiration = now + 12 h, the request digest when RRDG is asked for.
A datagram that is not a whole, plain request message gets nothing.
"""

from __future__ import annotations

import struct

from protocol.bodies import ErrorReply, encode_body
from protocol.codes import OpFlag, ResponseCode
from protocol.fragment import MAX_DATAGRAM_BYTES
from protocol.message import (
    ENVELOPE_BYTES,
    HEADER_BYTES,
    PROTOCOL_VERSION,
    EnvelopeFlag,
)
from protocol.negotiate import (
    ECHOED_FLAGS,
    digest_hash_type,
    expiration_for,
    negotiate,
    request_digest,
)

TOO_LARGE = "reply too large for UDP; retry over TCP"
RATE_LIMITED = "too many UDP replies to your network; retry over TCP"

_FRAGMENT_PAYLOAD = MAX_DATAGRAM_BYTES - ENVELOPE_BYTES
_ENVELOPE = struct.Struct(">BBBBIIII")
_HEADER = struct.Struct(">IIIHBBII")
_NOT_PLAIN = int(EnvelopeFlag.COMPRESSED | EnvelopeFlag.ENCRYPTED)
_ECHOED = int(ECHOED_FLAGS)
_AUTH = int(OpFlag.AUTH)
_RRDG = int(OpFlag.RRDG)
_ERROR = int(ResponseCode.ERROR)
_NO_CREDENTIAL = b"\x00\x00\x00\x00"
_BODIES: dict[str, bytes] = {}  # message -> encoded ErrorReply


def wire_bytes(message_bytes: int) -> int:
    """Bytes of all the datagrams one encoded message (``message_bytes``, envelope
    included) is sent in: every fragment repeats the 20-byte envelope."""
    payload = message_bytes - ENVELOPE_BYTES
    if payload <= _FRAGMENT_PAYLOAD:
        return message_bytes
    fragments = -(-payload // _FRAGMENT_PAYLOAD)
    return payload + fragments * ENVELOPE_BYTES


def largest_message(max_wire: int) -> int:
    """The largest encoded message whose datagrams total at most ``max_wire`` bytes
    (``wire_bytes`` grows with the message: a cap on the wire is one on the message)."""
    low, high = 0, max_wire  # wire_bytes(m) >= m: nothing larger than max_wire fits
    while low < high:
        middle = (low + high + 1) // 2
        if wire_bytes(middle) <= max_wire:
            low = middle
        else:
            high = middle - 1
    return low


def retry_over_tcp(
    request: bytes | bytearray, message: str, *, now: float, site_serial: int
) -> bytes | None:
    """The RC 2 datagram answering ``request`` (a whole request message) with
    ``message``; None when ``request`` is not a whole, plain request message.

    Never signed, even for a CERT request: it is an error carrying nothing of the
    record, and signing it on demand would hand an unauthenticated flood the node's
    most expensive operation. A reference client that wanted a certified reply
    discards it and, after 3 quick UDP re-sends, goes to TCP all the same
    (docs/protocol.md).
    """
    n = len(request)
    if n < ENVELOPE_BYTES + HEADER_BYTES:
        return None
    major, minor, byte2, s_minor, session, request_id, _, length = _ENVELOPE.unpack_from(request)
    opcode, rc, flags, _, recursion, _, _, body_length = _HEADER.unpack_from(
        request, ENVELOPE_BYTES
    )
    if (
        length != n - ENVELOPE_BYTES
        or byte2 & _NOT_PLAIN
        or rc != 0  # a reply, not a request
        or HEADER_BYTES + body_length > length
    ):
        return None
    s_major = byte2 & 0x03
    version = negotiate((major, minor), (s_major, s_minor) if s_major else None)
    reply_flags = _AUTH | (flags & _ECHOED)
    digest = b""
    if flags & _RRDG:
        hash_type = digest_hash_type(version)
        if hash_type is not None:
            reply_flags |= _RRDG
            received = request[ENVELOPE_BYTES : ENVELOPE_BYTES + HEADER_BYTES + body_length]
            digest = bytes((hash_type,)) + request_digest(received, hash_type)
    body = _BODIES.get(message)
    if body is None:
        body = _BODIES[message] = encode_body(ErrorReply(message))
    body_bytes = len(digest) + len(body)
    envelope = _ENVELOPE.pack(
        *version,
        PROTOCOL_VERSION[0],
        PROTOCOL_VERSION[1],
        session,
        request_id,
        0,
        HEADER_BYTES + body_bytes + len(_NO_CREDENTIAL),
    )
    header = _HEADER.pack(
        opcode, _ERROR, reply_flags, site_serial, recursion, 0, expiration_for(now), body_bytes
    )
    return b"".join((envelope, header, digest, body, _NO_CREDENTIAL))

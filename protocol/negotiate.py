"""What a reply derives from its request: version, request digest, flags, and the bytes
a signature covers. Everything follows the reference (CNRI Handle.Net 9) and the
golden vectors.

Version: a reply is written at the client's *suggested* version (envelope bytes 2-3),
capped at the version we speak (2.11); an RFC 3652-style envelope with no suggestion
(bytes 2-3 = 00 00) is answered at its own version. Replies always suggest 2.11.
(``AbstractResponse(req, rc)`` takes ``req.suggest*ProtocolVersion`` and
``setSupportedProtocolVersion()`` caps it; ``Encoder.decodeEnvelope`` substitutes the
envelope version when the suggested major is 0. Golden #17-#20.)

Request digest: a hash of the request's header + body exactly as received: no
envelope, no credential (``takeDigestOfRequest(req)`` hashes
``req.getEncodedMessageBody()``, which ``Encoder.decodeMessage`` fills with the
``MESSAGE_HEADER_SIZE + bodyLen`` bytes after the envelope). The hash follows the
*reply* version: SHA-256 from 2.7, SHA-1 from 2.1. Below 2.1 the reference's MD5
layout disagrees between its encoder and decoder, so we send no digest there.
"""

from __future__ import annotations

import hashlib
import struct

from .bodies import Body, HashType, RawBody, RequestDigest
from .codes import OpFlag
from .errors import LocalProtocolError
from .message import (
    NO_FLAGS,
    PROTOCOL_VERSION,
    Envelope,
    Header,
    Message,
    Version,
    encode,
    header_and_body,
)

# The reference stamps every message it builds with its clock + 12 h
# (``AbstractMessage()``); it does not echo the request's expiration.
REPLY_LIFETIME_S = 43_200
# Reply op flags: AUTH always set; these echoed from the request (docs/protocol.md; goldens:
# 0x19000000 -> 0x99000000).
ECHOED_FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL

_HASH_NAMES = {
    HashType.MD5_OLD_FORMAT: "md5",
    HashType.MD5: "md5",
    HashType.SHA1: "sha1",
    HashType.SHA256: "sha256",
}
_IDS = struct.Struct(">III")


def at_least(version: Version, wanted: Version) -> bool:
    """``version >= wanted`` with the reference's quirk: major 5 was sent by very old
    2.0 clients by mistake, so 5.x only compares as recent against another 5.x
    (``AbstractMessage.hasEqualOrGreaterVersion``)."""
    if version[0] == 5:
        return wanted[0] == 5 and version[1] >= wanted[1]
    if wanted[0] == 5:
        return True
    return version >= wanted


def negotiate(version: Version, suggested: Version | None) -> Version:
    """The version to reply at, given the request's envelope version and suggestion."""
    offered = suggested if suggested is not None else version
    return PROTOCOL_VERSION if at_least(offered, PROTOCOL_VERSION) else offered


def reply_version(envelope: Envelope) -> Version:
    """The client's suggestion (or its envelope version without one), capped at 2.11."""
    return negotiate(envelope.version, envelope.suggested_version)


def digest_hash_type(reply_version: Version) -> HashType | None:
    """The request-digest hash for a reply at this version; None below 2.1."""
    if at_least(reply_version, (2, 7)):
        return HashType.SHA256
    if at_least(reply_version, (2, 1)):
        return HashType.SHA1
    return None


def request_digest(request_bytes: bytes | bytearray | memoryview, hash_type: HashType) -> bytes:
    """Digest of a request's header + body bytes (see the module docstring)."""
    return hashlib.new(_HASH_NAMES[hash_type], request_bytes).digest()


def digest_of(request: Message, hash_type: HashType) -> RequestDigest:
    return RequestDigest(hash_type, request_digest(header_and_body(request), hash_type))


def expiration_for(now: float) -> int:
    return (int(now) + REPLY_LIFETIME_S) & 0xFFFFFFFF


def build_reply(
    request: Message,
    response_code: int,
    body: Body | bytes,
    *,
    now: float,
    site_serial: int,
    extra_flags: OpFlag = NO_FLAGS,
) -> Message:
    """A reply following the reference's conventions: version negotiated, session and
    request id echoed, AUTH set, RECU/CACR/PUBL echoed, recursion count echoed,
    expiration = now + 12 h, the request digest attached when RRDG is asked for (by
    the request, or via ``extra_flags`` as the reference does for 402 challenges).
    ``body`` may be pre-encoded bytes (a cached body)."""
    major, minor = reply_version(request.envelope)
    env = Envelope(
        major, minor, session_id=request.envelope.session_id, request_id=request.envelope.request_id
    )
    flags = OpFlag.AUTH | (request.header.flags & ECHOED_FLAGS) | extra_flags
    digest = None
    if OpFlag.RRDG in (request.header.flags | extra_flags):
        hash_type = digest_hash_type((major, minor))
        if hash_type is None:
            flags &= ~OpFlag.RRDG
        else:
            flags |= OpFlag.RRDG
            digest = digest_of(request, hash_type)
    header = Header(
        request.header.opcode,
        response_code,
        flags,
        site_serial,
        request.header.recursion,
        expiration_for(now),
    )
    return Message(env, header, RawBody(body) if isinstance(body, bytes) else body, digest)


def encode_reply(
    request: Message,
    response_code: int,
    body: Body | bytes,
    *,
    now: float,
    site_serial: int,
    extra_flags: OpFlag = NO_FLAGS,
) -> bytes:
    reply = build_reply(
        request, response_code, body, now=now, site_serial=site_serial, extra_flags=extra_flags
    )
    return encode(reply)


def signed_bytes(message: Message, *, session_counter: int | None = None) -> bytes:
    """The bytes an HS_SIGNED signature covers (and, from 2.7, what HS_MAC MACs).

    From 2.7: major, minor, [suggested major, minor from 2.8], u32 session id,
    u32 request id, u32 session counter, then header + body (no envelope, no
    credential). Below 2.6: header + body only. At 2.6 the reference overwrote its own
    fields (``offset = writeInt(...)``, "painful bug"): we reproduce its bytes. The
    session counter defaults to the credential's signer index, where the reference
    carries it. (``AbstractMessage.signMessage(Signature)`` / ``verifyMessage``.)
    HS_MAC at 2.5/2.6 hashes its own buffer instead (``session.mac_message``).
    """
    env = message.envelope
    version = env.version
    hb = header_and_body(message)
    if not at_least(version, (2, 6)):
        return hb
    if session_counter is None:
        session_counter = message.credential.signer_index if message.credential else 0
    try:
        ids = _IDS.pack(env.session_id, env.request_id, session_counter)
    except struct.error as e:
        raise LocalProtocolError(f"session fields out of range: {e}") from None
    if at_least(version, (2, 7)):
        prefix = bytes(version)
        if at_least(version, (2, 8)):
            prefix += bytes(env.suggested_version or version)
        return prefix + ids + hb
    buggy = bytearray(2 + 12)
    buggy[0:2] = bytes(version)
    buggy[2:6] = ids[0:4]  # session id
    buggy[4:8] = ids[4:8]  # request id, written over it...
    buggy[4:8] = ids[8:12]  # ...and the session counter over that
    return bytes(buggy) + hb

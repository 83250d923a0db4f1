"""Handle protocol messages (RFC 3652 §2): envelope, header, body, credential.

message  = envelope (20) + header (24) + body + u32 credential length + credential
envelope = u8 major, u8 minor, u8 flags | suggested major (low 2 bits), u8 suggested
           minor, u32 session id, u32 request id, u32 sequence, u32 message length
header   = u32 opcode, u32 response code, u32 op flags, u16 site-info serial,
           u8 recursion count, u8 reserved, u32 expiration, u32 body length

``decode`` takes one whole message (a TCP frame, a single datagram or a reassembled
one) and raises only ``ProtocolError``; once the envelope is readable, failures are
``MalformedMessage`` carrying what was parsed, so the node can answer with the request
id echoed. ``encode`` re-encodes every field; ``encode_header`` and ``Message.body_bytes``
stay separate so reply bodies can be cached and only the envelope/header rebuilt.
Reply conventions, version negotiation and signed bytes are in ``negotiate``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field, replace

from .bodies import (
    REQUEST_BODIES,
    SUCCESS_BODIES,
    Body,
    BodyReader,
    ChallengeReply,
    ErrorReply,
    RawBody,
    ReferralReply,
    RequestDigest,
    encode_body,
)
from .codes import OpCode, OpFlag, ResponseCode
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .wirebase import Reader, Writer

Version = tuple[int, int]
PROTOCOL_VERSION: Version = (2, 11)  # what we speak, and suggest in every reply

ENVELOPE_BYTES = 20
HEADER_BYTES = 24
MAX_MESSAGE_BYTES = 262_144  # header + body + credential (RFC 3652 §2.2.1)
# Byte offsets in an encoded message, for patching cached replies in place.
SESSION_ID_OFFSET = 4
REQUEST_ID_OFFSET = 8
SEQUENCE_OFFSET = 12
LENGTH_OFFSET = 16
EXPIRATION_OFFSET = ENVELOPE_BYTES + 16

_ENVELOPE = struct.Struct(">BBBBIIII")
_HEADER = struct.Struct(">IIIHBBII")


class EnvelopeFlag(enum.IntFlag):
    COMPRESSED = 0x80
    ENCRYPTED = 0x40
    TRUNCATED = 0x20


NO_ENVELOPE_FLAGS = EnvelopeFlag(0)
NO_FLAGS = OpFlag(0)


class MalformedMessage(RemoteProtocolError):
    """Malformed message."""

    def __init__(
        self,
        message: str | None = None,
        *,
        envelope: Envelope,
        header: Header | None = None,
        response_code: ResponseCode | None = None,
    ):
        super().__init__(message, response_code=response_code)
        self.envelope = envelope
        self.header = header

    @property
    def request_id(self) -> int:
        return self.envelope.request_id


@dataclass(frozen=True, slots=True)
class Envelope:
    major: int = PROTOCOL_VERSION[0]
    minor: int = PROTOCOL_VERSION[1]
    flags: EnvelopeFlag = NO_ENVELOPE_FLAGS  # byte 2 without its low 2 bits
    suggested_major: int = PROTOCOL_VERSION[0]  # 0: no suggestion (RFC 3652 envelope)
    suggested_minor: int = PROTOCOL_VERSION[1]
    session_id: int = 0
    request_id: int = 0
    sequence: int = 0  # UDP fragment number
    length: int = 0  # header + body + credential; ``encode`` computes it

    @property
    def version(self) -> Version:
        return (self.major, self.minor)

    @property
    def suggested_version(self) -> Version | None:
        """None when bytes 2-3 carry no suggestion (``Encoder.decodeEnvelope``)."""
        if self.suggested_major == 0:
            return None
        return (self.suggested_major, self.suggested_minor)

    @classmethod
    def from_wire(cls, data: bytes | bytearray | memoryview) -> Envelope:
        if len(data) < ENVELOPE_BYTES:
            raise RemoteProtocolError(f"{len(data)} bytes are too short for a message envelope")
        major, minor, flags, s_minor, session, request, seq, length = _ENVELOPE.unpack_from(data)
        return cls(
            major,
            minor,
            EnvelopeFlag(flags & 0xFC),
            flags & 0x03,
            s_minor,
            session,
            request,
            seq,
            length,
        )

    def to_wire(self) -> bytes:
        if not 0 <= self.suggested_major <= 3 or int(self.flags) & 0x03:
            raise LocalProtocolError(
                "suggested major version must fit the 2 low bits of envelope byte 2"
            )
        return _pack(
            _ENVELOPE,
            "envelope",
            self.major,
            self.minor,
            int(self.flags) | self.suggested_major,
            self.suggested_minor,
            self.session_id,
            self.request_id,
            self.sequence,
            self.length,
        )


@dataclass(frozen=True, slots=True)
class Header:
    opcode: int  # an OpCode when known
    response_code: int = ResponseCode.RESERVED  # 0 in requests
    flags: OpFlag = NO_FLAGS
    site_serial: int = 0xFFFF  # 0xFFFF: unknown
    recursion: int = 0
    expiration: int = 0  # unix seconds
    reserved: int = 0

    @property
    def is_request(self) -> bool:
        return self.response_code == ResponseCode.RESERVED


def encode_header(header: Header, body_length: int) -> bytes:
    h = header
    return _pack(
        _HEADER,
        "header",
        h.opcode,
        h.response_code,
        int(h.flags),
        h.site_serial,
        h.recursion,
        h.reserved,
        h.expiration,
        body_length,
    )


def _read_header(r: Reader) -> tuple[Header, int]:
    opcode, rc, flags, serial, recursion, reserved, expiration, body_length = _HEADER.unpack(
        r.raw(HEADER_BYTES, "message header")
    )
    header = Header(
        _known(OpCode, opcode),
        _known(ResponseCode, rc),
        OpFlag(flags),
        serial,
        recursion,
        expiration,
        reserved,
    )
    return header, body_length


@dataclass(frozen=True, slots=True)
class Credential:
    """The credential section (RFC 3652 §2.2.4), raw: signing and verifying live elsewhere.

    u8 version, u8 reserved, u16 options, signer handle + u32 index (the reference puts
    its session counter there), type ("HS_SIGNED" / "HS_MAC"), u32 length + signature
    section; for both types the section is digest algorithm name + u32 length + signature.
    """

    type: str
    section: bytes
    signer_handle: str = ""
    signer_index: int = 0
    version: int = 0
    reserved: int = 0
    options: int = 0

    @classmethod
    def make(
        cls,
        type: str,
        digest_algorithm: str,
        signature: bytes,
        *,
        signer_handle: str = "",
        signer_index: int = 0,
    ) -> Credential:
        w = Writer()
        w.utf8(digest_algorithm)
        w.blob(signature)
        return cls(type, w.getvalue(), signer_handle, signer_index)

    def _section(self) -> tuple[str, bytes]:
        r = Reader(self.section)
        alg, sig = r.utf8("digest algorithm"), r.blob("signature")
        if not r.at_end():
            raise RemoteProtocolError(f"{r.remaining()} trailing bytes in the signature section")
        return alg, sig

    @property
    def digest_algorithm(self) -> str:
        return self._section()[0]

    @property
    def signature(self) -> bytes:
        return self._section()[1]

    @classmethod
    def read(cls, r: Reader) -> Credential:
        version, reserved, options = (
            r.u8("credential version"),
            r.u8("credential reserved"),
            r.u16("options"),
        )
        signer, index = r.utf8("signer handle"), r.u32("signer index")
        ctype = r.utf8("credential type")
        return cls(ctype, r.blob("signature section"), signer, index, version, reserved, options)

    def write(self, w: Writer) -> None:
        w.u8(self.version)
        w.u8(self.reserved)
        w.u16(self.options)
        w.utf8(self.signer_handle)
        w.u32(self.signer_index)
        w.utf8(self.type)
        w.blob(self.section)


@dataclass(frozen=True, slots=True)
class Message:
    envelope: Envelope
    header: Header
    body: Body
    digest: RequestDigest | None = None  # replies with RRDG start their body with it
    credential: Credential | None = None
    # Header + body exactly as received (the request digest and signatures cover these
    # bytes); empty for messages built locally. Not an init field, so
    # ``dataclasses.replace`` never carries stale bytes over.
    received: bytes = field(default=b"", init=False, repr=False, compare=False)

    @property
    def request_id(self) -> int:
        return self.envelope.request_id

    @property
    def is_request(self) -> bool:
        return self.header.is_request

    @property
    def body_bytes(self) -> bytes:
        """The encoded body without the request digest: the cacheable part of a reply."""
        return encode_body(self.body)


def header_and_body(message: Message) -> bytes:
    """Header + [digest] + body: as received if decoded, else encoded now."""
    if message.received:
        return message.received
    w = Writer()
    if message.digest is not None:
        message.digest.write(w)
    body = w.getvalue() + encode_body(message.body)
    return encode_header(message.header, len(body)) + body


def encode(message: Message) -> bytes:
    """The whole message, envelope included (a TCP frame; see ``fragment`` for UDP).
    The envelope's length is computed; its other fields are written as given."""
    if message.is_request:
        if message.digest is not None:
            raise LocalProtocolError("a request carries no request digest")
    elif (OpFlag.RRDG in message.header.flags) != (message.digest is not None):
        raise LocalProtocolError("a reply carries a request digest exactly when RRDG is set")
    w = Writer()
    if message.digest is not None:
        message.digest.write(w)
    message.body.write(w)
    body = w.getvalue()
    cred = b""
    if message.credential is not None:
        cw = Writer()
        message.credential.write(cw)
        cred = cw.getvalue()
    length = HEADER_BYTES + len(body) + 4 + len(cred)
    if length > MAX_MESSAGE_BYTES:
        raise LocalProtocolError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")
    env = replace(message.envelope, length=length)
    return b"".join(
        (env.to_wire(), encode_header(message.header, len(body)), body, _U32.pack(len(cred)), cred)
    )


def peek_request_id(data: bytes | bytearray | memoryview) -> int | None:
    """The request id of anything with a whole envelope, else None (stay silent)."""
    if len(data) < ENVELOPE_BYTES:
        return None
    return int(_U32.unpack_from(data, REQUEST_ID_OFFSET)[0])


def decode(data: bytes | bytearray | memoryview) -> Message:
    env = Envelope.from_wire(data)  # too short: plain RemoteProtocolError, no request id
    header: Header | None = None
    try:
        if env.length > MAX_MESSAGE_BYTES:
            raise RemoteProtocolError(f"message length {env.length} exceeds {MAX_MESSAGE_BYTES}")
        if env.flags & (EnvelopeFlag.COMPRESSED | EnvelopeFlag.ENCRYPTED):
            raise RemoteProtocolError(
                "compressed or encrypted messages are not supported",
                response_code=ResponseCode.OPERATION_NOT_SUPPORTED,
            )
        if len(data) - ENVELOPE_BYTES != env.length:
            raise RemoteProtocolError(
                f"envelope announces {env.length} message bytes, {len(data) - ENVELOPE_BYTES} present"
            )
        r = Reader(data, ENVELOPE_BYTES)
        header, body_length = _read_header(r)
        with r.restrict(body_length, "message body") as br:
            digest = None
            if not header.is_request and OpFlag.RRDG in header.flags:
                digest = RequestDigest.read(br)
            body = _body_reader(header)(br)
        received = bytes(data[ENVELOPE_BYTES : ENVELOPE_BYTES + HEADER_BYTES + body_length])
        credential = None
        # The reference reads a credential only "if there is room for one"; accept a
        # message that ends right after its body.
        if not r.at_end():
            cred_length = r.u32("credential length")
            if cred_length:
                with r.restrict(cred_length, "credential") as cr:
                    credential = Credential.read(cr)
            if not r.at_end():
                raise RemoteProtocolError(f"{r.remaining()} trailing bytes after the credential")
    except MalformedMessage:
        raise
    except ProtocolError as e:
        raise MalformedMessage(
            e.message, envelope=env, header=header, response_code=e.response_code
        ) from e
    msg = Message(env, header, body, digest, credential)
    object.__setattr__(msg, "received", received)
    return msg


def _body_reader(header: Header) -> BodyReader:
    rc = header.response_code
    if rc == ResponseCode.RESERVED:
        return REQUEST_BODIES.get(header.opcode, RawBody.read)
    if rc == ResponseCode.SUCCESS:
        return SUCCESS_BODIES.get(header.opcode, RawBody.read)
    if rc in (ResponseCode.SERVICE_REFERRAL, ResponseCode.PREFIX_REFERRAL):
        return ReferralReply.read
    if rc == ResponseCode.AUTHENTICATION_NEEDED:
        return ChallengeReply.read
    return ErrorReply.read


# --- helpers --------------------------------------------------------------------------

_U32 = struct.Struct(">I")


def _pack(st: struct.Struct, what: str, *values: int) -> bytes:
    try:
        return st.pack(*values)
    except struct.error as e:
        raise LocalProtocolError(f"{what} field out of range: {e}") from None


def _known(enum_type: type[OpCode | ResponseCode], value: int) -> int:
    try:
        return enum_type(value)
    except ValueError:
        return value

"""Message bodies (RFC 3652 §3, as the reference encodes them at 2.10-2.11).

Each body is a frozen dataclass with ``read(r)`` over a reader restricted to the body
and ``write(w)``. The request digest that RRDG replies start with (``RequestDigest``, defined here)
is not part of them: it belongs to the message (``message.Message.digest``) so that an
encoded reply body can be cached and reused across requests.

The bodies of the admin opcodes (``admin``), of challenge answers (``authbodies``), of
SESSION_SETUP (``sessionbodies``) and of the IDIS logins (``idis``) live in their own
modules and are registered in the dispatch tables here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from .admin import (
    EmptyReply,
    HandleListReply,
    HandleReply,
    HandleRequest,
    RemoveValuesRequest,
    ValuesRequest,
)
from .authbodies import ChallengeAnswer, VerifyChallengeReply, VerifyChallengeRequest
from .codes import OpCode
from .errors import LocalProtocolError, RemoteProtocolError
from .idis import LoginIdSystemRequest, LoginRequest
from .sessionbodies import SessionSetupReply, SessionSetupRequest
from .structured import SiteInfo
from .valuecodec import read_values, write_values
from .values import MAX_REQUESTED_INDEXES, MAX_REQUESTED_TYPES, HandleValue
from .wirebase import Reader, Writer, check_u32s

# The handle the reference client puts in a GET_SITE_INFO request
# (``Common.BLANK_HANDLE``; golden #13: body 00000001 2f).
BLANK_HANDLE = "/"


class HashType(enum.IntEnum):
    """Request digest hash codes (``Common.HASH_CODE_*``)."""

    MD5_OLD_FORMAT = 0  # pre-2.1: u32 length + MD5 digest, no type byte
    MD5 = 1
    SHA1 = 2
    SHA256 = 3


DIGEST_BYTES = {HashType.MD5: 16, HashType.SHA1: 20, HashType.SHA256: 32}


@dataclass(frozen=True, slots=True)
class RequestDigest:
    """What a reply with RRDG starts its body with: u8 hash type + digest."""

    hash_type: HashType
    digest: bytes

    def write(self, w: Writer) -> None:
        if self.hash_type is HashType.MD5_OLD_FORMAT:
            w.blob(self.digest)  # the length's high byte (0) doubles as the type
            return
        if len(self.digest) != DIGEST_BYTES[self.hash_type]:
            n = DIGEST_BYTES[self.hash_type]
            raise LocalProtocolError(f"{self.hash_type.name} digest must be {n} bytes")
        w.u8(self.hash_type)
        w.raw(self.digest)

    @classmethod
    def read(cls, r: Reader) -> RequestDigest:
        code = r.u8("request digest hash type")
        if code == HashType.MD5_OLD_FORMAT:
            # As the reference decoder does: the type byte is the top of a u32 length.
            length = (r.u8("digest length") << 16) | r.u16("digest length")
            return cls(HashType.MD5_OLD_FORMAT, r.raw(length, "request digest"))
        try:
            hash_type = HashType(code)
        except ValueError:
            raise RemoteProtocolError(f"unknown request digest hash type {code}") from None
        return cls(hash_type, r.raw(DIGEST_BYTES[hash_type], "request digest"))


@dataclass(frozen=True, slots=True)
class ResolutionRequest:
    """handle, u32 count + u32 indexes, u32 count + type strings; empty lists mean all.

    Bytes after a complete body are consumed and counted in ``trailing``, never written:
    Teleinfo's id-pointer-sdk appends a 4-byte field after the type list and the
    reference ignores it (docs/authentication.md, "IDIS SDK dialect").

    The lists are bounded (``MAX_REQUESTED_INDEXES``, ``MAX_REQUESTED_TYPES``): a
    256 KB message could otherwise carry 52,000 types and cost the node values x types
    comparisons per request; past the bound the request is malformed (RC 4).
    """

    handle: str
    indexes: tuple[int, ...] = ()
    types: tuple[str, ...] = ()
    trailing: int = field(default=0, compare=False)

    @classmethod
    def read(cls, r: Reader) -> ResolutionRequest:
        handle = r.utf8("handle")
        n = r.count("indexes", 4, MAX_REQUESTED_INDEXES)
        indexes = tuple(r.u32("index") for _ in range(n))
        n = r.count("types", 4, MAX_REQUESTED_TYPES)
        types = tuple(r.utf8("type") for _ in range(n))
        trailing = r.remaining()
        r.raw(trailing, "trailing bytes")
        return cls(handle, indexes, types, trailing)

    def write(self, w: Writer) -> None:
        check_u32s("requested index", self.indexes)
        for what, items, most in (
            ("indexes", self.indexes, MAX_REQUESTED_INDEXES),
            ("types", self.types, MAX_REQUESTED_TYPES),
        ):
            if len(items) > most:
                raise LocalProtocolError(
                    f"{len(items)} requested {what} exceed the limit of {most}"
                )
        w.utf8(self.handle)
        w.u32(len(self.indexes))
        for i in self.indexes:
            w.u32(i)
        w.u32(len(self.types))
        for t in self.types:
            w.utf8(t)


@dataclass(frozen=True, slots=True)
class ResolutionReply:
    """handle (echoed as the client sent it), u32 value count, values."""

    handle: str
    values: tuple[HandleValue, ...]

    @classmethod
    def read(cls, r: Reader) -> ResolutionReply:
        return cls(r.utf8("handle"), read_values(r))

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)
        write_values(w, self.values)


def resolution_reply_body(handle: str, encoded_values: bytes) -> bytes:
    """A resolution reply body from values already in wire form (u32 count + values,
    ``valuecodec.encode_values``, the form the registry stores): no re-encoding."""
    w = Writer()
    w.utf8(handle)
    w.raw(encoded_values)
    return w.getvalue()


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """UTF8-string message, possibly empty (the reference sends empty ones: golden #6)."""

    message: str = ""

    @classmethod
    def read(cls, r: Reader) -> ErrorReply:
        return cls(r.utf8("error message"))

    def write(self, w: Writer) -> None:
        w.utf8(self.message)


@dataclass(frozen=True, slots=True)
class ReferralReply:
    """RC 302/303: handle (may be empty), then optionally u32 count + values.

    ``values is None`` means the count is absent (the reference decoder only reads it
    when bytes remain: ``Encoder.decodeServiceReferralResponse``).
    """

    handle: str = ""
    values: tuple[HandleValue, ...] | None = None

    @classmethod
    def read(cls, r: Reader) -> ReferralReply:
        handle = r.utf8("referral handle")
        values = None if r.at_end() else read_values(r)
        return cls(handle, values)

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)
        if self.values is not None:
            write_values(w, self.values)


@dataclass(frozen=True, slots=True)
class ChallengeReply:
    """RC 402: u32 length + nonce (RFC 3652 §3.5.1; the digest rides in the message).

    Replies below 2.1 have RRDG clear and carry the request's MD5 digest here instead,
    as a second STR after the nonce (admin capture #4); ``challenge.challenge_reply``
    chooses the form.
    """

    nonce: bytes
    legacy_digest: bytes | None = None

    @classmethod
    def read(cls, r: Reader) -> ChallengeReply:
        nonce = r.blob("challenge nonce")
        legacy = None if r.at_end() else r.blob("challenge request digest")
        return cls(nonce, legacy)

    def write(self, w: Writer) -> None:
        w.blob(self.nonce)
        if self.legacy_digest is not None:
            w.blob(self.legacy_digest)


@dataclass(frozen=True, slots=True)
class SiteInfoRequest:
    """GET_SITE_INFO carries a handle like the reference's generic requests; its
    client sends "/" (``Common.BLANK_HANDLE``)."""

    handle: str = BLANK_HANDLE

    @classmethod
    def read(cls, r: Reader) -> SiteInfoRequest:
        return cls(r.utf8("handle"))

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)


@dataclass(frozen=True, slots=True)
class SiteInfoReply:
    """The HS_SITE encoding of the answering site, and nothing else."""

    site: SiteInfo

    @classmethod
    def read(cls, r: Reader) -> SiteInfoReply:
        return cls(SiteInfo.from_wire(r.raw(r.remaining(), "site info")))

    def write(self, w: Writer) -> None:
        w.raw(self.site.to_wire())


@dataclass(frozen=True, slots=True)
class RawBody:
    """A body we do not interpret (unsupported opcode, or a pre-encoded cached body)."""

    data: bytes = b""

    @classmethod
    def read(cls, r: Reader) -> RawBody:
        return cls(r.raw(r.remaining(), "body"))

    def write(self, w: Writer) -> None:
        w.raw(self.data)


Body = (
    ResolutionRequest
    | ResolutionReply
    | ErrorReply
    | ReferralReply
    | ChallengeReply
    | SiteInfoRequest
    | SiteInfoReply
    | ValuesRequest
    | HandleRequest
    | RemoveValuesRequest
    | HandleReply
    | EmptyReply
    | HandleListReply
    | ChallengeAnswer
    | VerifyChallengeRequest
    | VerifyChallengeReply
    | SessionSetupRequest
    | SessionSetupReply
    | LoginIdSystemRequest
    | LoginRequest
    | RawBody
)
BodyReader = Callable[[Reader], Body]

# Dispatch tables: request bodies by opcode, success-reply bodies by opcode. Other
# replies are chosen by response code in ``message``; anything unlisted is a RawBody.
# The success reply to a challenge answer keeps the original request's opcode, so it is
# found here too (docs/authentication.md, "Answer (opcode 200)").
REQUEST_BODIES: dict[int, BodyReader] = {
    OpCode.RESOLUTION: ResolutionRequest.read,
    OpCode.GET_SITE_INFO: SiteInfoRequest.read,
    OpCode.CREATE_HANDLE: ValuesRequest.read,
    OpCode.DELETE_HANDLE: HandleRequest.read,
    OpCode.ADD_VALUE: ValuesRequest.read,
    OpCode.REMOVE_VALUE: RemoveValuesRequest.read,
    OpCode.MODIFY_VALUE: ValuesRequest.read,
    OpCode.LIST_HANDLES: HandleRequest.read,
    OpCode.CHALLENGE_RESPONSE: ChallengeAnswer.read,
    OpCode.VERIFY_RESPONSE: VerifyChallengeRequest.read,
    OpCode.HOME_NA: HandleRequest.read,
    OpCode.UNHOME_NA: HandleRequest.read,
    OpCode.LIST_HOMED_NAS: HandleRequest.read,
    OpCode.SESSION_SETUP: SessionSetupRequest.read,
    OpCode.SESSION_TERMINATE: HandleRequest.read,
    OpCode.LOGIN: LoginRequest.read,
    OpCode.LOGIN_ID_SYSTEM: LoginIdSystemRequest.read,
}
SUCCESS_BODIES: dict[int, BodyReader] = {
    OpCode.RESOLUTION: ResolutionReply.read,
    OpCode.GET_SITE_INFO: SiteInfoReply.read,
    OpCode.CREATE_HANDLE: HandleReply.read,
    OpCode.DELETE_HANDLE: EmptyReply.read,
    OpCode.ADD_VALUE: EmptyReply.read,
    OpCode.REMOVE_VALUE: EmptyReply.read,
    OpCode.MODIFY_VALUE: EmptyReply.read,
    OpCode.LIST_HANDLES: HandleListReply.read,
    OpCode.VERIFY_RESPONSE: VerifyChallengeReply.read,
    OpCode.HOME_NA: EmptyReply.read,
    OpCode.UNHOME_NA: EmptyReply.read,
    OpCode.LIST_HOMED_NAS: HandleListReply.read,
    OpCode.SESSION_SETUP: SessionSetupReply.read,
    OpCode.SESSION_TERMINATE: EmptyReply.read,
    OpCode.LOGIN_ID_SYSTEM: EmptyReply.read,
}


def encode_body(body: Body) -> bytes:
    w = Writer()
    body.write(w)
    return w.getvalue()

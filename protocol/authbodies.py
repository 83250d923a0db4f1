"""Bodies of the challenge answer (opcode 200) and of its verification by the identity's
home server (opcode 201), docs/authentication.md "Answer (opcode 200)".

  200 request:  STR auth type ("HS_SECKEY" | "HS_PUBKEY"), STR identity handle,
                INT index (0 = any), STR signed response
  201 request:  STR handle, INT index, STR nonce, STR original digest, STR response
  201 success:  one byte, 1 valid / 0 not (after the request digest when RRDG is set)

The signed response itself (the secret-key forms, the public-key signature) is read
and checked in ``challenge``; here it stays bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemoteProtocolError
from .wirebase import Reader, Writer, check_u32s

HS_SECKEY = "HS_SECKEY"
HS_PUBKEY = "HS_PUBKEY"


@dataclass(frozen=True, slots=True)
class ChallengeAnswer:
    auth_type: str
    handle: str
    index: int
    response: bytes

    @classmethod
    def read(cls, r: Reader) -> ChallengeAnswer:
        return cls(
            r.utf8("auth type"),
            r.utf8("identity handle"),
            r.u32("identity index"),
            r.blob("signed response"),
        )

    def write(self, w: Writer) -> None:
        check_u32s("identity index", (self.index,))
        w.utf8(self.auth_type)
        w.utf8(self.handle)
        w.u32(self.index)
        w.blob(self.response)


@dataclass(frozen=True, slots=True)
class VerifyChallengeRequest:
    handle: str
    index: int
    nonce: bytes
    digest: bytes
    response: bytes

    @classmethod
    def read(cls, r: Reader) -> VerifyChallengeRequest:
        return cls(
            r.utf8("identity handle"),
            r.u32("identity index"),
            r.blob("challenge nonce"),
            r.blob("challenge digest"),
            r.blob("signed response"),
        )

    def write(self, w: Writer) -> None:
        check_u32s("identity index", (self.index,))
        w.utf8(self.handle)
        w.u32(self.index)
        w.blob(self.nonce)
        w.blob(self.digest)
        w.blob(self.response)


@dataclass(frozen=True, slots=True)
class VerifyChallengeReply:
    valid: bool

    @classmethod
    def read(cls, r: Reader) -> VerifyChallengeReply:
        flag = r.u8("verification result")
        # Only the two values the reference writes: anything else is not an answer we
        # could trust either way.
        if flag not in (0, 1):
            raise RemoteProtocolError(f"verification result byte is {flag}, not 0 or 1")
        return cls(flag == 1)

    def write(self, w: Writer) -> None:
        w.u8(1 if self.valid else 0)

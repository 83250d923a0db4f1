"""Login bodies of the IDIS SDK dialect (docs/authentication.md, "IDIS SDK dialect").

LOGIN_ID_SYSTEM (2001): STR user handle, INT index, and no value count. The server
answers with a 402 challenge carrying opcode 2001, the client answers with opcode 200,
and success is RC 1 with opcode 2001 and an empty body (the SDK rejects any other
opcode on success).

LOGIN (2000) reuses the resolution-request layout: STR user name, INT 0 (no indexes),
INT 1 (one "type"), STR password; the password sits in the type-list slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemoteProtocolError
from .wirebase import Reader, Writer, check_u32s


@dataclass(frozen=True, slots=True)
class LoginIdSystemRequest:
    handle: str
    index: int

    @classmethod
    def read(cls, r: Reader) -> LoginIdSystemRequest:
        return cls(r.utf8("login handle"), r.u32("login index"))

    def write(self, w: Writer) -> None:
        check_u32s("login index", (self.index,))
        w.utf8(self.handle)
        w.u32(self.index)


@dataclass(frozen=True, slots=True)
class LoginRequest:
    user: str
    password: str

    @classmethod
    def read(cls, r: Reader) -> LoginRequest:
        user = r.utf8("login user")
        # The two counts of the resolution layout are fixed: anything else is not a
        # login the SDK could have sent.
        indexes = r.u32("login index count")
        if indexes != 0:
            raise RemoteProtocolError(f"login index count is {indexes}, not 0")
        types = r.u32("login password count")
        if types != 1:
            raise RemoteProtocolError(f"login password count is {types}, not 1")
        return cls(user, r.utf8("login password"))

    def write(self, w: Writer) -> None:
        w.utf8(self.user)
        w.u32(0)
        w.u32(1)
        w.utf8(self.password)

    def __repr__(self) -> str:
        # Keep the password out of logs and tracebacks.
        return f"LoginRequest(user={self.user!r}, password=<{len(self.password)} chars>)"

"""Bodies of SESSION_SETUP (opcode 400) and the Diffie-Hellman key they carry
(docs/authentication.md, "Sessions").

  request: INT2 mode, INT timeout (s), STR identity handle, INT identity index, then
           modes 1 and 4: STR public key; mode 3: STR handle + INT index; then 2 zero bytes
  reply:   [request digest], INT2 mode, STR data, then 2 zero bytes

The 2 trailing zero bytes are the reference's body-length quirk: it counts the INT2
mode as 4 bytes (every setup in the admin capture, e.g. #2, #16, #20). We write them;
on reading we accept them, and their absence.

A DH public key is ``STR "DH_PUB_KEY", INT2 flags, STR y, STR p, STR g`` with numbers
in Java ``BigInteger.toByteArray()`` form: signed, minimal two's complement, so a
1024-bit p is 129 bytes with a leading 00 and y is 128 or 129 bytes (admin capture #7
note). A mode-4 reply's data is ``INT algorithm`` (3 = AES) + the server's key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .errors import LocalProtocolError, RemoteProtocolError
from .wirebase import Reader, Writer, check_u32s

DH_PUB_KEY = b"DH_PUB_KEY"
CIPHER_AES = 3  # the only algorithm the reference answers with (admin capture #2)
DEFAULT_SESSION_TIMEOUT_S = 86_400
_PADDING = b"\0\0"


class SessionMode(enum.IntEnum):
    CIPHER_CLIENT = 1
    CIPHER_SERVER = 2
    CIPHER_HANDLE = 3
    DIFFIE_HELLMAN = 4


def java_bytes(n: int) -> bytes:
    """``BigInteger.toByteArray()`` of a non-negative n: minimal, with a 00 sign byte
    when the top bit would be set."""
    if n < 0:
        raise LocalProtocolError("DH numbers are never negative")
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def _read_number(r: Reader, what: str) -> int:
    data = r.blob(what)
    if not data:
        raise RemoteProtocolError(f"{what} is empty")
    # Signed, as Java reads it: a negative y, p or g is then refused by the group check.
    return int.from_bytes(data, "big", signed=True)


@dataclass(frozen=True, slots=True)
class DHPublicKey:
    y: int
    p: int
    g: int
    flags: int = 0

    def to_bytes(self) -> bytes:
        w = Writer()
        w.blob(DH_PUB_KEY)
        if not 0 <= self.flags <= 0xFFFF:
            raise LocalProtocolError(f"DH key flags {self.flags} do not fit 16 bits")
        w.u16(self.flags)
        for n in (self.y, self.p, self.g):
            w.blob(java_bytes(n))
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> DHPublicKey:
        """Parse a DH_PUB_KEY; bytes after g are ignored as the reference ignores them
        (``keys.decode_public_key`` does the same for RSA and DSA keys)."""
        r = Reader(data)
        kind = r.blob("key type")
        if kind != DH_PUB_KEY:
            shown = kind[:40].decode("utf-8", "replace")
            raise RemoteProtocolError(f"session key type is {shown!r}, not DH_PUB_KEY")
        flags = r.u16("DH key flags")
        y = _read_number(r, "DH y")
        p = _read_number(r, "DH p")
        g = _read_number(r, "DH g")
        return cls(y, p, g, flags)


@dataclass(frozen=True, slots=True)
class SessionSetupRequest:
    mode: SessionMode
    timeout_s: int
    identity_handle: str
    identity_index: int
    public_key: bytes | None = None  # modes 1 and 4 (for 4, a ``DHPublicKey``'s bytes)
    exchange_handle: str | None = None  # mode 3
    exchange_index: int | None = None  # mode 3
    # Whether the quirk's 2 zero bytes follow (always when we write; a peer may omit them).
    padded: bool = field(default=True, compare=False)

    @classmethod
    def read(cls, r: Reader) -> SessionSetupRequest:
        mode = _read_mode(r)
        timeout = r.u32("session timeout")
        handle = r.utf8("session identity handle")
        index = r.u32("session identity index")
        key = xhandle = xindex = None
        if mode in (SessionMode.CIPHER_CLIENT, SessionMode.DIFFIE_HELLMAN):
            key = r.blob("session public key")
        elif mode is SessionMode.CIPHER_HANDLE:
            xhandle = r.utf8("key exchange handle")
            xindex = r.u32("key exchange index")
        padded = _read_padding(r, "session setup request")
        return cls(mode, timeout, handle, index, key, xhandle, xindex, padded)

    def write(self, w: Writer) -> None:
        mode = _mode(self.mode)
        wants_key = mode in (SessionMode.CIPHER_CLIENT, SessionMode.DIFFIE_HELLMAN)
        if wants_key != (self.public_key is not None):
            need = "needs" if wants_key else "takes no"
            raise LocalProtocolError(f"session mode {mode.name} {need} public key")
        exchange = (self.exchange_handle, self.exchange_index)
        if mode is SessionMode.CIPHER_HANDLE and None in exchange:
            raise LocalProtocolError(
                "session mode CIPHER_HANDLE needs a key exchange handle and index"
            )
        if mode is not SessionMode.CIPHER_HANDLE and exchange != (None, None):
            raise LocalProtocolError(f"session mode {mode.name} takes no key exchange handle")
        check_u32s("session timeout", (self.timeout_s,))
        check_u32s("session identity index", (self.identity_index,))
        w.u16(mode)
        w.u32(self.timeout_s)
        w.utf8(self.identity_handle)
        w.u32(self.identity_index)
        if self.public_key is not None:
            w.blob(self.public_key)
        if self.exchange_handle is not None and self.exchange_index is not None:
            check_u32s("key exchange index", (self.exchange_index,))
            w.utf8(self.exchange_handle)
            w.u32(self.exchange_index)
        if self.padded:
            w.raw(_PADDING)


@dataclass(frozen=True, slots=True)
class SessionSetupReply:
    mode: SessionMode
    data: bytes
    padded: bool = field(default=True, compare=False)

    @classmethod
    def read(cls, r: Reader) -> SessionSetupReply:
        mode = _read_mode(r)
        data = r.blob("session setup data")
        return cls(mode, data, _read_padding(r, "session setup reply"))

    def write(self, w: Writer) -> None:
        w.u16(_mode(self.mode))
        w.blob(self.data)
        if self.padded:
            w.raw(_PADDING)


def dh_reply_data(server_key: DHPublicKey) -> bytes:
    """A mode-4 reply's data: the cipher (AES) and the server's public key."""
    return CIPHER_AES.to_bytes(4, "big") + server_key.to_bytes()


def parse_dh_reply_data(data: bytes) -> tuple[int, DHPublicKey]:
    """(cipher algorithm, server key) from a mode-4 reply's data."""
    r = Reader(data)
    algorithm = r.u32("session cipher algorithm")
    return algorithm, DHPublicKey.from_bytes(r.raw(r.remaining(), "server DH key"))


def _read_mode(r: Reader) -> SessionMode:
    raw = r.u16("session mode")
    try:
        return SessionMode(raw)
    except ValueError:
        raise RemoteProtocolError(f"unknown session mode {raw}") from None


def _mode(mode: int) -> SessionMode:
    try:
        return SessionMode(mode)
    except ValueError:
        raise LocalProtocolError(f"unknown session mode {mode}") from None


def _read_padding(r: Reader, what: str) -> bool:
    if r.at_end():
        return False
    # Exactly the quirk's two zero bytes: anything else is not a body we understand, and
    # keeping the rule strict lets every decoded body re-encode to the same bytes.
    if r.raw(len(_PADDING), f"{what} padding") != _PADDING:
        raise RemoteProtocolError(f"{what} padding is not 2 zero bytes")
    if not r.at_end():
        raise RemoteProtocolError(f"{r.remaining()} trailing bytes after the {what} padding")
    return True

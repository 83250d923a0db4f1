"""Bounded big-endian reader and writer for Handle wire structures (RFC 3652 §2.1).

Every length-prefixed field is read inside ``restrict(n)``, which fails on over- and
under-reads, so a lying length can never make a decoder read a neighbour's bytes
(dnspython ``wirebase.py`` does the same).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import LocalProtocolError, RemoteProtocolError

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def check_u32s(what: str, items: tuple[int, ...]) -> None:
    """Refuse, before writing, integers a u32 field cannot carry."""
    for i in items:
        if not 0 <= i <= 0xFFFFFFFF:
            raise LocalProtocolError(f"{what} {i} is outside 0..4294967295")


class Reader:
    __slots__ = ("_buf", "_end", "_pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, offset: int = 0, end: int | None = None
    ):
        self._buf = memoryview(data) if not isinstance(data, memoryview) else data
        self._pos = offset
        self._end = len(self._buf) if end is None else end

    @property
    def position(self) -> int:
        return self._pos

    def remaining(self) -> int:
        return self._end - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self._pos + n > self._end:
            raise RemoteProtocolError(
                f"truncated {what}: need {n} bytes at offset {self._pos}, {self.remaining()} left"
            )

    def u8(self, what: str = "u8") -> int:
        self._need(1, what)
        v = self._buf[self._pos]
        self._pos += 1
        return v

    def u16(self, what: str = "u16") -> int:
        self._need(2, what)
        (v,) = _U16.unpack_from(self._buf, self._pos)
        self._pos += 2
        return int(v)

    def u32(self, what: str = "u32") -> int:
        self._need(4, what)
        (v,) = _U32.unpack_from(self._buf, self._pos)
        self._pos += 4
        return int(v)

    def raw(self, n: int, what: str = "bytes") -> bytes:
        self._need(n, what)
        v = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        return v

    def blob(self, what: str = "byte string") -> bytes:
        """u32 length + bytes."""
        n = self.u32(f"{what} length")
        return self.raw(n, what)

    def utf8(self, what: str = "UTF-8 string") -> str:
        """u32 length + UTF-8 bytes; invalid UTF-8 is the peer's error."""
        data = self.blob(what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{what} is not valid UTF-8") from None

    def count(self, what: str, min_item_bytes: int, most: int | None = None) -> int:
        """A u32 element count, checked against what the remaining bytes could hold so a
        forged count cannot make a decoder loop billions of times, and against ``most``
        where the field itself has a bound (what a request may ask for)."""
        n = self.u32(f"{what} count")
        if most is not None and n > most:
            raise RemoteProtocolError(f"{what} count {n} exceeds the limit of {most}")
        if n * min_item_bytes > self.remaining():
            raise RemoteProtocolError(
                f"{what} count {n} exceeds the remaining {self.remaining()} bytes"
            )
        return n

    @contextmanager
    def restrict(self, n: int, what: str) -> Iterator[Reader]:
        """Yield a reader over exactly the next ``n`` bytes; it must consume all of them."""
        self._need(n, what)
        sub = Reader(self._buf, self._pos, self._pos + n)
        yield sub
        if not sub.at_end():
            raise RemoteProtocolError(f"{sub.remaining()} unexpected trailing bytes in {what}")
        self._pos += n


class Writer:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def u8(self, v: int) -> None:
        self._buf.append(v)

    def u16(self, v: int) -> None:
        self._buf += _U16.pack(v)

    def u32(self, v: int) -> None:
        self._buf += _U32.pack(v)

    def raw(self, b: bytes | bytearray | memoryview) -> None:
        self._buf += b

    def blob(self, b: bytes | bytearray | memoryview) -> None:
        self._buf += _U32.pack(len(b))
        self._buf += b

    def utf8(self, s: str) -> None:
        self.blob(s.encode("utf-8"))

    def getvalue(self) -> bytes:
        return bytes(self._buf)

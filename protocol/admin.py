"""Bodies of the administration opcodes (docs/authentication.md, "Admin operations").

Requests:
  CREATE_HANDLE (100), ADD_VALUE (102), MODIFY_VALUE (104): STR handle, INT n, n values
  DELETE_HANDLE (101), LIST_HANDLES (105, ``0.NA/<prefix>``), HOME_NA (300),
  UNHOME_NA (301), LIST_HOMED_NAS (302, "/"), SESSION_TERMINATE (401, "/"): STR handle
  REMOVE_VALUE (103): STR handle, INT n, n x INT index
Success replies:
  CREATE_HANDLE: STR handle, echoed even without MINT (admin capture #6, #7)
  101-104, 300, 301, 401: empty (admin capture #7, #10, #8)
  LIST_HANDLES, LIST_HOMED_NAS: INT n, n x STR, at most ``LIST_CHUNK`` per reply, CONT
  set in the header of all but the last (admin capture #9, #10)

Like every body these may follow a request digest when RRDG is set; the digest belongs
to the message (``message.Message.digest``), not to the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .valuecodec import read_values, write_values
from .values import HandleValue
from .wirebase import Reader, Writer, check_u32s

# The reference streams listings 50 handles per reply (admin capture #9: 309 handles in
# 6 x 50 + 9).
LIST_CHUNK = 50


@dataclass(frozen=True, slots=True)
class ValuesRequest:
    """CREATE_HANDLE, ADD_VALUE and MODIFY_VALUE: the handle and the values to write."""

    handle: str
    values: tuple[HandleValue, ...]

    @classmethod
    def read(cls, r: Reader) -> ValuesRequest:
        return cls(r.utf8("handle"), read_values(r))

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)
        write_values(w, self.values)


@dataclass(frozen=True, slots=True)
class HandleRequest:
    """Requests whose body is a single STR: the handle (DELETE_HANDLE), the prefix record
    (LIST_HANDLES, HOME_NA, UNHOME_NA: ``0.NA/88.118.77``), or "/" where the reference
    has nothing to name (LIST_HOMED_NAS, SESSION_TERMINATE: admin capture #8, #10)."""

    handle: str

    @classmethod
    def read(cls, r: Reader) -> HandleRequest:
        return cls(r.utf8("handle"))

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)


@dataclass(frozen=True, slots=True)
class RemoveValuesRequest:
    """REMOVE_VALUE: the handle and the indexes of the values to remove."""

    handle: str
    indexes: tuple[int, ...]

    @classmethod
    def read(cls, r: Reader) -> RemoveValuesRequest:
        handle = r.utf8("handle")
        n = r.count("indexes", 4)
        return cls(handle, tuple(r.u32("index") for _ in range(n)))

    def write(self, w: Writer) -> None:
        check_u32s("value index", self.indexes)
        w.utf8(self.handle)
        w.u32(len(self.indexes))
        for i in self.indexes:
            w.u32(i)


@dataclass(frozen=True, slots=True)
class HandleReply:
    """CREATE_HANDLE success: the handle created (the minted name with MINT)."""

    handle: str

    @classmethod
    def read(cls, r: Reader) -> HandleReply:
        return cls(r.utf8("handle"))

    def write(self, w: Writer) -> None:
        w.utf8(self.handle)


@dataclass(frozen=True, slots=True)
class EmptyReply:
    """A success reply with nothing after the (optional) request digest."""

    @classmethod
    def read(cls, r: Reader) -> EmptyReply:
        return cls()  # the caller's ``restrict`` refuses any byte left over

    def write(self, w: Writer) -> None:
        pass


@dataclass(frozen=True, slots=True)
class HandleListReply:
    """LIST_HANDLES / LIST_HOMED_NAS success: one chunk of the listing."""

    handles: tuple[str, ...]

    @classmethod
    def read(cls, r: Reader) -> HandleListReply:
        n = r.count("handles", 4)
        return cls(tuple(r.utf8("listed handle") for _ in range(n)))

    def write(self, w: Writer) -> None:
        w.u32(len(self.handles))
        for h in self.handles:
            w.utf8(h)


def chunk_handles(handles: Sequence[str]) -> list[tuple[str, ...]]:
    """The listing cut into replies of at most ``LIST_CHUNK`` handles; an empty listing
    is still one (empty) reply, so the client gets an answer with CONT clear."""
    if not handles:
        return [()]
    return [tuple(handles[i : i + LIST_CHUNK]) for i in range(0, len(handles), LIST_CHUNK)]

"""Ready-to-send resolution replies: what part of a request decides the reply, and how
a cached reply is fitted to a new request without re-encoding it.

A resolution reply depends on the request's version bytes (envelope bytes 0-3: the
reply version is negotiated from them), its header fields other than the expiration
and body length (opcode, response code, op flags, serial, recursion count) and its
body (handle, index list, type list). ``resolution_shape`` returns exactly those bytes,
so two requests with the same shape get the same reply apart from what
``ReplyTemplate.fit`` patches in: the session and request ids, the expiration the
server stamps (its clock + 12 h) and, with RRDG, the digest of this request's header
and body.

Requests that carry a credential or ask for a certified reply (CERT) have no shape:
a signature covers the expiration (and, from 2.7, the request id), which ``fit``
patches, so they are answered on the full path. There, below 2.7, a signature made for
the same signed bytes is reused (``protocol.msgsign.SignatureMemo``).

``request_key`` is a cheaper stand-in for the shape on a front's hot path: every byte of
the request but its ids and expiration, checked nowhere. Requests with equal keys have
equal shapes (or none), so a front that remembers which shape a key had skips both the
checks and the slicing of ``resolution_shape``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from .codes import OpCode, OpFlag
from .message import ENVELOPE_BYTES, EXPIRATION_OFFSET, HEADER_BYTES, SEQUENCE_OFFSET
from .negotiate import REPLY_LIFETIME_S

_U32 = struct.Struct(">I")
_RESOLUTION = int(OpCode.RESOLUTION)
# Envelope length (16), opcode (20), op flags (28), body length (40) in one unpack.
_FIELDS = struct.Struct(">16xII4xI8xI")
_NO_CREDENTIAL = b"\x00\x00\x00\x00"
_OPCODE_AT = ENVELOPE_BYTES
_FLAGS_AT = ENVELOPE_BYTES + 8
_BODY_AT = ENVELOPE_BYTES + HEADER_BYTES
_MIN_REQUEST = _BODY_AT + 4 + 4 + 4 + 4  # empty handle, index and type lists, credential
_CERT = int(OpFlag.CERT)
_RRDG = int(OpFlag.RRDG)
_DIGEST_AT = _BODY_AT + 1  # after the hash-type byte
# Reply versions from 2.1 carry "u8 hash type + digest"; below 2.1 no digest is sent
# (protocol.negotiate), so only these two occur.
_DIGESTS = {2: (hashlib.sha1, 20), 3: (hashlib.sha256, 32)}


def resolution_shape(data: bytes) -> bytes | None:
    """The bytes of a whole resolution request that its reply depends on; None when
    the request is not a plain, cacheable resolution. (On the hot path of every
    datagram: one unpack, then slices.)"""
    n = len(data)
    if n < _MIN_REQUEST:
        return None
    length, opcode, flags, body_length = _FIELDS.unpack_from(data)
    if (
        opcode != _RESOLUTION
        or length != n - ENVELOPE_BYTES
        or body_length + _BODY_AT + 4 != n
        or flags & _CERT
        or data[n - 4 :] != _NO_CREDENTIAL
    ):
        return None
    return data[0:4] + data[_OPCODE_AT + 4 : EXPIRATION_OFFSET] + data[_BODY_AT : n - 4]


_IDS_AT = 4  # session id, request id: up to the sequence number
_EXPIRATION_END = EXPIRATION_OFFSET + 4


def request_key(data: bytes) -> bytes:
    """``data`` without its session id, request id and expiration: what a request that
    has a shape (``resolution_shape``) shares with every request of that same shape, and
    with no other. Two requests with equal keys have the same length and the same bytes
    at every position ``resolution_shape`` checks or keeps, so either both have no shape
    or both have the same one. Nothing is checked here: any bytes have a key."""
    return data[:_IDS_AT] + data[SEQUENCE_OFFSET:EXPIRATION_OFFSET] + data[_EXPIRATION_END:]


class ReplyTemplate:
    """An encoded reply (envelope included) made for one request, refittable to
    another request of the same shape.

    ``shared_tail``: bytes the reply ends with, just before its empty credential, that
    the caller keeps anyway (a record's values in wire form, which a resolution reply
    carries verbatim when nothing was filtered out). They are referenced, not copied:
    a cache of a million replies would otherwise hold every record twice.
    """

    __slots__ = ("digest", "head", "rc", "tail")

    def __init__(self, data: bytes, shared_tail: bytes | None = None):
        end = len(data) - 4
        self.tail: bytes | None
        if (
            shared_tail is not None
            and data[end:] == _NO_CREDENTIAL
            and end - len(shared_tail) > _BODY_AT
            and data[end - len(shared_tail) : end] == shared_tail
        ):
            self.head, self.tail = data[: end - len(shared_tail)], shared_tail
        else:
            self.head, self.tail = data, None
        self.rc: int = _U32.unpack_from(data, _OPCODE_AT + 4)[0]
        self.digest: tuple[Callable[[Any], Any], int] | None = None
        if _U32.unpack_from(data, _FLAGS_AT)[0] & _RRDG and len(data) > _DIGEST_AT:
            self.digest = _DIGESTS.get(data[_BODY_AT])

    @property
    def data(self) -> bytes:
        """The reply as it was made."""
        return self.head if self.tail is None else self.head + self.tail + _NO_CREDENTIAL

    def fit(self, request: bytes, now: float) -> bytearray:
        """This reply, addressed to ``request`` (same shape) and stamped at ``now``."""
        out = bytearray(self.head)
        out[4:12] = request[4:12]  # session id, request id
        _U32.pack_into(out, EXPIRATION_OFFSET, (int(now) + REPLY_LIFETIME_S) & 0xFFFFFFFF)
        if self.digest is not None:
            new_hash, size = self.digest
            end = len(request) - 4  # the shape guarantees an empty credential
            out[_DIGEST_AT : _DIGEST_AT + size] = new_hash(
                memoryview(request)[ENVELOPE_BYTES:end]
            ).digest()
        if self.tail is not None:
            out += self.tail
            out += _NO_CREDENTIAL
        return out

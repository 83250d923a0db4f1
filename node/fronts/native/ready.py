"""Replies kept ready to send again within one second: the UDP front's hot path.

A cache hit on the UDP front sends the kept reply fitted to its request
(``ReplyTemplate.fit``: ids, expiration, request digest) and fragmented. Two requests of
one shape answered within the same second of the wall clock get datagrams that differ
only in the ids, bytes 4-11 of every datagram (tests/protocol/test_replycache_ready.py),
unless the reply carries the digest of its request. So the front keeps, for the current
second, the datagrams it sent for each request key (``protocol.replycache.request_key``)
split around the ids, and a repeat costs a lookup, two comparisons and one copy of
the reply with its ids in: no shape is cut, nothing is fitted or fragmented. Replies
with a request digest are fitted every time.

The key is looked up by its part from byte 40 on (body length, body, credential); the
rest, bytes 0-3 and 12-35, is compared in place, so no key is built per datagram. The
datagrams of a reply go out in one ``sendto`` when the kernel cuts them apart
(node.fronts.native.segments), else one by one.
"""

from __future__ import annotations

from typing import Any

from node.resolution.cache.records import Entry
from protocol.fragment import MAX_DATAGRAM_BYTES
from protocol.message import EXPIRATION_OFFSET, SEQUENCE_OFFSET, SESSION_ID_OFFSET

# The parts of a request key: bytes 0-3, 12-35 (sequence number to the expiration) and
# 40 on. The ids in between, 4-11, are what every datagram of a reply is patched with.
IDS_AT, IDS_END = SESSION_ID_OFFSET, SEQUENCE_OFFSET
MIDDLE_AT, MIDDLE_END = SEQUENCE_OFFSET, EXPIRATION_OFFSET
BODY_AT = EXPIRATION_OFFSET + 4
# Kept at most, in one second: replies, and bytes of their datagrams.
READY_MAX = 2048
READY_MAX_BYTES = 4 << 20

# Per request key: the request's bytes 0-3 and 12-35; the shape the reply is kept
# under, the kept reply and its entry (it is ready while the cache still holds that
# reply for that shape and the entry is fresh); the 4 bytes every datagram begins with,
# before the ids; whether the datagrams go in one sendto; each datagram from its
# sequence number on (after an empty one when they do: ``ids.join(parts)`` is then the
# lot); the response code.
Ready = tuple[bytes, bytes, bytes, Any, Entry, bytes, bool, tuple[bytes, ...], int]


def prepared(
    request: bytes,
    shape: bytes,
    kept: Any,
    datagrams: list[bytes | bytearray],
    rc: int,
    per_send: int,
) -> tuple[Ready, int]:
    """What to keep for ``request``, whose reply was just sent as ``datagrams`` (at
    most ``per_send`` of them go in one sendto), and its size in bytes."""
    rests = tuple(bytes(d[SEQUENCE_OFFSET:]) for d in datagrams)
    # Cut by the kernel at every MAX_DATAGRAM_BYTES: each datagram but the last must be
    # exactly that long (protocol.fragment makes them so).
    joined = len(rests) == 1 or (
        len(rests) <= per_send and all(len(d) == MAX_DATAGRAM_BYTES for d in datagrams[:-1])
    )
    entry: Ready = (
        request[:IDS_AT],
        request[MIDDLE_AT:MIDDLE_END],
        shape,
        kept,
        kept.entry,
        bytes(datagrams[0][:IDS_AT]),
        joined,
        (b"", *rests) if joined else rests,
        rc,
    )
    return entry, len(request) + sum(map(len, rests))

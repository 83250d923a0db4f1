"""UDP fragmentation and reassembly (RFC 3652 §2.2.1.1, as the reference does it).

A message longer than one datagram's payload (512 - 20 = 492 bytes) is split: every
datagram repeats the envelope with the same request id and the *total* message length,
numbering itself in the sequence field 0, 1, 2...; the truncated flag is not set (the
reference never sets it; golden #9, #21). The reference Java client reads exactly 512
bytes per datagram, so a server must fragment rather than send large datagrams.

Reassembly is bounded in message size, pending messages and buffered bytes, ignores
duplicates, and takes the clock as ``now`` so incomplete messages expire without the
protocol layer reading time. The table is shared fairly: a source may have at most
``max_pending_per_source`` messages half-received (more evict its own oldest), and a
full table makes room at the expense of the source holding most, so a source sending
bogus first fragments only ever evicts its own (docs/protocol.md, "What the node does
over UDP").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field, replace

from .errors import LocalProtocolError, RemoteProtocolError
from .message import ENVELOPE_BYTES, MAX_MESSAGE_BYTES, SEQUENCE_OFFSET, Envelope

MAX_DATAGRAM_BYTES = 512


def fragment(
    envelope: Envelope, payload: bytes, max_datagram: int = MAX_DATAGRAM_BYTES
) -> list[bytes]:
    """Datagrams carrying ``payload`` (header + body + credential) under ``envelope``;
    the envelope's length and sequence are set here."""
    chunk = max_datagram - ENVELOPE_BYTES
    if chunk <= 0:
        raise LocalProtocolError(f"a datagram of {max_datagram} bytes cannot hold an envelope")
    if len(payload) > MAX_MESSAGE_BYTES:
        raise LocalProtocolError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    head = replace(envelope, length=len(payload), sequence=0).to_wire()
    if len(payload) <= chunk:
        return [head + payload]
    return [
        _with_sequence(head, seq) + payload[start : start + chunk]
        for seq, start in enumerate(range(0, len(payload), chunk))
    ]


def fragment_encoded(
    data: bytes | bytearray, max_datagram: int = MAX_DATAGRAM_BYTES
) -> list[bytes | bytearray]:
    """Split an encoded message (envelope included, as ``message.encode`` returns it,
    its length field that of the whole message). By slicing: this runs for every
    multi-datagram reply the cache sends."""
    if len(data) <= max_datagram:
        return [data]
    chunk = max_datagram - ENVELOPE_BYTES
    if chunk <= 0:
        raise LocalProtocolError(f"a datagram of {max_datagram} bytes cannot hold an envelope")
    ids, length = data[:SEQUENCE_OFFSET], data[SEQUENCE_OFFSET + 4 : ENVELOPE_BYTES]
    return [
        ids + seq.to_bytes(4, "big") + length + data[start : start + chunk]
        for seq, start in enumerate(range(ENVELOPE_BYTES, len(data), chunk))
    ]


def _with_sequence(head: bytes, seq: int) -> bytes:
    return head[:SEQUENCE_OFFSET] + seq.to_bytes(4, "big") + head[SEQUENCE_OFFSET + 4 :]


@dataclass(slots=True)
class _Pending:
    first_seen: float
    owner: Hashable  # what the per-source cap counts it against
    head: bytes  # envelope bytes other than the sequence, which every fragment repeats
    total: int
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembler:
    """Feed datagrams, get back whole messages (envelope + message, sequence 0).

    ``source`` (e.g. the peer address and port) keeps equal request ids from different
    peers apart; ``owner`` (default: the source; e.g. the peer's address alone) is what
    ``max_pending_per_source`` counts, None for no cap. Errors are
    ``RemoteProtocolError``; the offending datagram is dropped, and a message whose
    fragments contradict each other is dropped whole.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_pending: int = 256,
        max_buffered_bytes: int = 8 * 1024 * 1024,
        timeout_s: float = 5.0,
        max_pending_per_source: int | None = None,
    ):
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.max_buffered_bytes = max_buffered_bytes
        self.timeout_s = timeout_s
        self.max_pending_per_source = max_pending_per_source
        self._pending: OrderedDict[tuple[Hashable, int, int], _Pending] = OrderedDict()
        # Each owner's pending messages, oldest first (at most max_pending_per_source).
        self._owned: dict[Hashable, list[tuple[Hashable, int, int]]] = {}
        self._buffered = 0
        # Counters for metrics: incomplete messages forgotten after ``timeout_s``, evicted
        # to make room in the table, and evicted because their source started too many.
        self.expired = 0
        self.evicted = 0
        self.source_evicted = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def sources(self) -> int:
        """Owners with a message half-received."""
        return len(self._owned)

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    def feed(
        self,
        datagram: bytes,
        now: float,
        source: Hashable = None,
        *,
        owner: Hashable = None,
    ) -> bytes | None:
        self.expire(now)
        env = Envelope.from_wire(datagram)
        payload = len(datagram) - ENVELOPE_BYTES
        if env.length > self.max_message_bytes:
            raise RemoteProtocolError(
                f"message length {env.length} exceeds {self.max_message_bytes}"
            )
        if payload > env.length:
            raise RemoteProtocolError(
                f"datagram carries {payload} bytes of a {env.length}-byte message"
            )
        if payload == env.length:
            return datagram  # the common case: the whole message in one datagram
        if payload == 0:
            raise RemoteProtocolError("empty message fragment")
        if env.sequence >= env.length:
            raise RemoteProtocolError(
                f"fragment number {env.sequence} of a {env.length}-byte message"
            )
        key = (source, env.session_id, env.request_id)
        head = datagram[:SEQUENCE_OFFSET] + datagram[SEQUENCE_OFFSET + 4 : ENVELOPE_BYTES]
        p = self._pending.get(key)
        if p is None:
            p = self._start(key, source if owner is None else owner, now, head, env.length)
        elif p.head != head:
            raise RemoteProtocolError(
                "fragment envelope disagrees with earlier fragments of its message"
            )
        if env.sequence in p.parts:
            return None  # duplicate (retransmission)
        p.parts[env.sequence] = datagram[ENVELOPE_BYTES:]
        p.size += payload
        self._buffered += payload
        if p.size > p.total:
            self._drop(key)
            raise RemoteProtocolError(
                f"fragments of request {env.request_id:#x} exceed its {p.total} bytes"
            )
        if p.size < p.total:
            self._make_room()
            return None
        self._drop(key)
        if len(p.parts) != max(p.parts) + 1:
            raise RemoteProtocolError(
                f"fragments of request {env.request_id:#x} are not numbered 0..n-1"
            )
        return (
            p.head[:SEQUENCE_OFFSET]
            + bytes(4)
            + p.head[SEQUENCE_OFFSET:]
            + b"".join(p.parts[i] for i in range(len(p.parts)))
        )

    def expire(self, now: float) -> int:
        """Forget incomplete messages older than ``timeout_s``; returns how many."""
        n = 0
        while self._pending:
            key, p = next(iter(self._pending.items()))
            if now - p.first_seen < self.timeout_s:
                break
            self._drop(key)
            n += 1
        self.expired += n
        return n

    def _start(
        self,
        key: tuple[Hashable, int, int],
        owner: Hashable,
        now: float,
        head: bytes,
        total: int,
    ) -> _Pending:
        owned = self._owned.get(owner)
        cap = self.max_pending_per_source
        if owned is not None and cap is not None and len(owned) >= cap:
            # This source has its share half-received already: it gives up its oldest.
            self._drop(owned[0])
            self.source_evicted += 1
        while len(self._pending) >= self.max_pending:
            self._evict()
        p = self._pending[key] = _Pending(now, owner, head, total)
        self._owned.setdefault(owner, []).append(key)
        return p

    def _make_room(self) -> None:
        while self._buffered > self.max_buffered_bytes and self._pending:
            self._evict()

    def _evict(self) -> None:
        """Room for another message: the oldest of the source holding most (the first
        such source to arrive, on a tie). Only full tables get here, so the scan over
        sources (at most ``max_pending``) runs only under a flood."""
        largest = max(self._owned.values(), key=len)
        self._drop(largest[0])
        self.evicted += 1

    def _drop(self, key: tuple[Hashable, int, int]) -> None:
        p = self._pending.pop(key)
        self._buffered -= p.size
        owned = self._owned[p.owner]
        owned.remove(key)
        if not owned:
            del self._owned[p.owner]

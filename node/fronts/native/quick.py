"""The miss path of plain anonymous resolutions: answered without decoding the request
into message objects, nor encoding the reply from them.

A request with a reply-cache shape (``protocol.replycache.resolution_shape``: a plain
RESOLUTION, no credential, no CERT) whose reply is not cached yet takes, on the full
path, ~200 µs of node CPU: the message decoded, authentication unwrapped, the reply
negotiated (``protocol.negotiate.build_reply``) and encoded. Only the record differs
from one such request to the next. So the reply's first 44 bytes (envelope and header)
are learned from the full path, per request *head* (its version bytes and header fields
but the expiration and body length, on which negotiation depends alone), and a miss
with a learned head is answered by splicing: that head, lengths patched, then the
resolution body from the stored values (``resolver.WireFound``), as the full path
would have built it (tests/node/fronts/native/test_quick.py holds the two to each
other, byte for byte).

Only the common case comes here: session id 0, no RRDG digest, the handle's own record
found in this node's registry, every value kept public (else the challenge). Anything
else (not found, a referral, a prefix record, a record from upstream, served stale,
private values, a body the reader refuses, trailing bytes, a registry that does not
answer) returns None and the caller takes the full path, which answers it as ever. The
front counts and logs the request as the full path would.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.client.tree import UpstreamUnavailable
from node.resolution.resolver import Resolver, WireFound
from node.runtime.metrics import NodeMetrics
from protocol.bodies import ResolutionRequest, resolution_reply_body
from protocol.codes import OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.message import ENVELOPE_BYTES, EXPIRATION_OFFSET, HEADER_BYTES, LENGTH_OFFSET
from protocol.wirebase import Reader
from registry.errors import RegistryError

if TYPE_CHECKING:
    from node.fronts.native.handler import NativeReply
    from node.resolution.cache.records import RecordCache, ReplyMap
    from node.resolution.cache.stats import FrontStats

_U32 = struct.Struct(">I")
_HEAD_BYTES = ENVELOPE_BYTES + HEADER_BYTES
_FLAGS_AT = ENVELOPE_BYTES + 8
_BODY_LENGTH_AT = _HEAD_BYTES - 4
_NO_SESSION = b"\x00\x00\x00\x00"
_NO_CREDENTIAL = b"\x00\x00\x00\x00"
_RRDG = int(OpFlag.RRDG)
_PUBL = int(OpFlag.PUBL)
_SUCCESS = int(ResponseCode.SUCCESS)
# Heads learned, at most: clients choose their version bytes and flags, and a real
# client population uses a handful.
MAX_HEADS = 64


def head_key(request: bytes) -> bytes:
    """What the reply's envelope and header depend on: the version bytes, and the header
    from the opcode to the recursion count (not the expiration, not the body length)."""
    return request[0:4] + request[ENVELOPE_BYTES:EXPIRATION_OFFSET]


class QuickResolution:
    """Learns reply heads from the full path (``learn``) and answers with them (``answer``)."""

    def __init__(
        self,
        resolver: Resolver,
        cache: RecordCache,
        replies: ReplyMap,
        metrics: NodeMetrics,
        front_stats: dict[str, FrontStats],
        reply_type: Callable[[bytes, bytes | None], NativeReply],
        *,
        serial: Callable[[], int],
        clock: Callable[[], float],
    ):
        self.resolver = resolver
        self.cache = cache
        self.replies = replies
        self.metrics = metrics
        self.front_stats = front_stats
        self._reply_type = reply_type
        self._serial = serial
        self.clock = clock
        # head key -> (the site serial it was learned under, the reply's first 44 bytes)
        self._heads: dict[bytes, tuple[int, bytes]] = {}
        self.answered = 0  # requests answered here rather than on the full path
        self._counted = {
            t: metrics.requests.labels(t, "resolution", str(_SUCCESS)) for t in ("udp", "tcp")
        }
        self._latency = {t: metrics.latency.labels(t, "resolution") for t in ("udp", "tcp")}

    def learn(self, request: bytes, reply: bytes) -> None:
        """The full path's reply to a request with a shape, kept for the hot path: if it is
        RC 1 to an anonymous request without digest, its head answers the next miss."""
        if (
            len(reply) < _HEAD_BYTES
            or not request.startswith(_NO_SESSION, 4)
            or _U32.unpack_from(reply, ENVELOPE_BYTES + 4)[0] != _SUCCESS
            or _U32.unpack_from(request, _FLAGS_AT)[0] & _RRDG
        ):
            return
        key = head_key(request)
        if key in self._heads:
            return
        if len(self._heads) >= MAX_HEADS:
            self._heads.clear()
        self._heads[key] = (self._serial(), reply[:_HEAD_BYTES])

    async def answer(self, request: bytes, shape: bytes, transport: str) -> NativeReply | None:
        """The reply to ``request`` (a miss with ``shape``), kept in the reply cache when
        the cache takes it, for the front to fit and send (then ``counted``); None: take
        the full path."""
        learned = self._heads.get(head_key(request))
        if learned is None or not request.startswith(_NO_SESSION, 4):
            return None
        serial, head = learned
        if serial != self._serial():
            del self._heads[head_key(request)]  # the site changed: learn again
            return None
        try:
            body = ResolutionRequest.read(Reader(request, _HEAD_BYTES, len(request) - 4))
        except ProtocolError:
            return None
        if body.trailing:
            return None
        flags = _U32.unpack_from(request, _FLAGS_AT)[0]
        try:
            result = await self.resolver.resolve(
                body.handle,
                body.indexes,
                body.types,
                self.clock(),
                public_only=bool(flags & _PUBL),
                wire=True,
            )
        except (RegistryError, UpstreamUnavailable):
            # The full path words it (RC 3, retry later); by then the cache knows the
            # registry is down, and answers stale or at once.
            return None
        if type(result) is not WireFound:
            return None
        entry = result.entry
        if entry is None or result.stale or result.selected.private or entry.foreign:
            return None
        reply = self._reply_type(self._splice(head, body.handle, result.selected.wire), entry.wire)
        self.front_stats[transport].misses += 1
        self.cache.add_reply(self.replies, shape, entry, reply)
        self.answered += 1
        return reply

    def counted(self, transport: str, rc: int, seconds: float) -> None:
        """Count a request ``answer`` answered, under the code the front sent (RC 2 when
        over the UDP cap), as the full path counts its requests."""
        if rc == _SUCCESS:
            self._counted[transport].inc()
        else:
            self.metrics.requests.labels(transport, "resolution", str(rc)).inc()
        self._latency[transport].observe(seconds)

    @staticmethod
    def _splice(head: bytes, handle: str, values: bytes) -> bytes:
        body = resolution_reply_body(handle, values)
        out = bytearray(head)
        _U32.pack_into(out, LENGTH_OFFSET, HEADER_BYTES + len(body) + 4)
        _U32.pack_into(out, _BODY_LENGTH_AT, len(body))
        out += body
        out += _NO_CREDENTIAL
        return bytes(out)

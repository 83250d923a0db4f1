"""The transport-independent native handler: a whole request message in, a whole reply
message out. The UDP and TCP fronts only frame bytes and call ``handle``.

A request that cannot be decoded gets a protocol-error reply with its request id echoed
(silence only when not even an envelope arrived); a bug in an operation gets RC 2,
never a dead connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from node.resolution.cache.records import Entry, RecordCache
from node.resolution.cache.stats import FrontStats
from node.resolution.outcomes import Found, HandleNotFound, PrefixReferral, ValuesNotFound
from node.resolution.resolver import Resolver
from node.resolution.site import Site
from node.runtime.metrics import NodeMetrics
from protocol.bodies import (
    Body,
    ErrorReply,
    ReferralReply,
    ResolutionReply,
    ResolutionRequest,
    SiteInfoReply,
)
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.message import Header, MalformedMessage, Message, decode, encode
from protocol.msgsign import sign_message
from protocol.negotiate import build_reply
from protocol.replycache import ReplyTemplate, resolution_shape
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.native")


class NativeReply(ReplyTemplate):
    """A ready-to-send resolution reply kept in the cache (node.resolution.cache.records.Kept)."""

    __slots__ = ("entry",)
    entry: Entry

    def nbytes(self) -> int:
        return len(self.head)  # the tail, if any, is the entry's own wire bytes


Operation = Callable[[Message, bytes, "Peer", float], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Peer:
    transport: str  # "udp" | "tcp"
    address: tuple[str, int] | None = None


def _op_name(opcode: int) -> str:
    try:
        return OpCode(opcode).name.lower()
    except ValueError:
        return "unknown"


class NativeHandler:
    def __init__(
        self,
        resolver: Resolver,
        site: Site,
        metrics: NodeMetrics,
        *,
        clock: Callable[[], float] = time.time,
        cache: RecordCache | None = None,
    ):
        self.resolver = resolver
        self.site = site
        self.metrics = metrics
        self.clock = clock
        # Ready-to-send resolution replies, shared by the UDP and TCP fronts (same bytes).
        self.cache = cache
        self.replies = cache.reply_map("native") if cache is not None else None
        self.front_stats = {t: FrontStats() for t in ("udp", "tcp")}
        self.operations: dict[int, Operation] = {
            OpCode.RESOLUTION: self.op_resolution,
            OpCode.GET_SITE_INFO: self.op_site_info,
        }

    @property
    def serial(self) -> int:
        return self.site.info.serial

    def _reply(self, request: Message, rc: int, body: Body, now: float) -> bytes:
        if OpFlag.CERT in request.header.flags:
            # The client asked for a certified reply: sign it with the HS_SITE key.
            reply = build_reply(
                request,
                rc,
                body,
                now=now,
                site_serial=self.serial,
                extra_flags=OpFlag.CERT,
            )
            return encode(sign_message(reply, self.site.key))
        return encode(build_reply(request, rc, body, now=now, site_serial=self.serial))

    async def handle(self, data: bytes, peer: Peer) -> bytes | None:
        """Answer one request message (envelope included); None means stay silent."""
        now = self.clock()
        started = time.perf_counter()
        try:
            request = decode(data)
        except MalformedMessage as exc:
            self.metrics.malformed.labels(peer.transport).inc()
            return self._malformed_reply(exc, now)
        except ProtocolError:
            self.metrics.malformed.labels(peer.transport).inc()
            return None  # not even an envelope: nothing to address a reply to
        op = _op_name(request.header.opcode)
        if not request.is_request:
            self.metrics.malformed.labels(peer.transport).inc()
            return self._reply(
                request, ResponseCode.PROTOCOL_ERROR, ErrorReply("expected a request"), now
            )
        operation = self.operations.get(request.header.opcode)
        try:
            if operation is None:
                rc = ResponseCode.OPERATION_NOT_SUPPORTED
                reply = self._reply(
                    request,
                    rc,
                    ErrorReply(f"operation {request.header.opcode} is not supported"),
                    now,
                )
            else:
                reply = await operation(request, data, peer, now)
        except ProtocolError as exc:
            reply = self._reply(request, exc.response_code, ErrorReply(exc.message), now)
        except DatabaseUnavailable as exc:
            # Nothing cached to fall back on: "too busy" tells the client to retry later.
            log.warning("native %s: %s", op, exc)
            self.metrics.registry_errors.labels(op).inc()
            reply = self._reply(
                request,
                ResponseCode.SERVER_TOO_BUSY,
                ErrorReply("the registry is unavailable; retry later"),
                now,
            )
        except Exception:
            log.exception("native %s request failed", op)
            self.metrics.registry_errors.labels(op).inc()
            reply = self._reply(
                request, ResponseCode.ERROR, ErrorReply("internal server error"), now
            )
        self.metrics.latency.labels(peer.transport, op).observe(time.perf_counter() - started)
        return reply

    def _malformed_reply(self, exc: MalformedMessage, now: float) -> bytes:
        opcode = exc.header.opcode if exc.header else 0
        # Echo the readable flags, but send no digest of a request we could not read.
        flags = (exc.header.flags if exc.header else OpFlag(0)) & ~OpFlag.RRDG
        request = Message(exc.envelope, Header(opcode, flags=flags), ErrorReply())
        return self._reply(request, exc.response_code, ErrorReply(exc.message), now)

    async def op_resolution(self, request: Message, data: bytes, peer: Peer, now: float) -> bytes:
        body = request.body
        assert isinstance(body, ResolutionRequest)
        flags = request.header.flags
        # Native callers are not authenticated yet, so only public values are ever sent;
        # with PUBL clear the reference would challenge (RC 402) instead of filtering.
        result = await self.resolver.resolve(
            body.handle,
            body.indexes,
            body.types,
            now,
            public_only=True,
            refer=OpFlag.DNRF not in flags,
        )
        rc = result.response_code
        entry: Entry | None = None
        match result:
            case Found(values=values, entry=entry):
                reply: Body = ResolutionReply(body.handle, values)
            case PrefixReferral(handle=handle, values=values):
                reply = ReferralReply(handle, values)
            case HandleNotFound(entry=entry) | ValuesNotFound(entry=entry):
                reply = ErrorReply()  # the reference says nothing more on RC 100 / 200
            case _:
                reply = ErrorReply(result.message)
        self.metrics.requests.labels(peer.transport, "resolution", str(int(rc))).inc()
        encoded = self._reply(request, rc, reply, now)
        if entry is not None and self.replies is not None and self.cache is not None:
            shape = resolution_shape(data)
            if shape is not None:
                self.front_stats[peer.transport].misses += 1
                self.cache.add_reply(self.replies, shape, entry, NativeReply(encoded, entry.wire))
        return encoded

    def cached_reply(self, data: bytes, transport: str) -> bytearray | None:
        """The hot path: the ready-to-send reply to ``data`` if one is cached and fresh,
        fitted to this request; None to take the full path. (The UDP front inlines
        these steps: there, each call and attribute lookup saved is measurable.)"""
        replies = self.replies
        if not replies:
            return None
        shape = resolution_shape(data)
        if shape is None:
            return None
        hit = replies.get(shape)
        if hit is None:
            return None
        entry = hit.entry
        assert self.cache is not None
        if entry.expires <= self.cache.monotonic():
            return None
        self.cache.touch(entry)
        self.front_stats[transport].hit(hit.rc)
        return hit.fit(data, self.clock())  # type: ignore[no-any-return]

    async def op_site_info(self, request: Message, data: bytes, peer: Peer, now: float) -> bytes:
        self.metrics.requests.labels(peer.transport, "get_site_info", "1").inc()
        return self._reply(request, ResponseCode.SUCCESS, SiteInfoReply(self.site.info), now)

"""The native UDP front: each datagram (or reassembled message) becomes a task; at most
``udp_max_inflight`` run at once, and at most ``udp_max_inflight_per_source`` for one
source network, the rest dropped and counted, so a flood cannot queue unbounded work
nor take every slot from other clients. Replies longer than one datagram are
fragmented into 512-byte datagrams, as the reference Java client expects.

Cache hits are answered synchronously in ``datagram_received``, without a task.

A UDP source can be spoofed, so what a request can make the node send is bounded
(docs/protocol.md, "What the node does over UDP"): a reply over ``udp_max_reply_bytes``
(all its datagrams together) goes out as one small RC 2 asking the client to retry
over TCP, and replies to one source network (/24, /56) are rate-limited
(``udp_rrl_replies_per_s``; past it dropped, every ``udp_rrl_slip``-th sent as that
same small RC 2 instead, so a real client behind a flooded network still learns to use
TCP). Both paths, cache hits and tasks, count against the rate; a task over it is
never started.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from time import perf_counter

from node.fronts.native.frames import messages
from node.fronts.native.handler import NativeHandler
from node.fronts.native.overcap import (
    RATE_LIMITED,
    TOO_LARGE,
    largest_message,
    retry_over_tcp,
    wire_bytes,
)
from node.fronts.native.peer import Peer, sockaddr
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import Holdings, RateLimiter, SourceKeys, peer_keys
from node.settings import Settings
from protocol.codes import ResponseCode
from protocol.errors import ProtocolError
from protocol.fragment import MAX_DATAGRAM_BYTES, Reassembler, fragment_encoded
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET
from protocol.replycache import resolution_shape

log = logging.getLogger("idnode.native")
_U32 = struct.Struct(">I")
_CREDENTIAL_BYTES = 4  # the empty credential a cached reply ends with, after its tail
_ERROR = int(ResponseCode.ERROR)
# Limits hit under a flood are logged at most this often each (the counters count).
LOG_EVERY_S = 60.0


class UdpFront(asyncio.DatagramProtocol):
    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        settings: Settings,
        *,
        clock: Callable[[], float] | None = None,
    ):
        self.handler = handler
        self.metrics = metrics
        self.max_inflight = settings.udp_max_inflight
        cache = handler.cache
        # Monotonic seconds for reassembly and rate limits: by default the node's, as the
        # reply cache has it (so a test stepping the node's clock steps these too).
        if clock is None:
            clock = cache.monotonic if cache is not None else time.monotonic
        self.clock = clock
        self.inflight = 0
        self.closing = False
        self.transport: asyncio.DatagramTransport | None = None
        self.max_reply_bytes = settings.udp_max_reply_bytes
        # What a cached reply may measure (envelope included) to go out in one datagram,
        # and in several: the hit path compares sizes only.
        self._one_datagram = min(MAX_DATAGRAM_BYTES, self.max_reply_bytes)
        self._largest_reply = largest_message(self.max_reply_bytes)
        # Who a request counts against: its /24 or /56, None for exempt networks.
        self.sources = SourceKeys(settings.rate_limit_exempt_networks)
        self.reply_rate = RateLimiter(settings.udp_rrl_replies_per_s)
        self.slip = settings.udp_rrl_slip
        self.over_rate = 0  # replies over a source's rate so far: every slip-th slips
        self.held = Holdings(settings.udp_max_inflight_per_source)
        # Half-received requests count against the sending address (/32, /64), loopback
        # included: a real client has a few at most.
        self.reassembler = Reassembler(max_pending_per_source=settings.udp_reassembly_per_source)
        self._fragment_owner = peer_keys(()).key
        # What the limits did, counted in plain ints (a labelled Prometheus inc() takes a
        # lock: measurable under a flood) and folded into the metrics at each scrape.
        self.too_large = 0
        self.rate_dropped = 0
        self.rate_slipped = 0
        self.source_busy = 0
        reassembler = self.reassembler
        self._folds: list[tuple[Callable[[], int], Callable[[float], None]]] = [
            (lambda: self.too_large, metrics.udp_too_large.inc),
            (lambda: self.rate_dropped, metrics.replies_rate_limited.labels("udp", "dropped").inc),
            (lambda: self.rate_slipped, metrics.replies_rate_limited.labels("udp", "slipped").inc),
            (lambda: self.source_busy, metrics.dropped.labels("udp", "source_inflight").inc),
            (
                lambda: reassembler.source_evicted,
                metrics.dropped.labels("udp", "reassembly_source").inc,
            ),
            (lambda: reassembler.evicted, metrics.dropped.labels("udp", "reassembly_evicted").inc),
        ]
        self._folded = [0] * len(self._folds)
        metrics.before_scrape.append(self._fold)
        self._logged: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The hot path, answered here, synchronously, without a task: what it touches,
        # bound once (every attribute lookup saved is measurable at 50k replies/s).
        self._replies = handler.replies
        self._touch = cache.entries.move_to_end if cache is not None else None
        self._monotonic = cache.monotonic if cache is not None else time.monotonic
        self._wall = handler.clock
        self._stats = handler.front_stats["udp"]
        self._hits = self._stats.hits
        self._recurses = handler.may_recurse
        self._source_of = self.sources.key
        # None when replies are not rate-limited at all: the hot path skips the lookup.
        self._allow = self.reply_rate.allow if settings.udp_rrl_replies_per_s else None
        self._overloaded = metrics.dropped.labels("udp", "overload").inc

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Cache hits are answered even while closing: they cost no task, and during a
        # rolling restart (SO_REUSEPORT) this socket still gets its share until closed.
        replies = self._replies
        if replies:
            shape = resolution_shape(data)
            hit = replies.get(shape) if shape is not None else None
            if (
                hit is not None
                and hit.entry.expires > self._monotonic()
                # A record from upstream goes only to clients allowed recursion.
                and (not hit.entry.foreign or self._recurses(addr[0]))
            ):
                started = perf_counter()
                allow = self._allow
                if allow is not None:
                    source = self._source_of(addr[0])
                    if source is not None and not allow(source, self.clock()):
                        self._over_rate(data, addr, source)
                        return
                self._touch(hit.entry.key)  # type: ignore[misc]
                tail = hit.tail
                size = len(hit.head) + (0 if tail is None else len(tail) + _CREDENTIAL_BYTES)
                rc = hit.rc
                if size <= self._one_datagram:
                    self._sendto(hit.fit(data, self._wall()), addr)
                elif size <= self._largest_reply:
                    for datagram in fragment_encoded(hit.fit(data, self._wall())):
                        self._sendto(datagram, addr)
                else:
                    rc = _ERROR  # counted as sent: the small RC 2
                    self._send_too_large(data, addr)
                self._hits[rc] = self._hits.get(rc, 0) + 1
                self._stats.observe(perf_counter() - started)
                return
        if self.closing:
            return  # shutting down: in-flight requests finish, new ones are not taken
        if self.inflight >= self.max_inflight:
            self._overloaded()
            self._note("overload", "UDP requests dropped: %d in flight", self.inflight)
            return
        if (
            len(data) >= ENVELOPE_BYTES
            and _U32.unpack_from(data, LENGTH_OFFSET)[0] != len(data) - ENVELOPE_BYTES
        ):
            try:
                whole = self.reassembler.feed(
                    data, self.clock(), addr, owner=self._fragment_owner(addr[0])
                )
            except ProtocolError:
                whole = data  # let the handler answer the malformed fragment with RC 4
            if whole is None:
                return  # waiting for more fragments
            data = whole
        source = self._source_of(addr[0])
        if not self.held.take(source):
            self.source_busy += 1
            self._note(
                "source_inflight",
                "UDP requests from %s dropped: %d in flight (udp_max_inflight_per_source)",
                source,
                self.held.per_source,
            )
            return
        allow = self._allow
        if allow is not None and source is not None and not allow(source, self.clock()):
            self.held.give_back(source)
            self._over_rate(data, addr, source)
            return
        self.inflight += 1
        task = asyncio.get_running_loop().create_task(self._answer(data, addr, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        try:
            reply = await self.handler.handle(
                data, Peer("udp", sockaddr(addr), max_reply_bytes=self.max_reply_bytes)
            )
            if self.transport is not None:
                out = messages(reply)
                if sum(wire_bytes(len(m)) for m in out) > self.max_reply_bytes:
                    self._send_too_large(data, addr)
                    return
                for message in out:
                    for datagram in fragment_encoded(message):
                        self.transport.sendto(datagram, addr)
        except Exception:
            log.exception("UDP reply to %s failed", addr[0])
        finally:
            self.inflight -= 1
            self.held.give_back(source)

    def _send_too_large(self, data: bytes, addr: tuple[str, int]) -> None:
        """One small RC 2 instead of a reply over the cap (overcap.retry_over_tcp)."""
        self.too_large += 1
        small = retry_over_tcp(data, TOO_LARGE, now=self._wall(), site_serial=self.handler.serial)
        if small is not None:
            self._sendto(small, addr)

    def _over_rate(self, data: bytes, addr: tuple[str, int], source: str) -> None:
        """A reply over the source's rate: dropped, but every ``slip``-th is sent as the
        small RC 2 (retry over TCP), so a client sharing the network with a flood (or
        whose address a flood spoofs) still gets through, over TCP."""
        self.over_rate += 1
        self._note("rate", "UDP replies to %s over udp_rrl_replies_per_s: limited", source)
        if self.slip and self.over_rate % self.slip == 0:
            small = retry_over_tcp(
                data, RATE_LIMITED, now=self._wall(), site_serial=self.handler.serial
            )
            if small is not None:
                self.rate_slipped += 1
                self._sendto(small, addr)
                return
        self.rate_dropped += 1

    def _note(self, kind: str, message: str, *args: object) -> None:
        """Log ``message`` if nothing of this kind was logged in the last LOG_EVERY_S:
        a flood makes one line a minute, not one per datagram."""
        now = self.clock()
        if now >= self._logged.get(kind, float("-inf")):
            self._logged[kind] = now + LOG_EVERY_S
            log.warning(message + " (logged at most once a minute; see the metrics)", *args)

    def _fold(self) -> None:
        """The plain counts, into their Prometheus counters (at each scrape)."""
        folded = self._folded
        for i, (read, inc) in enumerate(self._folds):
            count = read()
            if count > folded[i]:
                inc(count - folded[i])
                folded[i] = count

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the client went away): nothing to do.
        self.metrics.dropped.labels("udp", "send_error").inc()

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

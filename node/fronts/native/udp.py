"""The native UDP front: each datagram (or reassembled message) becomes a task; at most
``udp_max_inflight`` run at once, and at most ``udp_max_inflight_per_source`` for one
source network, the rest dropped and counted, so a flood cannot queue unbounded work
nor take every slot from other clients. Replies longer than one datagram are
fragmented into 512-byte datagrams, as the reference Java client expects.

Cache hits are answered synchronously in ``datagram_received``, without a task; one
repeated within the same second goes out from the datagrams kept ready at its first
(node.fronts.native.ready), with only its ids patched in.

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
import errno
import logging
import struct
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

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
from node.fronts.native.ready import (
    BODY_AT,
    IDS_AT,
    IDS_END,
    MIDDLE_AT,
    READY_MAX,
    READY_MAX_BYTES,
    Ready,
    prepared,
)
from node.fronts.native.segments import MAX_SEGMENTS, segment_at
from node.resolution.cache.records import ReplyMap
from node.resolution.cache.stats import HIT_BUCKETS_S
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import Holdings, RateLimiter, SourceKeys, peer_keys
from node.settings import Settings
from protocol.codes import ResponseCode
from protocol.errors import ProtocolError
from protocol.fragment import MAX_DATAGRAM_BYTES, Reassembler, fragment_encoded
from protocol.message import (
    ENVELOPE_BYTES,
    LENGTH_OFFSET,
)
from protocol.replycache import resolution_shape

log = logging.getLogger("idnode.native")
_U32 = struct.Struct(">I")
_CREDENTIAL_BYTES = 4  # the empty credential a cached reply ends with, after its tail
_ERROR = int(ResponseCode.ERROR)
# Limits hit under a flood are logged at most this often each (the counters count).
LOG_EVERY_S = 60.0
_EXEMPT_MAX = 65_536  # exempt hosts remembered (as SourceKeys bounds its memo)


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
        self._monotonic = cache.monotonic if cache is not None else time.monotonic
        self._wall = handler.clock
        self._stats = handler.front_stats["udp"]
        self._hits = self._stats.hits
        self._latency = self._stats.counts
        self._recurses = handler.may_recurse
        self._source_of = self.sources.key
        # Replies hit in the wall clock's second [_ready_from, _ready_until), ready to
        # send again, by the body part of their request key: cleared when it changes.
        self._ready: dict[bytes, Ready] = {}
        self._ready_from = self._ready_until = 0.0
        self._ready_bytes = 0
        self._segments = 1  # until connection_made knows better
        # Hosts in rate_limit_exempt_networks seen so far: no source key to look up.
        self._exempt: set[str] = set()
        # None when replies are not rate-limited at all: the hot path skips the lookup.
        self._allow = self.reply_rate.allow if settings.udp_rrl_replies_per_s else None
        self._overloaded = metrics.dropped.labels("udp", "overload").inc
        # The access log is set from settings before any front exists (node.app).
        self._access_on = metrics.access.mode != "off"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sendto = transport.sendto  # type: ignore[attr-defined]
        # Datagrams one sendto may carry (node.fronts.native.segments): every datagram
        # this front sends is 512 bytes or less, so only ready replies, sent whole, are cut.
        self._segments = MAX_SEGMENTS if segment_at(transport, MAX_DATAGRAM_BYTES) else 1

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Cache hits are answered even while closing: they cost no task, and during a
        # rolling restart (SO_REUSEPORT) this socket still gets its share until closed.
        replies = self._replies
        if replies:
            # A request key's part from byte 40 on, looked up; the rest is compared.
            body = data[BODY_AT:]
            ready = self._ready.get(body)
            if ready is not None:
                lead, middle, shape, kept, entry, reply_lead, joined, parts, rc = ready
                now = self._wall()
                started = self._monotonic()  # also what the hit took is measured from
                if (
                    data.startswith(middle, MIDDLE_AT)
                    and data.startswith(lead)
                    and replies.get(shape) is kept  # not invalidated, evicted nor replaced
                    and self._ready_from <= now < self._ready_until
                    and entry.expires > started
                    # A record from upstream goes only to clients allowed recursion.
                    and (not entry.foreign or self._recurses(addr[0]))
                ):
                    if (
                        self._allow is not None
                        and addr[0] not in self._exempt
                        and self._limited(data, addr)
                    ):
                        return
                    entry.used = True  # the cache's clock: used since its hand passed
                    # Every datagram of the reply starts with these 12 bytes.
                    ids = reply_lead + data[IDS_AT:IDS_END]
                    if joined:  # one datagram, or all of them cut by the kernel
                        self._sendto(ids.join(parts), addr)
                    else:
                        for rest in parts:
                            self._sendto(ids + rest, addr)
                    self._hits[rc] += 1
                    elapsed = self._monotonic() - started  # FrontStats.observe, inlined
                    self._latency[bisect_left(HIT_BUCKETS_S, elapsed)] += 1
                    self._stats.total += elapsed
                    if self._access_on:  # node.runtime.accesslog
                        self.metrics.access.hit("udp", data, rc, elapsed, addr[0])
                    return
            if self._hit(replies, data, addr, body):
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

    def _hit(self, replies: ReplyMap, data: bytes, addr: tuple[str, int], body: bytes) -> bool:
        """Answer ``data`` from the reply cache if it holds a fresh reply to it (False:
        take the full path), and keep the datagrams sent ready for this second."""
        shape = resolution_shape(data)
        if shape is None:
            return False
        hit = replies.get(shape)
        if hit is None:
            return False
        entry = hit.entry
        started = self._monotonic()
        if entry.expires <= started or (entry.foreign and not self._recurses(addr[0])):
            return False
        if self._allow is not None and addr[0] not in self._exempt and self._limited(data, addr):
            return True
        entry.used = True
        rc = self._send_kept(hit, data, addr, shape, body)
        self._hits[rc] = self._hits.get(rc, 0) + 1
        elapsed = self._monotonic() - started
        self._stats.observe(elapsed)
        if self._access_on:
            self.metrics.access.hit("udp", data, rc, elapsed, addr[0])
        return True

    def _send_kept(
        self, hit: Any, data: bytes, addr: tuple[str, int], shape: bytes, body: bytes | None
    ) -> int:
        """Send ``hit`` (a kept reply) fitted to ``data``, or the small RC 2 when it is
        over the cap; the code sent. With ``body`` (the request key's part from byte 40),
        the datagrams are kept ready for the rest of this second."""
        tail = hit.tail
        size = len(hit.head) + (0 if tail is None else len(tail) + _CREDENTIAL_BYTES)
        if size <= self._largest_reply or size <= self._one_datagram:
            now = self._wall()
            reply = hit.fit(data, now)
            datagrams = [reply] if size <= self._one_datagram else fragment_encoded(reply)
            for datagram in datagrams:
                self._sendto(datagram, addr)
            if body is not None and hit.digest is None:  # else fitted every time
                self._keep_ready(body, data, shape, hit, datagrams, hit.rc, now)
            return int(hit.rc)
        self._send_too_large(data, addr)
        return _ERROR  # counted as sent: the small RC 2

    def _keep_ready(
        self,
        body: bytes,
        request: bytes,
        shape: bytes,
        hit: Any,
        datagrams: list[bytes | bytearray],
        rc: int,
        now: float,
    ) -> None:
        """Keep the datagrams just sent to ``request`` ready for the rest of this second."""
        if not self._ready_from <= now < self._ready_until:
            self._ready.clear()  # a new second: every expiration stamped changes
            self._ready_bytes = 0
            second = int(now)  # as ReplyTemplate.fit stamps it
            self._ready_from, self._ready_until = second, second + 1
        if len(self._ready) < READY_MAX and self._ready_bytes < READY_MAX_BYTES:
            self._ready[body], size = prepared(request, shape, hit, datagrams, rc, self._segments)
            self._ready_bytes += size

    def _limited(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Whether a cache hit for ``addr`` is over its network's reply rate (then
        handled: dropped or slipped). Exempt hosts are remembered, so that loopback
        costs the hot path one set lookup."""
        assert self._allow is not None
        host = addr[0]
        source = self._source_of(host)
        if source is None:
            if len(self._exempt) >= _EXEMPT_MAX:
                self._exempt.clear()
            self._exempt.add(host)
            return False
        if self._allow(source, self.clock()):
            return False
        self._over_rate(data, addr, source)
        return True

    async def _answer(self, data: bytes, addr: tuple[str, int], source: str | None) -> None:
        try:
            quick = self.handler.quick
            shape = resolution_shape(data) if quick is not None else None
            if shape is not None:
                assert quick is not None
                started = time.perf_counter()
                kept = await quick.answer(data, shape, "udp")
                if kept is not None:
                    if self.transport is not None:
                        rc = self._send_kept(kept, data, addr, shape, None)
                        seconds = time.perf_counter() - started
                        quick.counted("udp", rc, seconds)
                        if self._access_on:
                            self.metrics.access.hit("udp", data, rc, seconds, addr[0])
                    return
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
        if self._segments > 1 and isinstance(exc, OSError) and exc.errno == errno.EIO:
            # The kernel would not cut a reply into datagrams on some route: send them
            # one by one from now on (node.fronts.native.segments).
            self._segments = 1
            self._ready.clear()
            self._ready_bytes = 0
            if self.transport is not None:
                segment_at(self.transport, 0)
            log.warning(
                "UDP segmentation offload refused (%s): replies sent datagram by datagram", exc
            )

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

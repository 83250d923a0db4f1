"""Kept ``GET /api/handles/{handle}`` replies answered by the connection itself.

The HTTP port's connections (node.runtime.httpserve) offer each plain request head to
``HotLane.answer`` before aiohttp sees it (node.runtime.fastlane says which qualify);
a hit is written as the bytes aiohttp would have written for it (``HotReply.wire``),
without a request object, a task, the router or the middlewares. A miss of a plain
path (no query, nothing escaped) is read here too (``HotLane.fill``): the record
resolved, its reply kept as the full path keeps it (node.fronts.http.handles), then
written as a hit is, while the connection holds what follows; aiohttp's stack costs a
miss more than the registry read does. Anything else (a query, a record not found or
not this node's, a registry that does not answer) goes to aiohttp as before, where the
same kept reply may still be served (hot.py).

Counted as the middleware counts a request (``idnode_requests_total``,
``idnode_request_seconds``, through a ``RequestTally``), as the hot path does
(``idnode_cache_hits_total``, ``idnode_cache_hit_seconds``; a miss read here as a
miss), and on its own
(``idnode_http_fast_lane_replies_total``); logged on ``idnode.access`` as the access
middleware logs a request (node.fronts.http.access), when the access log wants it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from time import perf_counter

from aiohttp.helpers import rfc822_formatted_time
from multidict import CIMultiDict
from yarl import URL

from node.fronts.http.errors import http_status
from node.fronts.http.handles import found_body, keepable, wire_values
from node.fronts.http.hot import HotReplies, HotReply, target_shape
from node.fronts.http.reply import cache_control_of, json_bytes
from node.resolution.resolver import Resolver, WireFound
from node.runtime.httpserve import SERVER
from node.runtime.metrics import NodeMetrics
from node.runtime.tally import RequestTally
from registry.errors import RegistryError

PATH_PREFIX = b"/api/handles/"
OP = "resolution"  # the route name the middleware counts GET /api/handles/{handle} under


class HotLane:
    """``node.runtime.fastlane.QuickAnswers`` for the HTTP front's kept replies."""

    prefix = PATH_PREFIX

    def __init__(
        self,
        hot: HotReplies,
        metrics: NodeMetrics,
        client_address: Callable[[str | None, Mapping[str, str]], str | None],
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.hot = hot
        # With a resolver, misses are answered here too (``fill``).
        self.resolver = resolver
        self.clock = clock
        self.metrics = metrics  # its access log is set once the node has its settings
        self.client_address = client_address  # behind trusted proxies, the forwarded one
        self.tally = RequestTally(metrics, "http", OP)
        # What a hit touches, bound once (as HotReplies.find, which the slow path uses).
        self._replies = hot.replies
        self._monotonic = hot.cache.monotonic
        self._may_recurse = hot.may_recurse
        self._stats = hot.stats
        self._hits = hot.stats.hits
        self._date: str | None = None
        self._closing = b""
        self._folded = 0
        self._fold_into = metrics.http_fast_lane.inc
        metrics.before_scrape.append(self._fold)

    def _fold(self) -> None:
        answered = self.tally.count
        if answered > self._folded:
            self._fold_into(answered - self._folded)
            self._folded = answered

    def _closing_lines(self) -> bytes:
        """Date and Server, then the blank line: Date as aiohttp writes it (its own
        per-second formatting), so both paths agree to the second."""
        date = rfc822_formatted_time()
        if date is not self._date:
            self._date = date
            self._closing = f"Date: {date}\r\nServer: {SERVER}\r\n\r\n".encode("ascii")
        return self._closing

    def answer(
        self,
        target: bytes,
        bodiless: bool,
        if_none_match: bytes | None,
        fields: bytes,
        peer: str | None,
    ) -> bytes | None:
        started = perf_counter()
        key, callback = target, None
        if b"?" in target:
            shape = target_shape(target)
            if shape is None:
                return None
            key, callback = shape
        reply: HotReply | None = self._replies.get(key)
        if reply is None:
            return None
        entry = reply.entry
        if entry.expires <= self._monotonic():
            return None
        if entry.foreign and not self._may_recurse(peer):
            return None  # from upstream: for clients allowed recursion only
        entry.used = True  # as RecordCache.touch: used since the clock's hand passed
        rc = reply.rc
        hits = self._hits
        hits[rc] = hits.get(rc, 0) + 1
        if callback is None and if_none_match is None:
            wire = reply.wire(self._closing_lines(), bodiless)
        else:
            field = None if if_none_match is None else if_none_match.decode("latin-1")
            wire = reply.wire(self._closing_lines(), bodiless, callback, field)
        elapsed = perf_counter() - started
        self._stats.observe(elapsed)
        self.tally.add(rc, elapsed)
        access = self.metrics.access
        if access.wanted():
            access.write("http", OP, handle_of(target), rc, elapsed, self._client(peer, fields))
        return wire

    async def fill(
        self,
        target: bytes,
        bodiless: bool,
        if_none_match: bytes | None,
        fields: bytes,
        peer: str | None,
    ) -> bytes | None:
        """A miss of ``answer``: the record read and its reply kept as the full path
        (node.fronts.http.handles) keeps it, then written as a hit is; None when the full
        path must answer (a query, an escaped or dotted path, anything but this node's
        own record found and keepable)."""
        resolver = self.resolver
        if resolver is None or not _plain_path(target):
            return None
        started = perf_counter()
        text = target[len(PATH_PREFIX) :].decode("ascii")
        now = self.clock()
        # Not forwarded (forward=False): a record served elsewhere is the full path's,
        # which forwards and counts it.
        try:
            result = await resolver.resolve(text, (), (), now, wire=True)
        except RegistryError:
            return None  # the full path says what is down (RC 3, 503)
        if type(result) is not WireFound or result.entry is None or result.stale:
            return None
        count, shown, timings = wire_values(result)
        if not keepable(False, timings):
            return None
        rc, body = found_body(text, count, shown, public_only=True)
        status = http_status(rc, resolution=True)
        reply = HotReply(
            status, int(rc), json_bytes(body), cache_control_of(timings, now, private=False)
        )
        self.hot.keep(target, result.entry, reply)
        field = None if if_none_match is None else if_none_match.decode("latin-1")
        wire = reply.wire(self._closing_lines(), bodiless, None, field)
        elapsed = perf_counter() - started
        self.tally.add(rc, elapsed)
        access = self.metrics.access
        if access.wanted():
            access.write("http", OP, text, rc, elapsed, self._client(peer, fields))
        return wire

    def _client(self, peer: str | None, fields: bytes) -> str | None:
        headers: CIMultiDict[str] = CIMultiDict()
        for line in fields.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers.add(name, value.strip(" \t"))
        return self.client_address(peer, headers)


def _plain_path(target: bytes) -> bool:
    """A target whose handle is its path as is: no query, nothing percent-encoded, no
    empty or dot segment (which a router may read otherwise)."""
    return not (b"?" in target or b"%" in target or b"/." in target or b"//" in target) and len(
        target
    ) > len(PATH_PREFIX)


def handle_of(target: bytes) -> str:
    """The handle as the router reads it from the target (``match_info["handle"]``)."""
    path = target.decode("ascii").partition("?")[0]
    return URL.build(path=path, encoded=True).path[len(PATH_PREFIX) :]

"""Kept ``GET /api/handles/{handle}`` replies answered by the connection itself.

The HTTP port's connections (node.runtime.httpserve) offer each plain request head to
``HotLane.answer`` before aiohttp sees it (node.runtime.fastlane says which qualify);
a hit is written as the bytes aiohttp would have written for it (``HotReply.wire``),
without a request object, a task, the router or the middlewares. A miss, or anything
the lane does not answer, goes to aiohttp as before, where the same kept reply may
still be served (hot.py).

Counted as the middleware counts a hit (``idnode_requests_total``,
``idnode_request_seconds``, through a ``RequestTally``), as the hot path does
(``idnode_cache_hits_total``, ``idnode_cache_hit_seconds``), and on its own
(``idnode_http_fast_lane_replies_total``); logged on ``idnode.access`` as the access
middleware logs a request (node.fronts.http.access), when the access log wants it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from time import perf_counter

from aiohttp.helpers import rfc822_formatted_time
from multidict import CIMultiDict
from yarl import URL

from node.fronts.http.hot import HotReplies, HotReply, target_shape
from node.runtime.httpserve import SERVER
from node.runtime.metrics import NodeMetrics
from node.runtime.tally import RequestTally

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
    ):
        self.hot = hot
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

    def _client(self, peer: str | None, fields: bytes) -> str | None:
        headers: CIMultiDict[str] = CIMultiDict()
        for line in fields.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers.add(name, value.strip(" \t"))
        return self.client_address(peer, headers)


def handle_of(target: bytes) -> str:
    """The handle as the router reads it from the target (``match_info["handle"]``)."""
    path = target.decode("ascii").partition("?")[0]
    return URL.build(path=path, encoded=True).path[len(PATH_PREFIX) :]

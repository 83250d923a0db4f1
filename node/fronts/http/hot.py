"""The HTTP front's hot path: ready-to-send ``GET /api/handles/{handle}`` replies.

A reply is kept for anonymous requests only (no Authorization header: the caller sees
public values, whoever it is), keyed on the raw path and query string minus the JSONP
``callback``, which is wrapped around the kept JSON bytes per request. ``auth=true``
asks for an authoritative answer and always reads the registry (REST API, docs/rest-api.md).
A hit builds one ``web.Response`` from kept bytes and headers: no handle parsing, no
resolver, no JSON encoding.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from node.fronts.http import params
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import CORS_HEADERS, JSON_TYPE, JSONP_TYPE, RC_KEY
from node.resolution.cache.records import Entry, RecordCache
from node.resolution.cache.stats import FrontStats


class HotReply:
    """A ready-to-send GET reply kept in the cache (node.resolution.cache.records.Kept)."""

    __slots__ = ("body", "cache_control", "entry", "headers", "rc", "status")
    entry: Entry

    def __init__(
        self,
        status: int,
        rc: int,
        body: bytes,
        cache_control: str,
        extra: dict[str, str] | None = None,
    ):
        self.status = status
        self.rc = rc
        self.body = body  # the JSON, before any JSONP wrapping
        self.cache_control = cache_control
        # Built once (aiohttp's content_type/charset arguments parse and re-render the
        # header on every response) and shared by every reply with this Cache-Control.
        headers = _SHARED.get(cache_control)
        if headers is None:
            headers = _headers(f"{JSON_TYPE}; charset=utf-8", cache_control)
            if len(_SHARED) < _SHARED_MAX:
                _SHARED[cache_control] = headers
        # A forwarded record's reply says how its signature checked: its own headers.
        self.headers = {**headers, **extra} if extra else headers

    def nbytes(self) -> int:
        return len(self.body) + len(self.cache_control)


# Cache-Control values are few ("public, max-age=<the values' TTL>"): one headers dict
# each, bounded in case TTLs vary widely.
_SHARED: dict[str, dict[str, str]] = {}
_SHARED_MAX = 1024


def _headers(content_type: str, cache_control: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": cache_control,
        **CORS_HEADERS,
    }


def shape_of(request: web.Request) -> tuple[bytes, str | None] | None:
    """(key, JSONP callback) of a request whose reply may be kept; None otherwise."""
    if "Authorization" in request.headers:
        return None
    raw = request.raw_path
    path, _, query = raw.partition("?")
    if not query:
        return raw.encode(), None
    if "%" in query:
        # A percent-encoded name (``%63allback``) reads differently raw and decoded:
        # rare enough to leave to the full path rather than parse twice here.
        return None
    callback = None
    try:
        if "auth" in query and params.flag(request.query, "auth"):
            return None
        if "callback" in query:
            callback = params.callback(request.query)
            query = "&".join(p for p in query.split("&") if p.partition("=")[0] != "callback")
    except ApiError:
        return None  # the full path reports the bad parameter
    return (f"{path}?{query}" if query else path).encode(), callback


class HotReplies:
    def __init__(self, cache: RecordCache, may_recurse: Callable[[str | None], bool]):
        self.cache = cache
        self.replies = cache.reply_map("http")
        self.stats = FrontStats()
        self.may_recurse = may_recurse

    def lookup(
        self, shape: bytes, callback: str | None, remote: str | None = None
    ) -> web.Response | None:
        reply = self.replies.get(shape)
        if reply is None:
            return None
        entry = reply.entry
        if entry.expires <= self.cache.monotonic():
            return None
        if entry.foreign and not self.may_recurse(remote):
            return None  # from upstream: for clients allowed recursion only
        self.cache.touch(entry)
        self.stats.hit(reply.rc)
        return _response(reply, callback)

    def keep(self, shape: bytes, entry: Entry, reply: HotReply) -> None:
        self.stats.misses += 1
        self.cache.add_reply(self.replies, shape, entry, reply)


def _response(reply: HotReply, callback: str | None) -> web.Response:
    if callback:
        body = b"/**/" + callback.encode("ascii") + b"(" + reply.body + b");"
        headers = _headers(f"{JSONP_TYPE}; charset=utf-8", reply.cache_control)
        resp = web.Response(body=body, status=reply.status, headers=headers)
    else:
        resp = web.Response(body=reply.body, status=reply.status, headers=reply.headers)
    resp[RC_KEY] = reply.rc
    return resp

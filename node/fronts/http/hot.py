"""The HTTP front's hot path: ready-to-send ``GET /api/handles/{handle}`` replies.

A reply is kept for anonymous requests only (no Authorization header: the caller sees
public values, whoever it is), keyed on the raw path and query string minus the JSONP
``callback``, which is wrapped around the kept JSON bytes per request. ``auth=true``
asks for an authoritative answer and always reads the registry (REST API, docs/rest-api.md).

A kept reply is served two ways, with the same headers in the same order: as one
``web.Response`` when aiohttp parsed the request (no handle parsing, no resolver, no
JSON encoding), and as bytes the connection writes itself (``HotReply.wire``, for
node.fronts.http.fastlane). A 200 reply carries an ``ETag`` (a hash of the bytes sent)
and a request whose ``If-None-Match`` names it gets 304 (RFC 9110 §13.1.2, §15.4.5),
the same on the full path (``validated``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from http import HTTPStatus

from aiohttp import web
from multidict import MultiMapping
from yarl import URL

from node.fronts.http import params
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import CORS_HEADERS, JSON_TYPE, JSONP_TYPE, RC_KEY
from node.resolution.cache.records import Entry, RecordCache
from node.resolution.cache.stats import FrontStats

IF_NONE_MATCH = "If-None-Match"
# Representation metadata a 304 leaves out (RFC 9110 §15.4.5 lists what it keeps).
_NOT_IN_304 = frozenset({"content-type", "content-length"})

Shape = tuple[bytes, str | None]  # (key of the kept reply, JSONP callback)


# -- validators --------------------------------------------------------------------------


def etag_of(body: bytes) -> str:
    """A strong validator from the bytes sent: a JSONP wrapping or another spelling of
    the handle has its own, and a reply built again from an unchanged record keeps it."""
    digest = hashlib.blake2b(body, digest_size=12).digest()
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"'


def none_match(field: str, etag: str) -> bool:
    """Whether ``If-None-Match: field`` names ``etag`` or is ``*`` (weak comparison, as
    that field uses: RFC 9110 §13.1.2)."""
    for tag in field.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def if_none_match(request: web.BaseRequest) -> str | None:
    """The field's value; several fields make one list (RFC 9110 §5.3)."""
    values = request.headers.getall(IF_NONE_MATCH, ())
    return ", ".join(values) if values else None


def not_modified(headers: Mapping[str, str], etag: str, rc: int | None) -> web.Response:
    resp = web.Response(status=304, headers=_without_content(headers))
    resp.headers["ETag"] = etag
    if rc is not None:
        resp[RC_KEY] = rc
    return resp


def validated(request: web.BaseRequest, resp: web.Response) -> web.Response:
    """A resolution reply built on the full path, with the ETag a kept copy of it would
    carry; 304 instead when the request's If-None-Match names it."""
    body = resp.body
    if resp.status != 200 or not isinstance(body, bytes):
        return resp
    etag = etag_of(body)
    field = if_none_match(request)
    if field is not None and none_match(field, etag):
        return not_modified(resp.headers, etag, resp.get(RC_KEY))
    resp.headers["ETag"] = etag
    return resp


# -- kept replies ------------------------------------------------------------------------


def _headers(
    content_type: str, cache_control: str, extra: Mapping[str, str] | None
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": cache_control,
        **CORS_HEADERS,
        **(extra or {}),
    }


def _without_content(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _NOT_IN_304}


def _serialise(status: int, headers: Mapping[str, str]) -> bytes:
    """The status line and ``headers`` as aiohttp writes them for HTTP/1.1."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class _Look:
    """The headers of the replies sharing one status, Cache-Control and extra headers:
    as dicts (for ``web.Response``) and serialised (for the fast lane). aiohttp's
    content_type/charset arguments parse and re-render the header on every response;
    these are built once."""

    __slots__ = ("headers", "jsonp_headers", "jsonp_wire", "not_modified_wire", "wire")

    def __init__(self, status: int, cache_control: str, extra: Mapping[str, str] | None):
        self.headers = _headers(f"{JSON_TYPE}; charset=utf-8", cache_control, extra)
        self.jsonp_headers = _headers(f"{JSONP_TYPE}; charset=utf-8", cache_control, extra)
        self.wire = _serialise(status, self.headers)
        self.jsonp_wire = _serialise(status, self.jsonp_headers)
        self.not_modified_wire = _serialise(304, _without_content(self.headers))


# Cache-Control values are few ("public, max-age=<the values' TTL>"): one look each,
# bounded in case TTLs vary widely.
_SHARED: dict[tuple[int, str], _Look] = {}
_SHARED_MAX = 1024


def _look(status: int, cache_control: str, extra: Mapping[str, str] | None) -> _Look:
    if extra:
        return _Look(status, cache_control, extra)  # a forwarded record's own headers
    look = _SHARED.get((status, cache_control))
    if look is None:
        look = _Look(status, cache_control, None)
        if len(_SHARED) < _SHARED_MAX:
            _SHARED[(status, cache_control)] = look
    return look


def _wrap(callback: str, body: bytes) -> bytes:
    # "/**/" keeps a reply from starting with attacker-chosen bytes (content sniffing).
    return b"/**/" + callback.encode("ascii") + b"(" + body + b");"


class HotReply:
    """A ready-to-send GET reply kept in the cache (node.resolution.cache.records.Kept)."""

    __slots__ = ("body", "cache_control", "entry", "look", "rc", "status", "tail")
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
        self.look = _look(status, cache_control, extra)
        # What aiohttp writes after the handler's headers, Date and Server aside: the
        # ETag set on the reply (200 only: RFC 9110 §13.2.1), then Content-Length.
        etag = f"ETag: {etag_of(body)}\r\n" if status == 200 else ""
        self.tail = f"{etag}Content-Length: {len(body)}\r\n".encode("ascii")

    @property
    def etag(self) -> str | None:
        tail = self.tail
        return tail[6 : tail.index(b"\r")].decode("ascii") if tail.startswith(b"ETag") else None

    def nbytes(self) -> int:
        return len(self.body) + len(self.cache_control) + len(self.tail)

    def response(self, callback: str | None, if_none_match: str | None) -> web.Response:
        """This reply for aiohttp to send, for a request with this JSONP ``callback``
        and If-None-Match field."""
        look, body, etag = self.look, self.body, self.etag
        headers = look.headers
        if callback:
            body, headers = _wrap(callback, body), look.jsonp_headers
            etag = etag_of(body) if etag is not None else None
        if etag is not None and if_none_match is not None and none_match(if_none_match, etag):
            return not_modified(headers, etag, self.rc)
        resp = web.Response(body=body, status=self.status, headers=headers)
        if etag is not None:
            resp.headers["ETag"] = etag
        resp[RC_KEY] = self.rc
        return resp

    def wire(
        self,
        closing: bytes,
        bodiless: bool = False,
        callback: str | None = None,
        if_none_match: str | None = None,
    ) -> bytes:
        """The bytes ``response`` makes aiohttp write, ``closing`` (the Date and Server
        lines and the blank line) included. ``bodiless``: for HEAD, the GET's headers."""
        if callback is None and if_none_match is None:
            return b"".join((self.look.wire, self.tail, closing, b"" if bodiless else self.body))
        look, body, etag = self.look, self.body, self.etag
        head = look.wire
        if callback:
            body, head = _wrap(callback, body), look.jsonp_wire
            etag = etag_of(body) if etag is not None else None
        tag = b"" if etag is None else f"ETag: {etag}\r\n".encode("ascii")
        if etag is not None and if_none_match is not None and none_match(if_none_match, etag):
            return look.not_modified_wire + tag + closing
        length = f"Content-Length: {len(body)}\r\n".encode("ascii")
        return b"".join((head, tag, length, closing, b"" if bodiless else body))


# -- request shapes ----------------------------------------------------------------------


def shape_of(request: web.Request) -> Shape | None:
    """(key, JSONP callback) of a request whose reply may be kept; None otherwise."""
    if "Authorization" in request.headers:
        return None
    raw = request.raw_path
    if "?" not in raw:
        return raw.encode(), None
    return _shape(raw, lambda: request.query)


def target_shape(target: bytes) -> Shape | None:
    """``shape_of`` for a request target read off the connection (origin form, ASCII,
    no fragment) of a request without Authorization: the same key, parsed as aiohttp
    parses a target (node.fronts.http.fastlane)."""
    if b"?" not in target:
        return target, None
    raw = target.decode("ascii")
    return _shape(raw, lambda: URL.build(query_string=raw.partition("?")[2], encoded=True).query)


def _shape(raw: str, query_of: Callable[[], MultiMapping[str]]) -> Shape | None:
    path, _, query = raw.partition("?")
    if not query:
        return raw.encode(), None
    if "%" in query:
        # A percent-encoded name (``%63allback``) reads differently raw and decoded:
        # rare enough to leave to the full path rather than parse twice here.
        return None
    callback = None
    try:
        if "auth" in query and params.flag(query_of(), "auth"):
            return None
        if "callback" in query:
            callback = params.callback(query_of())
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

    def find(self, key: bytes, remote: str | None) -> HotReply | None:
        """The live reply kept for ``key`` that ``remote`` may be sent, counted as a hit."""
        reply: HotReply | None = self.replies.get(key)
        if reply is None:
            return None
        entry = reply.entry
        if entry.expires <= self.cache.monotonic():
            return None
        if entry.foreign and not self.may_recurse(remote):
            return None  # from upstream: for clients allowed recursion only
        self.cache.touch(entry)
        self.stats.hit(reply.rc)
        return reply

    def lookup(
        self,
        shape: bytes,
        callback: str | None,
        remote: str | None = None,
        if_none_match: str | None = None,
    ) -> web.Response | None:
        reply = self.find(shape, remote)
        return None if reply is None else reply.response(callback, if_none_match)

    def keep(self, shape: bytes, entry: Entry, reply: HotReply) -> None:
        self.stats.misses += 1
        self.cache.add_reply(self.replies, shape, entry, reply)

"""Building REST replies: JSON (orjson), ``pretty``, JSONP ``callback``, CORS and
Cache-Control headers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from node.fronts.http import params
from node.fronts.http.errors import ApiError
from protocol.codes import TTLType
from protocol.values import HandleValue

JSON_TYPE = "application/json"
JSONP_TYPE = "application/javascript"
MAX_CACHE_S = 86400

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Retry-After, WWW-Authenticate, Location",
}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}
NO_STORE = "no-store"
RC_KEY = web.ResponseKey("idnode.rc", int)  # the reply's Handle response code, for metrics


@dataclass(frozen=True, slots=True)
class Style:
    """How the client wants the body: indented, and/or wrapped in a JSONP call."""

    pretty: bool = False
    callback: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> Style:
        """Never raises: an invalid callback is reported by ``check`` (as plain JSON)."""
        try:
            pretty = params.flag(request.query, "pretty")
        except ApiError:
            pretty = False
        try:
            callback = params.callback(request.query)
        except ApiError:
            callback = None
        return cls(pretty, callback)


def json_bytes(body: Mapping[str, Any], style: Style = Style()) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if style.pretty else 0)


def render(
    body: Mapping[str, Any],
    *,
    status: int,
    style: Style = Style(),
    headers: Mapping[str, str] | None = None,
    encoded: bytes | None = None,
) -> web.Response:
    """``encoded``: ``json_bytes(body, style)`` already made by the caller (a reply it
    also keeps), not made again."""
    data = json_bytes(body, style) if encoded is None else encoded
    if style.callback:
        # "/**/" keeps a reply from starting with attacker-chosen bytes (content sniffing).
        data = b"/**/" + style.callback.encode("ascii") + b"(" + data + b");"
        ctype = JSONP_TYPE
    else:
        ctype = JSON_TYPE
    resp = web.Response(body=data, status=status, content_type=ctype, charset="utf-8")
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if "responseCode" in body:
        resp[RC_KEY] = int(body["responseCode"])
    if headers:
        resp.headers.update(headers)
    return resp


def error_reply(err: ApiError, style: Style = Style()) -> web.Response:
    body: dict[str, Any] = {"responseCode": err.response_code}
    if err.handle is not None:
        body["handle"] = err.handle
    body["message"] = err.message
    body.update(err.details)
    headers = {"Cache-Control": NO_STORE, **err.headers}
    return render(body, status=err.status, style=style, headers=headers)


def cache_control(values: Iterable[HandleValue], now: float, *, private: bool) -> str:
    """Cacheable for as long as the shortest TTL among the values sent (RFC 3651 §3.1:
    a relative TTL in seconds, an absolute one as the expiry time); never stored by
    shared caches when the reply holds non-public values or answered credentials."""
    return cache_control_of(((v.ttl_type, v.ttl) for v in values), now, private=private)


def cache_control_of(timings: Iterable[tuple[int, int]], now: float, *, private: bool) -> str:
    """``cache_control`` from the values' (TTL type, TTL) pairs (protocol.wirescan)."""
    if private:
        return "private, no-store"
    ages = []
    for ttl_type, ttl in timings:
        if ttl_type == TTLType.ABSOLUTE:
            ages.append(max(0, ttl - int(now)))
        else:
            ages.append(ttl)
    age = min([MAX_CACHE_S, *ages])
    return f"public, max-age={age}" if age > 0 else "no-cache"

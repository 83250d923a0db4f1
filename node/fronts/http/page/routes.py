"""``GET /{handle}``: what people expect from a handle URL in a browser (docs/rest-api.md
"Proxy behaviour", as the Handle.Net proxy hdl.handle.net answers).

- a 302 to the record's first URL value (lowest index of type URL);
- ``?noredirect`` (a flag without a value is true), or no URL value: an HTML page of
  the values, business fields labelled from the record's data template (index 1001
  TEMPLATE -> the template record's IDIS_TEMPLATE value, docs/idis.md);
- ``Accept: application/json``: the body ``GET /api/handles/{handle}`` gives an
  anonymous caller, built with the same helpers (``reply.render``, ``values_to_json``).

HS_ALIAS values are followed (the reference client resolver does the same) at most
``MAX_ALIAS_HOPS`` times and never twice through one handle, so a loop or an endless
chain is an error (RC 6, HTTP 508) rather than a hung request. Only public values are
used, whoever asks: this is the anonymous face; the REST API serves authenticated reads.

``page_routes`` is an ``http_app`` extension. Pass it last: its ``/{handle:.+}`` route
is a catch-all. aiohttp tries the most specific path prefix first (``/api``, then
``/``), so explicit routes such as ``/api/...`` always win over it, and a lookahead
keeps unknown ``/api/`` paths the API's JSON 404 instead of a handle page, and unknown
``/console/`` paths a 404 rather than a record page (identifier prefixes are dotted
numbers here, so no record is hidden by it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

import orjson
from aiohttp import web
from yarl import URL

from node.fronts.http import params
from node.fronts.http.errors import ApiError, http_status
from node.fronts.http.page import html, signature
from node.fronts.http.reply import NO_STORE, Style, cache_control, error_reply, render
from node.fronts.http.services import HttpServices, services
from node.resolution.outcomes import Found, PrefixReferral, ResolveResult, ValuesNotFound
from protocol.codes import ResponseCode as RC
from protocol.handle import normalise
from protocol.jsonvalues import values_to_json
from protocol.values import HandleValue, select_values
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.http.page")

MAX_ALIAS_HOPS = 5
ALIAS_TYPE = "HS_ALIAS"
URL_TYPE = "URL"
TEMPLATE_TYPE = "TEMPLATE"
# The page runs no script and loads nothing: forbid both, so an escaping slip still
# could not execute anything. Inline CSS is the only thing it needs.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Vary": "Accept",
}
_TITLES = {
    RC.HANDLE_NOT_FOUND: "标识不存在 · Handle not found",
    RC.INVALID_HANDLE: "标识无效 · Invalid handle",
    RC.SERVER_NOT_RESP: "前缀不由本节点解析 · Prefix not served here",
    RC.RECURSION_COUNT_TOO_HIGH: "别名无法解析 · Alias cannot be resolved",
    RC.PROTOCOL_ERROR: "请求无效 · Bad request",
    RC.SERVER_TOO_BUSY: "暂时无法解析 · Temporarily unavailable",
}


@dataclass(frozen=True, slots=True)
class Resolved:
    chain: tuple[str, ...]  # the handles resolved, the asked one first
    registered_as: str
    values: tuple[HandleValue, ...]  # public values of the last one, index order
    withheld: tuple[HandleValue, ...] = ()  # its other values: never shown, only counted
    forwarded: bool = False  # fetched from the prefix's own node, through the tree


def page_routes(app: web.Application) -> None:
    """The ``http_app`` extension: ``/`` (a search form) and ``/{handle}``."""
    app.router.add_get("/", home, name="page_home")
    app.router.add_get(r"/{handle:(?!api/|console/|console$).+}", record_page, name="page")


def wants_json(accept: str) -> bool:
    """True when Accept names application/json (or a +json type) at least as highly
    as HTML. Browsers never list JSON; ``*/*`` (curl) gets the redirect."""
    best_json = best_html = 0.0
    for media, q in params.weighted(accept):
        if media == "application/json" or (
            media.startswith("application/") and media.endswith("+json")
        ):
            best_json = max(best_json, q)
        elif media in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, q)
    return best_json > 0 and best_json >= best_html


def handle_in_path(request: web.Request) -> str:
    """The handle from the raw path, percent-decoded once as strict UTF-8: ``%2F`` and
    '/' both separate suffix parts, and a stray ``%FF`` is an invalid handle."""
    try:
        return unquote_to_bytes(request.rel_url.raw_path[1:]).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            RC.INVALID_HANDLE, "the handle in the path is not UTF-8 once percent-decoded"
        ) from None


def redirect_target(values: tuple[HandleValue, ...]) -> str | None:
    """The first URL value (lowest index) usable as a Location: an absolute http(s)
    URL naming a host (``html.is_web_url``: an allowlist, so ``ws:``, ``intent:``,
    ``view-source:``, ``javascript:`` in any case are never redirected to) with no
    control characters or spaces, which browsers would strip before reading the
    scheme. Non-ASCII is percent-encoded, since header values are ASCII; the encoded
    form is checked again."""
    for v in sorted(values, key=lambda v: v.index):
        if v.type.upper() != URL_TYPE:
            continue
        text = v.data.decode("utf-8", "replace").strip()
        if not html.is_web_url(text):
            continue
        try:
            location = str(URL(text))
        except ValueError:
            continue
        if location.isascii() and html.is_web_url(location):
            return location
    return None


async def resolve_following_aliases(
    svc: HttpServices, text: str, now: float, *, forward: bool = False
) -> Resolved:
    """Resolve ``text``; while the record holds a public HS_ALIAS value, resolve the
    handle it names instead. Failures are ApiErrors echoing the asked handle."""
    chain = [text]
    seen = {normalise(text)}
    forwarded = False
    while True:
        current = chain[-1]
        result = await svc.resolver.resolve(current, (), (), now, forward=forward)
        match result:
            case Found(values=found, registered_as=registered_as, signature=verdict):
                forwarded = verdict is not None
                values = tuple(sorted((v for v in found if v.public_read), key=lambda v: v.index))
                withheld = tuple(v for v in found if not v.public_read)
            case ValuesNotFound():
                values, registered_as, withheld = (), current, ()
            case _:
                raise _resolution_error(result, text, chain)
        alias = next((v for v in values if v.type.upper() == ALIAS_TYPE), None)
        if alias is None:
            return Resolved(tuple(chain), registered_as, values, withheld, forwarded)
        target = alias.data.decode("utf-8", "replace").strip()
        path = " → ".join([*chain, target])
        # The loop check comes first so that a short cycle is reported as what it is.
        if normalise(target) in seen:
            raise ApiError(
                RC.RECURSION_COUNT_TOO_HIGH,
                f"HS_ALIAS values form a loop: {path}",
                status=508,
                handle=text,
            )
        if len(chain) > MAX_ALIAS_HOPS:
            raise ApiError(
                RC.RECURSION_COUNT_TOO_HIGH,
                f"more than {MAX_ALIAS_HOPS} HS_ALIAS hops: {path}",
                status=508,
                handle=text,
            )
        chain.append(target)
        seen.add(normalise(target))


def _resolution_error(result: ResolveResult, asked: str, chain: list[str]) -> ApiError:
    """The resolver's other outcomes, worded as the REST API words them, saying which
    alias led there."""
    current = chain[-1]
    via = f" (reached through HS_ALIAS from {' → '.join(chain[:-1])})" if len(chain) > 1 else ""
    if isinstance(result, PrefixReferral):
        return ApiError(
            result.response_code,
            f"prefix of {current} is delegated to another "
            f"service{via}: ask /api/handles/{current} for its referral",
            handle=asked,
        )
    return ApiError(result.response_code, f"{result.message}{via}", handle=asked)


async def load_template(
    svc: HttpServices, values: tuple[HandleValue, ...], now: float
) -> tuple[html.TemplateInfo | None, str | None]:
    """The data template the record cites (its TEMPLATE value), or why it could not
    be read. A broken template must not hide the record, so this never raises for
    bad data: the page then shows the fields unlabelled, with a notice."""
    ref = next((v for v in values if v.type.upper() == TEMPLATE_TYPE), None)
    if ref is None:
        return None, None
    name = ref.data.decode("utf-8", "replace").strip()
    result = await svc.resolver.resolve(name, (), (html.TEMPLATE_BODY_TYPE,), now, public_only=True)
    problem = f"数据模板 {name} 无法读取 · The data template {name} could not be read"
    if not isinstance(result, Found):
        return None, problem
    try:
        body = orjson.loads(result.values[0].data)
        return html.TemplateInfo.from_json(name, body), None
    except (orjson.JSONDecodeError, TypeError):
        return None, problem


# -- replies -----------------------------------------------------------------------------


def _html(body: str, *, status: int = 200, cache: str = NO_STORE) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers.update(HTML_HEADERS)
    resp.headers["Cache-Control"] = cache
    return resp


def _error(err: ApiError, as_json: bool) -> web.Response:
    if as_json:
        resp = error_reply(err)
        resp.headers["Vary"] = "Accept"
        return resp
    title = next((t for rc, t in _TITLES.items() if rc == err.response_code), "出错了 · Error")
    resp = _html(html.error_page(title, err.message, err.handle), status=err.status)
    resp.headers.update(err.headers)
    return resp


def _json(
    found: Resolved, now: float, style: Style, indexes: tuple[int, ...], types: tuple[str, ...]
) -> web.Response:
    """The anonymous ``GET /api/handles/{handle}`` body (handles.get_handle), its index and
    type filters applied alike. After an alias, ``handle`` names the record the values
    belong to and Content-Location its API URL, so a client can tell it got another
    handle's record."""
    values = select_values(found.values, indexes, types)
    rc = RC.SUCCESS if values else RC.VALUES_NOT_FOUND
    body: dict[str, object] = {
        "responseCode": int(rc),
        "handle": found.chain[-1],
        "values": values_to_json(values),
    }
    if not values:
        withheld = select_values(found.withheld, indexes, types)
        body["message"] = "no values match the request" + (
            " (public values only)" if withheld else ""
        )
    headers = {"Cache-Control": cache_control(values, now, private=False), "Vary": "Accept"}
    if len(found.chain) > 1:
        headers["Content-Location"] = "/api/handles/" + quote(found.chain[-1], safe="/")
    return render(body, status=http_status(rc, resolution=True), style=style, headers=headers)


# -- handlers ----------------------------------------------------------------------------


async def record_page(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    started = time.perf_counter()
    as_json = wants_json(request.headers.get("Accept", ""))
    rc = int(RC.SUCCESS)
    try:
        resp = await _answer(svc, request, as_json)
    except ApiError as err:
        rc, resp = err.response_code, _error(err, as_json)
    except DatabaseUnavailable as exc:  # a retry may cure it: 503, not 500
        log.warning("record page: %s", exc)
        svc.metrics.registry_errors.labels("http_page").inc()
        rc = int(RC.SERVER_TOO_BUSY)
        resp = _error(
            ApiError(rc, "the registry is unavailable; retry later", headers={"Retry-After": "1"}),
            as_json,
        )
    except Exception:
        log.exception("record page request %s failed", request.path)
        svc.metrics.registry_errors.labels("http_page").inc()
        rc = int(RC.ERROR)
        resp = _error(ApiError(rc, "internal server error"), as_json)
    svc.metrics.requests.labels("http", "page", str(rc)).inc()
    svc.metrics.latency.labels("http", "page").observe(time.perf_counter() - started)
    return resp


async def _answer(svc: HttpServices, request: web.Request, as_json: bool) -> web.StreamResponse:
    text = handle_in_path(request)
    noredirect = params.flag(request.query, "noredirect")
    pretty = params.flag(request.query, "pretty")
    now = svc.clock()
    forward = svc.may_recurse(request.remote)
    found = await resolve_following_aliases(svc, text, now, forward=forward)
    if as_json:
        # The API's filters apply as on /api/handles (a union of indexes and types).
        indexes, types = params.indexes(request.query), params.types(request.query)
        return _json(found, now, Style(pretty=pretty), indexes, types)
    cache = cache_control(found.values, now, private=False)
    target = redirect_target(found.values)
    if target is not None and not noredirect:
        # Returned, not raised: the handler's catch-all must not see it as a failure.
        return web.Response(
            status=302, headers={"Location": target, "Cache-Control": cache, "Vary": "Accept"}
        )
    template, problem = await load_template(svc, found.values, now)
    status = await signature.status_line(svc, found.chain[-1], found.values, now, forward=forward)
    if found.forwarded:
        status = f"{status} · {signature.VIA_UPSTREAM}" if status else signature.VIA_UPSTREAM
    view = html.RecordView(
        found.chain, found.registered_as, found.values, template, problem, target, status
    )
    return _html(html.record_page(view), cache=cache)


async def home(request: web.Request) -> web.StreamResponse:
    """``/``: a search form; ``/?handle=H`` goes to H's page (not its URL: a person
    who typed a handle wants to see the record)."""
    wanted = request.query.get("handle", "").strip()
    if wanted:
        href = html.handle_href(wanted)
        if not html.is_own_path(href):  # handle_href never makes one; never redirect off-site
            return _error(ApiError(RC.INVALID_HANDLE, "not a handle", handle=wanted), False)
        raise web.HTTPFound(href, headers={"Cache-Control": NO_STORE})
    return _html(html.home_page(), cache="public, max-age=3600")

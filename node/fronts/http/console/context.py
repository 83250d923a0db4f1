"""What every console handler starts from: the console's state on the app, the logged-in
caller (session, identity, roles, language), the CSRF checks of a POST, and one place
that turns failures into pages.

Handlers are written ``async def h(request, ctx) -> web.Response`` and wrapped with
``view`` (logged in; any role) or ``public`` (the login page). A POST is refused (403)
unless it comes from this origin and, logged in, carries the session's CSRF token.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from node.auth import Identity
from node.auth.roles import RoleCheck, Roles
from node.fronts.http.console import layout
from node.fronts.http.console.charts import Sampler
from node.fronts.http.console.i18n import choose, tr
from node.fronts.http.console.layout import BASE, Page, e
from node.fronts.http.console.sessions import (
    COOKIE,
    CSRF_FIELD,
    ConsoleSession,
    ConsoleSessions,
    same_origin,
    token_ok,
)
from node.fronts.http.services import HttpServices, services
from node.writes.onboarding import Onboarding
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.console")


@dataclass
class Console:
    sessions: ConsoleSessions
    roles: RoleCheck
    onboarding: Onboarding
    sampler: Sampler
    imports: Any  # importjob.ImportJobs (typed there; kept loose to avoid an import cycle)


CONSOLE_KEY = web.AppKey("idnode.http.console", Console)


@dataclass
class Ctx:
    svc: HttpServices
    console: Console
    lang: str
    session: ConsoleSession | None = None
    roles: Roles = Roles()
    form: MultiDictProxy[Any] | None = None  # a POST's fields (not for uploads)

    @property
    def identity(self) -> Identity:
        assert self.session is not None
        return self.session.identity

    def page(self, request: web.Request) -> Page:
        assert self.session is not None
        # The language link reloads this page: a GET's own path, else the console's home.
        path = request.rel_url.raw_path if request.method == "GET" else f"{BASE}/"
        return Page(self.lang, self.identity.actor, self.roles, self.session.csrf, path)

    def t(self, key: str) -> str:
        return tr(self.lang, key)

    def field(self, name: str) -> str:
        return str(self.form.get(name, "")) if self.form is not None else ""


class Refused(Exception):
    """A page saying why (``key`` in i18n.WORDS, and an optional detail), with a status."""

    def __init__(self, status: int, key: str, detail: str = ""):
        super().__init__(detail or key)
        self.status = status
        self.key = key
        self.detail = detail


def denied(detail: str = "") -> Refused:
    return Refused(403, "denied", detail)


Handler = Callable[[web.Request, Ctx], Awaitable[web.StreamResponse]]


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE_KEY]


def _lang(request: web.Request, kept: str | None) -> str:
    return choose(request.query, request.headers.get("Accept-Language", ""), kept)


def error_page(request: web.Request, ctx: Ctx, exc: Refused) -> web.Response:
    title = ctx.t(exc.key)
    content = layout.notice(exc.detail or title, "err")
    if ctx.session is not None:
        body = layout.framed(ctx.page(request), title, content)
    else:
        back = f'<p><a href="{BASE}/login">{e(ctx.t("login"))}</a></p>'
        body = layout.document(ctx.lang, title, f"<main><h1>{e(title)}</h1>{content}{back}</main>")
    return layout.reply(body, status=exc.status)


async def _answer(
    request: web.Request, handler: Handler, ctx: Ctx, *, logged_in: bool
) -> web.StreamResponse:
    console = ctx.console
    # The registry holds the sessions: one that is down is a 503 page (_run).
    session = ctx.session = await console.sessions.get(request.cookies.get(COOKIE))
    if session is not None:
        ctx.lang = _lang(request, session.lang)
    if request.method == "POST":
        if not same_origin(request):
            raise Refused(403, "csrf_refused")
        if request.content_type != "multipart/form-data":
            ctx.form = await request.post()
    if logged_in:
        if session is None:
            if request.method == "GET":
                return see_other(f"{BASE}/login?{urlencode({'next': request.rel_url.raw_path_qs})}")
            raise Refused(401, "session_over")
        form_post = request.method == "POST" and request.content_type != "multipart/form-data"
        if form_post and not token_ok(session, ctx.field(CSRF_FIELD) or None):
            raise Refused(403, "csrf_refused")
        if request.query.get("lang") in ("zh", "en"):
            await console.sessions.set_lang(session, request.query["lang"])
        ctx.roles = await console.roles.of(session.identity)
        if not ctx.roles.any:  # a disabled enterprise prefix's admin, say
            raise Refused(403, "no_role")
    return await handler(request, ctx)


async def _run(request: web.Request, handler: Handler, *, logged_in: bool) -> web.StreamResponse:
    """``_answer``, its failures turned into pages, and every answer counted (a redirect
    to the login page too)."""
    svc = services(request)
    ctx = Ctx(svc, console_of(request), _lang(request, None))
    started = time.perf_counter()
    try:
        resp = await _answer(request, handler, ctx, logged_in=logged_in)
    except Refused as exc:
        resp = error_page(request, ctx, exc)
    except DatabaseUnavailable as exc:
        log.warning("console %s: %s", request.path, exc)
        svc.metrics.registry_errors.labels("http_console").inc()
        resp = error_page(request, ctx, Refused(503, "unavailable"))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("console request %s failed", request.path)
        svc.metrics.registry_errors.labels("http_console").inc()
        resp = error_page(request, ctx, Refused(500, "error"))
    svc.metrics.count_request("http", "console", str(resp.status))
    svc.metrics.time_request("http", "console", time.perf_counter() - started)
    return resp


def view(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for a logged-in caller with any console role."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await _run(request, handler, logged_in=True)

    return wrapped


def public(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for anyone (the login form): POSTs still need this origin."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await _run(request, handler, logged_in=False)

    return wrapped


def upload_token_ok(ctx: Ctx, sent: str | None) -> None:
    """The CSRF check of a multipart upload, whose fields the handler reads itself."""
    assert ctx.session is not None
    if not token_ok(ctx.session, sent):
        raise Refused(403, "csrf_refused")

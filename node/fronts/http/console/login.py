"""``/console/login`` and ``/console/logout``.

The login form takes an admin identity (``300:88.118.2/ADMIN``) and its secret and
hands them to the HTTP front's own authentication chain as the Basic credentials they
are, so a console login meets exactly the checks ``curl -u`` does: the plain-HTTP policy
(``http_plain_credentials``), the failed-login limits per client and per identity
(node.auth.gate, shared with the native front), the check pool and its metrics. Only an
identity with a console role (platform admin, auditor, enterprise admin) gets a session.

An admin who holds a key rather than a secret logs in with it the way a browser holds
keys: as the TLS client certificate (``tls_client_ca_file``; node.auth.clientcert), whose
key must be one of the admin's HS_PUBKEY values. Over TLS the login page offers a second
button that asks for exactly that (``Authorization: Handle clientCert="true"``, as a REST
client would). The key never leaves the browser's store; a page with no script could not
sign a challenge with it otherwise. The button is a POST like the other: a certificate is
used only when asked for, never because the browser sent one.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict

from node.auth import AuthContext, AuthError
from node.fronts.http.console import layout
from node.fronts.http.console.context import Ctx, Refused, public, see_other, view
from node.fronts.http.console.i18n import tr
from node.fronts.http.console.layout import BASE, e
from node.fronts.http.console.sessions import clear_cookie, is_https, set_cookie
from node.fronts.http.services import certificate_of

MAX_FIELD_CHARS = 4096


CERT_METHOD = "cert"


def login_page(
    lang: str,
    *,
    identity: str = "",
    problem: str = "",
    next_path: str = "",
    cert: bool = False,
) -> str:
    """``cert``: offer the client-certificate login (the page came over TLS)."""
    other = "en" if lang == "zh" else "zh"
    notice = layout.notice(problem, "err") if problem else ""
    by_cert = (
        f'<section><form method="post" action="{BASE}/login">'
        f'<input type="hidden" name="lang" value="{e(lang)}">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        f'<input type="hidden" name="method" value="{CERT_METHOD}">'
        f"<p><small>{e(tr(lang, 'login_cert_hint'))}</small></p>"
        f'<p><button type="submit">{e(tr(lang, "login_cert"))}</button></p></form></section>'
        if cert
        else ""
    )
    return layout.document(
        lang,
        tr(lang, "login"),
        f'<main style="max-width:30rem"><h1>{e(tr(lang, "console"))}</h1>{notice}'
        f'<section><form method="post" action="{BASE}/login">'
        f'<input type="hidden" name="lang" value="{e(lang)}">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        f'<label for="identity">{e(tr(lang, "identity"))} '
        f"<small>{e(tr(lang, 'identity_hint'))}</small></label>"
        f'<input id="identity" name="identity" value="{e(identity)}" autocomplete="username" required>'
        f'<label for="secret">{e(tr(lang, "secret"))}</label>'
        f'<input id="secret" name="secret" type="password" autocomplete="current-password" required>'
        f'<p><button type="submit">{e(tr(lang, "login"))}</button></p></form></section>'
        f"{by_cert}"
        f'<p><a href="{BASE}/login?lang={other}">{e(tr(lang, "language"))}</a></p></main>',
    )


def _next(path: str) -> str:
    """Where to go after logging in: a console path only, never another site."""
    if path.startswith(f"{BASE}/") and not path.startswith(f"{BASE}//") and "\\" not in path:
        return path
    return f"{BASE}/"


@public
async def show_login(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if ctx.session is not None:
        return see_other(_next(request.query.get("next", "")))
    page = login_page(ctx.lang, next_path=request.query.get("next", ""), cert=request.secure)
    return layout.reply(page)


@public
async def do_login(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    lang = ctx.field("lang") if ctx.field("lang") in ("zh", "en") else ctx.lang
    user, secret = ctx.field("identity").strip(), ctx.field("secret")
    next_path = ctx.field("next")
    if len(user) > MAX_FIELD_CHARS or len(secret) > MAX_FIELD_CHARS:
        raise Refused(400, "login_failed")
    headers = CIMultiDict(request.headers)
    headers.popall("Cookie", None)
    extra: dict[str, object] = {}
    if ctx.field("method") == CERT_METHOD:
        headers["Authorization"] = 'Handle clientCert="true"'
        extra = certificate_of(request)
    else:
        token = quote(user, safe="").encode("utf-8") + b":" + secret.encode("utf-8")
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
    auth = AuthContext(headers=headers, peer=request.remote, secure=request.secure, extra=extra)
    svc = ctx.svc
    try:
        identity = await svc.auth.authenticate(auth)
    except AuthError as exc:
        page = login_page(
            lang,
            identity=user,
            problem=f"{tr(lang, 'login_failed')}: {exc.message}",
            next_path=next_path,
            cert=request.secure,
        )
        resp = layout.reply(page, status=exc.status)
        if exc.retry_after_s is not None:
            resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp
    assert identity is not None  # Basic credentials always name someone or raise
    roles = await ctx.console.roles.of(identity)
    if not roles.any:
        page = login_page(
            lang,
            identity=user,
            problem=tr(lang, "no_role"),
            next_path=next_path,
            cert=request.secure,
        )
        return layout.reply(page, status=403)
    session = await ctx.console.sessions.create(identity, lang)
    resp = see_other(_next(next_path))
    set_cookie(resp, session, is_https(request, svc.auth.gate.proxies))
    return resp


@view
async def logout(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    assert ctx.session is not None
    await ctx.console.sessions.delete(ctx.session.id)
    resp = see_other(f"{BASE}/login?lang={ctx.lang}")
    clear_cookie(resp, is_https(request, ctx.svc.auth.gate.proxies))
    return resp

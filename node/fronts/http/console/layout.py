"""The console's HTML skeleton: one document shape, the navigation by role, table and
form pieces, and the reply with its headers.

Pure functions to ``str``, as the record page (node.fronts.http.page.html): everything a
user typed or a record holds goes through ``e`` (``html.escape`` with quotes). The
console runs no script: pages that change by themselves (the charts, an import's
progress) reload with ``<meta http-equiv=refresh>``, and the CSP forbids scripts
outright, so an escaping slip could still run nothing.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web

from node.auth.roles import Roles
from node.fronts.http.console.i18n import tr
from node.fronts.http.console.sessions import CSRF_FIELD

BASE = "/console"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends "Origin: null" with
    # a form POST, and the CSRF check needs the real origin.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f5f7;color:#1f2328;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.3rem 1rem;padding:.55rem 1rem;
background:#18324a;color:#fff}
header b{margin-right:.5rem}
header a{color:#dce8f3;text-decoration:none}
header a.on{color:#fff;font-weight:600;text-decoration:underline}
header .who{margin-left:auto;font-size:.85rem;color:#b9cbdc}
header form{display:inline;margin:0}
header button{padding:.15rem .6rem;font-size:.85rem;background:#2f5878}
main{max-width:64rem;margin:0 auto;padding:1rem}
h1{font-size:1.35rem;margin:.4rem 0 .8rem;overflow-wrap:anywhere}
h2{font-size:1.05rem;margin:0 0 .5rem}
section{margin:0 0 1rem;padding:.8rem 1rem;background:#fff;border:1px solid #dde3e8;border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:.3rem .6rem .3rem 0;text-align:left;vertical-align:top;border-bottom:1px solid #eef1f4;
overflow-wrap:anywhere}
th{color:#59636e;font-weight:600;font-size:.8rem;white-space:nowrap;overflow-wrap:normal}
a{color:#0a58ca}
label{display:block;font-weight:600;margin:.55rem 0 .15rem}
label small{font-weight:400;color:#59636e}
input,select,textarea{width:100%;max-width:32rem;padding:.4rem .5rem;font:inherit;border:1px solid #b8c2cc;
border-radius:6px;background:#fff}
input[type=file]{border:0;padding:0}
button{padding:.4rem .9rem;font:inherit;border:0;border-radius:6px;background:#0a58ca;color:#fff;cursor:pointer}
.inline{display:flex;flex-wrap:wrap;gap:.4rem;align-items:end}
.inline label{margin:0}
.inline input,.inline select{width:auto}
.bad{border-color:#c62828;background:#fff5f5}
.msg{color:#c62828;font-size:.85rem;margin:.15rem 0 0}
.notice{padding:.6rem .9rem;border-radius:8px;margin:0 0 1rem;border:1px solid #e3c46b;background:#fff8e1}
.ok{border-color:#7cb98a;background:#eef8f0}
.err{border-color:#e0a0a0;background:#fff0f0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(19rem,1fr));gap:1rem}
.grid section{margin:0}
.big{font-size:1.6rem;font-weight:600}
.muted{color:#59636e;font-size:.85rem}
progress{width:100%;height:1.3rem}
code,pre{font:.85rem ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;overflow-wrap:anywhere}
pre{white-space:pre-wrap;margin:0}
svg{display:block;width:100%;height:auto}
"""


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def href(path: str, **query: str | int | None) -> str:
    """A console link: ``path`` under /console/ (its segments percent-encoded by the
    caller when they hold user data) and a query."""
    q = {k: str(v) for k, v in query.items() if v is not None and v != ""}
    return f"{BASE}/{path}" + (f"?{urlencode(q)}" if q else "")


def handle_path(handle: str) -> str:
    return quote(handle, safe="/")


@dataclass(frozen=True)
class Page:
    """What every logged-in page's frame needs."""

    lang: str
    actor: str
    roles: Roles
    csrf: str
    path: str  # the request path, to mark the current tab and switch language


def nav(page: Page) -> str:
    tabs: list[tuple[str, str]] = []
    if page.roles.sees_all:
        tabs += [("dashboard", "dashboard"), ("enterprises", "enterprises"), ("reviews", "reviews")]
        tabs += [("keys", "keys")]
    tabs += [("prefixes", "prefixes"), ("imports", "imports")]
    links = []
    for path, word in tabs:
        on = page.path.startswith(f"{BASE}/{path}")
        cls = ' class="on"' if on else ""
        links.append(f'<a{cls} href="{href(path)}">{e(tr(page.lang, word))}</a>')
    other = "en" if page.lang == "zh" else "zh"
    roles = ", ".join(
        tr(page.lang, w)
        for w, held in (
            ("platform_admin", page.roles.platform_admin),
            ("auditor", page.roles.auditor),
            ("enterprise_admin", page.roles.enterprise is not None),
        )
        if held
    )
    return (
        f"<header><b>{e(tr(page.lang, 'console'))}</b>{''.join(links)}"
        f'<span class="who">{e(page.actor)} · {e(roles)}</span>'
        f'<a href="{e(page.path)}?lang={other}">{e(tr(page.lang, "language"))}</a>'
        f'<form method="post" action="{BASE}/logout">{csrf_field(page.csrf)}'
        f'<button type="submit">{e(tr(page.lang, "logout"))}</button></form></header>'
    )


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{e(token)}">'


def document(lang: str, title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        f'<!doctype html>\n<html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        '<meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{refresh}<title>{e(title)} · idnode</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def framed(page: Page, title: str, content: str, *, refresh_s: int | None = None) -> str:
    return document(
        page.lang,
        title,
        f"{nav(page)}<main><h1>{e(title)}</h1>{content}</main>",
        refresh_s=refresh_s,
    )


def table(heads: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """``rows`` cells are HTML already (escape with ``e``)."""
    head = "".join(f"<th>{e(h)}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def notice(text: str, kind: str = "") -> str:
    return f'<p class="notice {kind}">{e(text)}</p>'


def reply(body: str, *, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers.update(HEADERS)
    return resp

"""HTML for people: the page a browser gets for ``/{handle}`` (see ``routes``).

Pure functions from values to a ``str`` of HTML: no aiohttp, no database. Everything
that came from a record, a template or the request goes through ``_e`` (``html.escape``
with quotes), and only http(s) URLs become links, so a value holding ``<script>`` or
``javascript:`` renders as text. The page carries no script at all; the route also
sends a CSP forbidding scripts, as a second fence. Data formats are chosen by
``protocol.jsonvalues.data_to_json``, so the page and the JSON API never disagree on
whether a value is text, base64 or a structure.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from protocol.codes import TTLType
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_handle
from protocol.jsonvalues import data_to_json, format_timestamp
from protocol.values import HandleValue

# Value types whose data names another handle (docs/idis.md: 1001 TEMPLATE; the demo's
# PARENT trace links; HS_ALIAS): shown as links to that handle's page, so a person can
# walk a dye lot back to its greige rolls.
HANDLE_TYPES = frozenset({"TEMPLATE", "PARENT", "HS_ALIAS"})
TEMPLATE_BODY_TYPE = "IDIS_TEMPLATE"
# Readable names for the well-known types of the "other values" group.
TYPE_NAMES = {
    "URL": ("链接", "URL"),
    "EMAIL": ("邮箱", "email"),
    "HS_ADMIN": ("管理员", "administrator"),
    "TEMPLATE": ("数据模板", "data template"),
    "PARENT": ("上级标识", "parent identifier"),
    "HS_ALIAS": ("别名", "alias of"),
    "HS_VLIST": ("值引用列表", "value list"),
    "HS_SITE": ("站点", "service site"),
    "HS_PUBKEY": ("公钥", "public key"),
    "IDIS_TEMPLATE": ("模板定义", "template definition"),
}

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f5f7;color:#1f2328;font:16px/1.55 system-ui,-apple-system,"Segoe UI",
"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
main{max-width:56rem;margin:0 auto;padding:1.5rem 1rem 2.5rem}
a{color:#0a58ca;text-underline-offset:2px}
h1{margin:.15rem 0 .35rem;font-size:1.55rem;line-height:1.3;overflow-wrap:anywhere}
h2{margin:0;padding:.6rem 1rem;font-size:.95rem;background:#f8fafb;border-bottom:1px solid #dde3e8}
h2 small,.k small{font-weight:400;color:#59636e}
.kicker,.meta,footer,.m{color:#59636e}
.kicker{margin:0;font-size:.85rem;letter-spacing:.03em}
.meta{margin:.1rem 0;font-size:.9rem;overflow-wrap:anywhere}
.go{display:inline-block;margin:.6rem 0 0;padding:.35rem .8rem;border-radius:6px;background:#0a58ca;
color:#fff;text-decoration:none;font-size:.9rem;max-width:100%;overflow-wrap:anywhere}
section{margin:1rem 0;background:#fff;border:1px solid #dde3e8;border-radius:8px;overflow:hidden}
.row{display:grid;grid-template-columns:minmax(7rem,14rem) 1fr;gap:.15rem 1rem;padding:.55rem 1rem;
border-top:1px solid #eef1f4}
h2+.row{border-top:0}
.k{font-weight:600}
.k small{display:block;font-size:.78rem}
.v{min-width:0;overflow-wrap:anywhere}
.t{white-space:pre-wrap}
.m{font-size:.75rem;margin-top:.1rem}
.m span{white-space:nowrap}
code,pre{font:.85rem/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
dl.s{display:grid;grid-template-columns:auto 1fr;gap:0 .75rem;margin:0}
dl.s dt{color:#59636e}dl.s dd{margin:0;min-width:0}
ol.s{margin:0;padding-left:1.3rem}
.tpl{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem}
th,td{padding:.2rem .8rem .2rem 0;text-align:left;vertical-align:top;border-bottom:1px solid #eef1f4}
th{font-weight:600;color:#59636e;font-size:.8rem}
td small{display:block;color:#59636e;font-size:.78rem}
.notice{margin:1rem 0;padding:.7rem 1rem;background:#fff8e1;border:1px solid #e3c46b;border-radius:8px}
form{display:flex;gap:.5rem;margin:1rem 0}
input{flex:1;min-width:0;padding:.5rem .6rem;font:inherit;border:1px solid #b8c2cc;border-radius:6px}
button{padding:.5rem 1rem;font:inherit;border:0;border-radius:6px;background:#0a58ca;color:#fff}
footer{margin-top:1.5rem;font-size:.8rem;overflow-wrap:anywhere}
@media (max-width:36rem){.row{grid-template-columns:1fr}.k small{display:inline;margin-left:.4rem}
h1{font-size:1.3rem}}
"""


@dataclass(frozen=True, slots=True)
class TemplateField:
    name: str  # Chinese field name, as the top-level's template service shows it
    label: str  # English label
    key: str  # idType: the value type the field is stored under


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    handle: str
    name: str
    version: str
    fields: Mapping[int, TemplateField]  # by idIndex

    @classmethod
    def from_json(cls, handle: str, body: Any) -> TemplateInfo:
        """The IDIS template body (docs/idis.md "Templates"): items of {name, idType, idIndex,
        required, metadata}; ``label`` is our addition and optional. Raises TypeError."""
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise TypeError("the template body has no list of items")
        fields: dict[int, TemplateField] = {}
        for item in body["items"]:
            if not isinstance(item, dict):
                continue
            index, key, name = item.get("idIndex"), item.get("idType"), item.get("name")
            if isinstance(index, bool) or not isinstance(index, int) or not isinstance(name, str):
                continue  # an item we cannot place is left out, not fatal
            key = key if isinstance(key, str) else ""
            label = item.get("label")
            fields[index] = TemplateField(name, label if isinstance(label, str) else key, key)
        return cls(handle, str(body.get("name") or handle), str(body.get("version") or ""), fields)


@dataclass(frozen=True)
class RecordView:
    """What the record page shows. ``chain`` is the handles resolved, the asked one
    first; more than one means HS_ALIAS values were followed."""

    chain: tuple[str, ...]
    registered_as: str
    values: tuple[HandleValue, ...]  # public values only, index order
    template: TemplateInfo | None = None
    template_problem: str | None = None
    redirect_url: str | None = None
    # Record-signature verification (docs/signing.md, node.fronts.http.page.signature); None renders as an
    # HTML comment marking its place under the heading.
    status_line: str | None = None
    notices: tuple[str, ...] = field(default=())


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def handle_href(handle: str, *, noredirect: bool = True) -> str:
    """The page path of a handle: '/' kept (docs/rest-api.md: suffixes hold '/'), the rest
    percent-encoded as UTF-8, so '?', '#' and '%' in a suffix survive the round trip.

    Always a path on this site: leading slashes of the handle are encoded (``%2F``), so
    ``///evil.example`` becomes ``/%2F%2F%2Fevil.example``, never the protocol-relative
    ``////evil.example`` a browser would follow to another host ('\\' is always encoded)."""
    path = quote(handle, safe="/")
    bare = path.lstrip("/")
    return "/" + "%2F" * (len(path) - len(bare)) + bare + ("?noredirect" if noredirect else "")


def is_own_path(href: str) -> bool:
    """A reference a browser resolves on this site: exactly one leading '/', not
    followed by another '/' or '\\' (``//host`` and ``/\\host`` name another host), and
    no character a browser drops or rewrites while parsing (controls, whitespace)."""
    return (
        href.startswith("/")
        and href[1:2] not in ("/", "\\")
        and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in href)
    )


def is_web_url(text: str) -> bool:
    """An absolute http(s) URL naming a host: the only URLs linked or redirected to.
    An allowlist, not a list of dangerous schemes: ``ws:``, ``intent:``,
    ``view-source:`` and whatever browsers add next are all refused."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return False
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(host)


def _link(href: str, text: str) -> str:
    # noopener: a linked page must not get a handle on this one (window.opener).
    return f'<a href="{_e(href)}" rel="noopener">{_e(text)}</a>'


def _handle_link(text: str) -> str:
    try:
        parse_handle(text)
    except HandleSyntaxError:
        return f'<span class="t">{_e(text)}</span>'
    return f'<a href="{_e(handle_href(text))}">{_e(text)}</a>'


def _structured(obj: Any, key: str = "") -> str:
    """admin / vlist / site / key data as nested definition lists, handles as links."""
    if isinstance(obj, Mapping):
        items = "".join(
            f"<dt>{_e(str(k))}</dt><dd>{_structured(v, str(k))}</dd>" for k, v in obj.items()
        )
        return f'<dl class="s">{items}</dl>'
    if isinstance(obj, list):
        if not obj:
            return '<span class="m">(none)</span>'
        return '<ol class="s">' + "".join(f"<li>{_structured(x)}</li>" for x in obj) + "</ol>"
    if key == "handle" and isinstance(obj, str):
        return _handle_link(obj)
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return f'<span class="t">{_e(str(obj))}</span>'


def _template_body(text: str) -> str:
    """An IDIS_TEMPLATE value: its name and a table of its items, which a person reads
    far more easily than the JSON; anything unexpected falls back to indented JSON."""
    try:
        body = json.loads(text)
    except ValueError:
        return f'<span class="t">{_e(text)}</span>'
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return f"<pre>{_e(json.dumps(body, ensure_ascii=False, indent=2))}</pre>"
    rows = []
    for it in items:
        meta = it.get("metadata") if isinstance(it.get("metadata"), dict) else {}
        size = (
            f"{meta.get('minLength', '')}–{meta.get('maxLength', '')}"
            if "maxLength" in meta
            else ""
        )
        rows.append(
            f"<tr><td>{_e(str(it.get('idIndex', '')))}</td><td>{_e(str(it.get('name', '')))}"
            f"<small>{_e(str(it.get('label', '')))}</small></td><td>{_e(str(it.get('idType', '')))}</td>"
            f"<td>{_e(str(meta.get('type', '')))} {_e(size)}</td>"
            f"<td>{'必填 required' if it.get('required') else '选填 optional'}</td></tr>"
        )
    industry = body.get("industryCategory")
    codes = (
        ", ".join(
            f"{c.get('code', '')} {c.get('name', '')}" for c in industry if isinstance(c, dict)
        )
        if isinstance(industry, list)
        else ""
    )
    title = f"{body.get('name', '')} v{body.get('version', '')}" + (f" · {codes}" if codes else "")
    return (
        f'<div>{_e(title)}</div><div class="tpl"><table><tr><th>idIndex</th><th>字段 field</th>'
        f"<th>idType</th><th>类型 type</th><th></th></tr>{''.join(rows)}</table></div>"
    )


def _text_data(vtype: str, text: str) -> str:
    if vtype in HANDLE_TYPES:
        return _handle_link(text)
    if vtype == TEMPLATE_BODY_TYPE:
        return _template_body(text)
    if is_web_url(text):
        return _link(text, text)
    if vtype == "EMAIL" and "@" in text and not any(c.isspace() for c in text):
        return _link("mailto:" + quote(text, safe="@"), text)
    return f'<span class="t">{_e(text)}</span>'


def render_data(v: HandleValue) -> str:
    data = data_to_json(v.type, v.data)
    fmt, value = data["format"], data["value"]
    if fmt == "string":
        return _text_data(v.type.upper(), value)
    if fmt == "base64":
        return f'<code>{_e(value)}</code><div class="m">base64, {len(v.data)} bytes</div>'
    return _structured(value)


def _ttl(v: HandleValue) -> str:
    if v.ttl_type == TTLType.ABSOLUTE:
        return "TTL until " + format_timestamp(v.ttl)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if v.ttl >= size and v.ttl % size == 0:
            return f"TTL {v.ttl} s ({v.ttl // size} {unit})"
    return f"TTL {v.ttl} s"


def _meta(v: HandleValue) -> str:
    stamp = format_timestamp(v.timestamp) if v.timestamp else "no timestamp"
    # Each part stays on one line (a phone would split the timestamp at its hyphens).
    parts = (f"#{v.index}", v.type, _ttl(v), stamp)
    return '<div class="m">' + " · ".join(f"<span>{_e(p)}</span>" for p in parts) + "</div>"


def _row(name: str, sub: str, v: HandleValue) -> str:
    small = f"<small>{_e(sub)}</small>" if sub and sub != name else ""
    return (
        f'<div class="row" id="v{v.index}"><div class="k">{_e(name)}{small}</div>'
        f'<div class="v">{render_data(v)}{_meta(v)}</div></div>'
    )


def _other_row(v: HandleValue) -> str:
    name, sub = TYPE_NAMES.get(v.type.upper(), (v.type, ""))
    return _row(name, sub, v)


def _section(css_id: str, title: str, rows: Iterable[str]) -> str:
    body = "".join(rows)
    return f'<section id="{css_id}"><h2>{title}</h2>{body}</section>' if body else ""


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # An empty icon: browsers would otherwise ask for /favicon.ico, a "handle".
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{CSS}</style></head>'
        f"<body><main>{body}</main></body></html>\n"
    )


def _footer(handle: str) -> str:
    api = "/api/handles/" + quote(handle, safe="/")
    return f"<footer>JSON: {_link(api, api)} · idnode 标识解析二级节点</footer>"


def record_page(view: RecordView) -> str:
    shown = view.chain[-1]
    head = [
        '<header><p class="kicker">标识解析 · Handle record</p>',
        f"<h1>{_e(view.chain[0])}</h1>",
    ]
    if len(view.chain) > 1:
        hops = " → ".join(_handle_link(h) if n else _e(h) for n, h in enumerate(view.chain))
        head.append(f'<p class="meta" id="alias">别名 · Alias: {hops}</p>')
    if view.registered_as != shown:
        head.append(f'<p class="meta">registered as {_e(view.registered_as)}</p>')
    if view.template is not None:
        t = view.template
        version = f" v{_e(t.version)}" if t.version else ""
        head.append(
            f'<p class="meta">数据模板 · Template: <a href="{_e(handle_href(t.handle))}">'
            f"{_e(t.name)}</a>{version}</p>"
        )
    if view.status_line is None:
        head.append(
            "<!-- verification status line (record signatures, docs/signing.md) goes here -->"
        )
    else:
        head.append(f'<p class="meta" id="verification">{_e(view.status_line)}</p>')
    if view.redirect_url is not None:
        # The host, not the whole (often percent-encoded) URL: the rows show it in full.
        host = urlsplit(view.redirect_url).hostname or view.redirect_url
        head.append(
            f'<a class="go" href="{_e(view.redirect_url)}" rel="noopener">'
            f"打开链接 · Open {_e(host)} ↗</a>"
        )
    head.append("</header>")
    notices = list(view.notices)
    if view.template_problem:
        notices.append(view.template_problem)
    if not view.values:
        notices.append("没有公开的值 · This handle has no public values.")
    parts = head + [f'<p class="notice">{_e(n)}</p>' for n in notices]
    fields = view.template.fields if view.template is not None else {}
    business = [v for v in view.values if v.index in fields]
    others = [v for v in view.values if v.index not in fields]
    parts.append(
        _section(
            "fields",
            "业务字段 <small>Template fields</small>",
            (_row(fields[v.index].name, fields[v.index].label, v) for v in business),
        )
    )
    title = "其他值 <small>Other values</small>" if business else "值 <small>Values</small>"
    parts.append(_section("values", title, (_other_row(v) for v in others)))
    parts.append(_footer(shown))
    return _document(f"{view.chain[0]} · 标识解析", "".join(parts))


def error_page(title: str, message: str, handle: str | None = None) -> str:
    parts = ['<header><p class="kicker">标识解析 · Handle resolution</p>', f"<h1>{_e(title)}</h1>"]
    if handle is not None:
        parts.append(f'<p class="meta">标识 · Handle: <code id="handle">{_e(handle)}</code></p>')
    parts.append(f'</header><p class="notice" id="message">{_e(message)}</p>')
    parts.append(search_form(handle or ""))
    return _document(f"{title} · 标识解析", "".join(parts))


def search_form(value: str = "") -> str:
    return (
        '<form action="/" method="get"><input name="handle" required aria-label="handle" '
        f'placeholder="88.118.5/缸号-20260315-07" value="{_e(value)}">'
        "<button>解析 Resolve</button></form>"
    )


def home_page() -> str:
    body = (
        '<header><p class="kicker">标识解析 · Handle resolution</p><h1>idnode</h1>'
        '<p class="meta">输入标识查看其记录 · Enter a handle to see its record.</p></header>'
        + search_form()
        + '<footer>JSON API: <a href="/api/openapi.json">/api/openapi.json</a></footer>'
    )
    return _document("idnode · 标识解析", body)

"""The enterprise's pages: its prefixes, the identifiers under one (browse by page,
search by a template field), and one record.

Isolation: an enterprise admin sees only the prefixes of its own enterprise
(``Roles.may_see``, as ``/api/manage`` decides); another enterprise's prefix or record
is a 403 page, and is never read past its prefix row. Platform admins and auditors see
every prefix. Values are shown as the REST API would send them to this admin
(``Authorizer.readable``), secrets never.
"""

from __future__ import annotations

from aiohttp import web

from node.auth import Denied
from node.fronts.http.console import layout
from node.fronts.http.console.context import Ctx, Refused, denied, view
from node.fronts.http.console.i18n import status_word
from node.fronts.http.console.layout import e, handle_path, href
from node.fronts.http.page import html as page_html
from node.secrets.vault import SECKEY_TYPE
from protocol.errors import HandleSyntaxError
from protocol.handle import normalise, parse_handle
from protocol.templates import Template, cited
from protocol.values import HandleValue
from registry.rows import Prefix

PAGE_SIZE = 50
SIGNATURE_TYPE = "HS_SIGNATURE"
SIGNATURE_SHOWN = 64
MAX_TEMPLATES = 200


async def visible_prefix(ctx: Ctx, prefix: str) -> Prefix:
    row = await ctx.svc.resolver.registry.get_prefix(prefix)
    if row is None:
        raise Refused(404, "not_found", prefix)
    if not ctx.roles.may_see(row.credit_code):
        raise denied(f"{ctx.identity.actor} · {row.prefix}")
    return row


async def visible_handle(ctx: Ctx, text: str) -> tuple[str, Prefix]:
    try:
        handle = parse_handle(text)
    except HandleSyntaxError as exc:
        raise Refused(400, "not_found", exc.message) from None
    return handle.text, await visible_prefix(ctx, handle.prefix)


async def own_prefixes(ctx: Ctx) -> list[Prefix]:
    rows = await ctx.svc.resolver.registry.list_prefixes()
    return [p for p in rows if ctx.roles.may_see(p.credit_code)]


async def templates(ctx: Ctx) -> list[Template]:
    """Every template this node holds (they are public definitions)."""
    catalog = ctx.svc.writes.templates
    if catalog is None:
        return []
    out = []
    for handle, _ in await ctx.svc.writes.registry.list_templates(None, "", MAX_TEMPLATES):
        found = await catalog.get(handle)
        if found is not None:
            out.append(found)
    return out


@view
async def prefixes(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    registry = ctx.svc.resolver.registry
    rows = []
    for p in await own_prefixes(ctx):
        total, _ = await registry.list_handles(p.prefix, 0, 0)
        rows.append(
            (
                f'<a href="{href("prefixes/" + handle_path(p.prefix))}">{e(p.prefix)}</a>',
                e(p.enterprise_name),
                e(status_word(ctx.lang, int(p.status))),
                e(total),
            )
        )
    content = f"<section>{layout.table([t('prefix'), t('enterprise'), t('status'), t('count')], rows)}</section>"
    return layout.reply(layout.framed(ctx.page(request), t("prefixes"), content))


def _search_form(ctx: Ctx, prefix: str, found: list[Template], q: dict[str, str]) -> str:
    t = ctx.t
    options = "".join(
        f'<option value="{e(x.handle)}"{" selected" if x.handle == q.get("template") else ""}>'
        f"{e(x.handle)} {e(x.name)}</option>"
        for x in found
    )
    return (
        f'<form class="inline" method="get" action="{href("prefixes/" + handle_path(prefix))}">'
        f'<label>{e(t("template"))}<br><select name="template">{options}</select></label>'
        f'<label>{e(t("field"))}<br><input name="field" value="{e(q.get("field", ""))}" size="14"></label>'
        f'<label>{e(t("value"))}<br><input name="value" value="{e(q.get("value", ""))}" size="20"></label>'
        f'<button type="submit">{e(t("search"))}</button></form>'
    )


def _new_form(ctx: Ctx, prefix: str, found: list[Template]) -> str:
    options = "".join(
        f'<option value="{e(x.handle)}">{e(x.handle)} {e(x.name)}</option>' for x in found
    )
    return (
        f'<form class="inline" method="get" action="{href("prefixes/" + handle_path(prefix) + "/new")}">'
        f'<label>{e(ctx.t("choose_template"))}<br><select name="template">{options}</select></label>'
        f'<button type="submit">{e(ctx.t("new_record"))}</button></form>'
    )


def _handle_list(handles: list[str]) -> str:
    items = "".join(
        f'<li><a href="{href("records/" + handle_path(h))}">{e(h)}</a></li>' for h in handles
    )
    return f"<ul>{items}</ul>"


@view
async def prefix_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    row = await visible_prefix(ctx, request.match_info["prefix"])
    registry = ctx.svc.resolver.registry
    found = await templates(ctx)
    q = {k: request.query.get(k, "").strip()[:300] for k in ("template", "field", "value")}
    parts = [f"<section><h2>{e(t('new_record'))}</h2>{_new_form(ctx, row.prefix, found)}</section>"]
    search = f"<section><h2>{e(t('search'))}</h2>{_search_form(ctx, row.prefix, found, q)}"
    if q["template"] and q["field"] and q["value"]:
        template = next((x for x in found if normalise(x.handle) == normalise(q["template"])), None)
        f = template.field(q["field"]) if template is not None else None
        if template is None or f is None or not f.searchable:
            usable = ", ".join(x.key for x in template.fields if x.searchable) if template else ""
            search += layout.notice(f"{t('field')}: {q['field']} ✗ ({usable})", "err")
        else:
            total, handles, _ = await registry.search_fields(
                [row.prefix],
                template.handle,
                f.key,
                q["value"],
                limit=PAGE_SIZE,
                unique=not f.indexed,
            )
            search += f"<p>{e(t('results'))}: {e(total)}</p>"
            search += _handle_list(handles) if handles else f"<p>{e(t('none_found'))}</p>"
    parts.append(search + "</section>")
    try:
        page_no = max(0, int(request.query.get("page", "0")))
    except ValueError:
        page_no = 0
    total, handles = await registry.list_handles(row.prefix, page_no, PAGE_SIZE)
    pager = []
    base = "prefixes/" + handle_path(row.prefix)
    if page_no > 0:
        pager.append(f'<a href="{href(base, page=page_no - 1)}">{e(t("previous"))}</a>')
    if (page_no + 1) * PAGE_SIZE < total:
        pager.append(f'<a href="{href(base, page=page_no + 1)}">{e(t("next"))}</a>')
    parts.append(
        f"<section><h2>{e(t('browse'))} · {e(t('identifiers'))}: {e(total)}</h2>"
        f"{_handle_list(handles)}<p>{' · '.join(pager)}</p></section>"
    )
    title = f"{row.prefix} · {row.enterprise_name}"
    return layout.reply(layout.framed(ctx.page(request), title, "".join(parts)))


async def readable_values(
    ctx: Ctx, text: str, values: tuple[HandleValue, ...]
) -> list[HandleValue]:
    authorizer = ctx.svc.authorizer
    try:
        shown = await authorizer.readable(ctx.identity, text, values, public_only=False)
    except Denied:
        shown = await authorizer.readable(ctx.identity, text, values, public_only=True)
    return [v for v in shown if v.type.upper() != SECKEY_TYPE]


def _data(v: HandleValue) -> str:
    """A value as the record page shows it; a signature (a long JWS) cut short."""
    if v.type.upper() == SIGNATURE_TYPE and len(v.data) > SIGNATURE_SHOWN:
        head = v.data[:SIGNATURE_SHOWN].decode("ascii", "replace")
        return f'<code>{e(head)}…</code> <span class="muted">({len(v.data)} bytes)</span>'
    return page_html.render_data(v)


@view
async def record_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    text, _ = await visible_handle(ctx, request.match_info["handle"])
    record = await ctx.svc.resolver.registry.get_handle(normalise(text))
    if record is None:
        raise Refused(404, "not_found", text)
    values = await readable_values(ctx, record.handle, record.values)
    template = cited(record.values)
    found = (
        await ctx.svc.writes.templates.get(template)
        if template and ctx.svc.writes.templates
        else None
    )
    rows = []
    # The template's fields first, by their names; the other values after, in index order.
    for v in sorted(values, key=lambda v: (found is None or found.at(v.index) is None, v.index)):
        f = found.at(v.index) if found is not None else None
        name = (
            f"{e(f.name or f.key)}<br><small class=muted>{e(f.label)} · <code>{e(f.key)}</code></small>"
            if f
            else f"<code>{e(v.type)}</code>"
        )
        rows.append((e(v.index), name, _data(v)))
    links = [f'<a href="{e(page_html.handle_href(record.handle))}">{e(t("open_page"))}</a>']
    if template is not None:
        links.insert(
            0,
            f'<a href="{href("records/" + handle_path(record.handle) + "/edit")}">{e(t("edit"))}</a>',
        )
    content = (
        f"<p>{' · '.join(links)}</p>"
        f"<section>{layout.table([t('index'), t('field'), t('data')], rows)}</section>"
    )
    return layout.reply(layout.framed(ctx.page(request), record.handle, content))

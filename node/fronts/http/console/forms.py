"""Creating and editing a record through its data template's form.

The form has one input per field of the template (a list for an ``enum``), labelled
with the field's Chinese name and English label, its unit and rules. What is sent is
checked by the template (``Template.problems``, the very check every write path runs)
and each problem is shown at its field, the values typed kept; a record that passes is
written through the write service as ``PUT /api/handles`` by field names writes it, with
the same authorization (``Authorizer.authorize_put``), history row and signature.

Editing replaces the template's fields as a whole (an emptied optional field is
removed) and keeps the record's other values (HS_ADMIN, URLs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from node.auth import Denied
from node.fronts.http.console import layout
from node.fronts.http.console.context import Ctx, Refused, view
from node.fronts.http.console.enterprise import visible_handle, visible_prefix
from node.fronts.http.console.layout import e, handle_path, href
from protocol.errors import HandleSyntaxError, ValueFormatError
from protocol.handle import normalise, parse_handle
from protocol.templates import CITE_INDEX, Field, Template, TemplateViolation, cited
from protocol.values import HandleValue
from registry.errors import DatabaseUnavailable, QueryFailed, RegistryError
from registry.rows import PutResult

FIELD = "f."  # form names of template fields: f.<key>
MAX_VALUE_CHARS = 4096


def _rules(ctx: Ctx, f: Field) -> str:
    bits = [ctx.t("required") if f.required else ctx.t("optional"), f.type]
    if f.unit:
        bits.append(f.unit)
    if f.minimum is not None or f.maximum is not None:
        bits.append(
            f"{f.minimum if f.minimum is not None else ''}–{f.maximum if f.maximum is not None else ''}"
        )
    if f.max_length is not None:
        bits.append(f"≤{f.max_length}")
    if f.pattern:
        bits.append(f.pattern)
    return " · ".join(bits)


def _input(f: Field, value: str, bad: bool) -> str:
    name, cls = e(FIELD + f.key), ' class="bad"' if bad else ""
    fid = e("f-" + f.key)
    described = f' aria-invalid="true" aria-describedby="{fid}-msg"' if bad else ""
    if f.type == "enum" and f.choices:
        options = ['<option value=""></option>'] + [
            f"<option{' selected' if c == value else ''}>{e(c)}</option>" for c in f.choices
        ]
        if value and value not in f.choices:  # keep what was sent, to be corrected
            options.append(f"<option selected>{e(value)}</option>")
        return f'<select id="{fid}" name="{name}"{cls}{described}>{"".join(options)}</select>'
    return f'<input id="{fid}" name="{name}" value="{e(value)}"{cls}{described}>'


def form_html(
    ctx: Ctx,
    action: str,
    template: Template,
    values: Mapping[str, str],
    problems: Mapping[str, list[str]],
    *,
    suffix: str | None,
) -> str:
    assert ctx.session is not None
    parts = [
        f'<form method="post" action="{e(action)}" novalidate>',
        layout.csrf_field(ctx.session.csrf),
    ]
    parts.append(f'<input type="hidden" name="template" value="{e(template.handle)}">')
    if suffix is not None:
        bad = "suffix" in problems
        parts.append(
            f'<label for="suffix">{e(ctx.t("suffix"))}</label>'
            f'<input id="suffix" name="suffix" value="{e(suffix)}"{" class=bad" if bad else ""}>'
        )
        parts += [f'<p class="msg">{e(m)}</p>' for m in problems.get("suffix", [])]
    for f in template.fields:
        msgs = problems.get(f.key.upper(), [])
        parts.append(
            f'<label for="{e("f-" + f.key)}">{e(f.name or f.key)} <small>{e(f.label or f.key)} · '
            f"<code>{e(f.key)}</code> · {e(_rules(ctx, f))}</small></label>"
        )
        parts.append(_input(f, values.get(f.key.upper(), ""), bool(msgs)))
        parts += [f'<p class="msg" id="{e("f-" + f.key)}-msg">{e(m)}</p>' for m in msgs]
    parts.append(f'<p><button type="submit">{e(ctx.t("save"))}</button></p></form>')
    return "<section>" + "".join(parts) + "</section>"


async def _template(ctx: Ctx, name: str) -> Template:
    catalog = ctx.svc.writes.templates
    found = await catalog.get(name) if catalog is not None and name else None
    if found is None:
        raise Refused(404, "not_found", f"{ctx.t('template')}: {name}")
    return found


def _sent(ctx: Ctx, template: Template) -> dict[str, str]:
    out = {}
    for f in template.fields:
        text = ctx.field(FIELD + f.key).strip()
        if text:
            out[f.key.upper()] = text[:MAX_VALUE_CHARS]
    return out


def _problems(template: Template, sent: Mapping[str, str]) -> dict[str, list[str]]:
    fields = {f.key: sent[f.key.upper()] for f in template.fields if f.key.upper() in sent}
    try:
        found = template.problems(template.record(fields))
    except TemplateViolation as exc:
        found = list(exc.problems)
    return _by_field(found)


def _by_field(problems: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in problems:
        out.setdefault(p.key.upper(), []).append(p.rule)
    return out


async def _write(
    ctx: Ctx, text: str, template: Template, sent: Mapping[str, str], *, create: bool
) -> PutResult:
    handle = parse_handle(text)
    values = template.record(
        {f.key: sent[f.key.upper()] for f in template.fields if f.key.upper() in sent}
    )
    only = None if create else frozenset({CITE_INDEX, *(f.index for f in template.fields)})
    identity, svc = ctx.identity, ctx.svc

    async def authorize(existing: Any, merged: tuple[HandleValue, ...]) -> None:
        await svc.authorizer.authorize_put(
            identity, handle, existing, merged, overwrite=not create, partial=only is not None
        )

    return await svc.writes.put(
        handle,
        values,
        actor=identity.actor,
        now=svc.now(),
        source="console",
        overwrite=not create,
        only_indexes=only,
        authorize=authorize,
    )


async def _submit(
    request: web.Request, ctx: Ctx, template: Template, text: str | None, *, suffix: str | None
) -> web.StreamResponse:
    """Check and write; the form again with the problems, or a redirect to the record."""
    sent = _sent(ctx, template)
    problems = _problems(template, sent)
    if suffix is not None and not suffix:
        problems.setdefault("suffix", []).append(ctx.t("required"))
    top = ""
    if not problems and text is not None:
        try:
            await _write(ctx, text, template, sent, create=suffix is not None)
        except TemplateViolation as exc:  # the merged record: what the form could not see
            problems = _by_field(exc.problems)
        except (DatabaseUnavailable, QueryFailed):
            raise
        except HandleSyntaxError as exc:
            problems = {"suffix": [exc.message]}
        except (Denied, RegistryError, ValueFormatError) as exc:
            top = layout.notice(f"{ctx.t('write_refused')}: {exc}", "err")
        else:
            return web.Response(
                status=303,
                headers={
                    "Location": href("records/" + handle_path(text)),
                    "Cache-Control": "no-store",
                },
            )
    if problems:
        top = layout.notice(ctx.t("fix_fields"), "err") + top
    body = top + form_html(ctx, request.rel_url.raw_path, template, sent, problems, suffix=suffix)
    title = text or ctx.t("new_record")
    return layout.reply(layout.framed(ctx.page(request), title, body), status=422)


@view
async def new_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    row = await visible_prefix(ctx, request.match_info["prefix"])
    template = await _template(ctx, request.query.get("template", ""))
    body = form_html(ctx, request.rel_url.raw_path, template, {}, {}, suffix="")
    title = f"{ctx.t('new_record')} · {row.prefix} · {template.name}"
    return layout.reply(layout.framed(ctx.page(request), title, body))


@view
async def create(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    row = await visible_prefix(ctx, request.match_info["prefix"])
    template = await _template(ctx, ctx.field("template"))
    suffix = ctx.field("suffix").strip()
    text = f"{row.prefix}/{suffix}" if suffix else None
    return await _submit(request, ctx, template, text, suffix=suffix)


async def _existing(ctx: Ctx, asked: str) -> tuple[str, Template, dict[str, str]]:
    text, _ = await visible_handle(ctx, asked)
    record = await ctx.svc.resolver.registry.get_handle(normalise(text))
    if record is None:
        raise Refused(404, "not_found", text)
    name = cited(record.values)
    if name is None:
        raise Refused(409, "no_template", text)
    template = await _template(ctx, name)
    current = {}
    for v in record.values:
        f = template.at(v.index)
        if f is not None:
            current[f.key.upper()] = v.data.decode("utf-8", "replace")
    return record.handle, template, current


@view
async def edit_form(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    text, template, current = await _existing(ctx, request.match_info["handle"])
    body = form_html(ctx, request.rel_url.raw_path, template, current, {}, suffix=None)
    return layout.reply(layout.framed(ctx.page(request), f"{ctx.t('edit')} · {text}", body))


@view
async def update(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    text, template, _ = await _existing(ctx, request.match_info["handle"])
    return await _submit(request, ctx, template, text, suffix=None)

"""``GET /api/search?template=T&field=F&value=V&limit=&after=``: the records citing a
template whose field holds a value, the first question of every quality recall ("all
rolls of dye lot V"; docs/rest-api.md "Search by field").

It reads the field index (registry ``handle_fields``, and ``handle_unique`` for a field
that is ``unique`` but not ``indexed``), which every write fills from the template's
searchable fields (node.templates.catalog). One page at a time in handle key order:
``next`` is the last handle key of the page, sent back as ``after`` for the next one
(keyset paging: page 500 costs what page 1 does). ``total`` counts the matches up to
SEARCH_COUNT_BOUND, then says "more than 10000": an exact count of a huge lot would
read every row of it on every page.

Who sees what. Search needs an authenticated admin, and answers in two steps:

1. Prefixes. A server admin (``server_admins``) searches every registered prefix.
   Anyone else searches the prefixes of the enterprise its own handle is registered
   under (same credit code) on which it holds LIST_HANDLES through the prefix's
   HS_ADMIN: the right ``GET /api/handles?prefix=`` asks, so a search never names a
   handle the caller could not list. The registry filters by these prefixes, so another
   enterprise's records are never even read.
2. Values. Of each page, only the handles whose matching value the caller may read are
   sent (``Authorizer.readable``: public, or admin-readable and the caller holds
   READ_VALUE on the record). Administering a prefix is not administering each record
   under it (a record's HS_ADMIN may name someone else), so a private value is not
   confirmed to a prefix admin who may not read it. A dropped handle leaves the page
   short, and the cursor still moves past it; ``total`` counts the index matches under
   the caller's prefixes, before this check.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from node.auth import Denied, Identity
from node.fronts.http import params
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, Style, render
from node.fronts.http.services import HttpServices, services
from node.resolution.outcomes import Found
from node.templates.catalog import registry_catalog
from protocol.codes import AdminPerm
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from protocol.handle import normalise, parse_handle
from protocol.templates import Field, Template
from registry.store import MAX_PAGE_SIZE, SEARCH_COUNT_BOUND

DEFAULT_LIMIT = 100


def search_routes() -> Extension:
    """The ``http_app`` extension serving ``GET /api/search``."""

    def extend(app: web.Application) -> None:
        app.router.add_get("/api/search", search, name="search")

    return extend


def _required(query: params.Query, name: str, example: str) -> str:
    value = query.get(name, "")
    if not value.strip():
        raise ApiError(RC.PROTOCOL_ERROR, f"parameter {name} is missing (e.g. {name}={example})")
    return value


async def search(request: web.Request) -> web.Response:
    svc = services(request)
    q = request.query
    params.callback(q)
    name = _required(q, "template", "88.118/TPL.TEXTILE.ROLL.V1")
    asked_field = _required(q, "field", "dyeLot")
    value = _required(q, "value", "DL-20260316-02")
    most = min(svc.settings.search_max_page_size, MAX_PAGE_SIZE)
    limit = params.integer(q, "limit", low=1, high=most) or min(DEFAULT_LIMIT, most)
    after = normalise(q.get("after", ""))
    try:
        parse_handle(name)
    except HandleSyntaxError as exc:
        raise ApiError(RC.INVALID_HANDLE, f"template {name!r}: {exc.message}") from None
    identity = await svc.require_identity(request, "search")
    template = await _template(svc, name)
    field = _searchable(template, asked_field)
    prefixes = await administered_prefixes(svc, identity)
    total, handles, cursor = await svc.resolver.registry.search_fields(
        prefixes,
        template.handle,
        field.key,
        value,
        after=after,
        limit=limit,
        unique=not field.indexed,
    )
    readable = await asyncio.gather(*(_may_read(svc, identity, h, field) for h in handles))
    body: dict[str, Any] = {
        "responseCode": 1,
        "template": template.handle,
        "field": field.key,
        "value": value,
        "handles": [h for h, ok in zip(handles, readable, strict=True) if ok],
        "next": cursor,
        "total": total if total <= SEARCH_COUNT_BOUND else f"more than {SEARCH_COUNT_BOUND}",
    }
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": NO_STORE})


async def _template(svc: HttpServices, name: str) -> Template:
    catalog = svc.writes.templates or registry_catalog(svc.resolver.registry)
    template = await catalog.get(name)
    if template is None:
        raise ApiError(
            RC.HANDLE_NOT_FOUND,
            f"no template {name}: no record there holds a template (IDIS_TEMPLATE at index "
            "1000); records name theirs at index 1001 (type TEMPLATE)",
            handle=name,
        )
    return template


def _searchable(template: Template, name: str) -> Field:
    field = template.field(name)
    if field is not None and field.searchable:
        return field
    usable = ", ".join(f.key for f in template.fields if f.searchable) or "none"
    what = "has no field" if field is None else "does not index the field"
    raise ApiError(
        RC.PROTOCOL_ERROR,
        f"template {template.handle} {what} {name}; searchable fields (indexed or unique): "
        f"{usable}",
    )


async def administered_prefixes(svc: HttpServices, identity: Identity) -> list[str] | None:
    """The prefixes ``identity`` may search (None: every one, a server admin): those of
    its own enterprise on which it holds LIST_HANDLES. Denied (403) when none."""
    authorizer = svc.authorizer
    if await authorizer.is_server_admin(identity):
        return None
    rows = await svc.resolver.registry.list_prefixes()
    try:
        home = normalise(parse_handle(identity.handle).owning_prefix)
    except HandleSyntaxError:
        home = ""
    codes = {r.credit_code for r in rows if r.prefix_key == home}
    mine = []
    for row in rows:
        if row.credit_code not in codes:
            continue
        admins = await authorizer.prefix_admin_values(row.prefix)
        if await authorizer.granted(identity, admins) & AdminPerm.LIST_HANDLES:
            mine.append(row.prefix)
    if not mine:
        raise ApiError(
            RC.INVALID_ADMIN,
            f"{identity.actor} administers no prefix on this node; search answers an "
            "enterprise admin (e.g. 300:<prefix>/ADMIN) about its enterprise's prefixes",
        )
    return mine


async def _may_read(svc: HttpServices, identity: Identity, handle: str, field: Field) -> bool:
    """May ``identity`` read the record's value of ``field`` (the one that matched)?"""
    found = await svc.resolver.resolve(handle, (field.index,))
    if not isinstance(found, Found):
        return False  # deleted since, or its prefix no longer served
    try:
        return bool(
            await svc.authorizer.readable(identity, handle, found.values, public_only=False)
        )
    except Denied:
        return False

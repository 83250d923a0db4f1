"""Industry data templates, readable by anyone (docs/industry-data.md): a template is a
public definition, like the records that cite it.

- ``GET /api/templates`` (``?prefix=``, ``?after=`` cursor, ``?limit=``): the templates
  this node holds, each as ``protocol.templates.Template.describe``.
- ``GET /api/templates/{handle}``: one template (found through the node, so a template
  another node publishes is read through the tree when forwarding is on).
- ``GET /snms/api/v5/template?prefix=&version=``: the same templates in the envelope
  CAICT-style secondary nodes answer with (``{status, message, data}``, docs/idis.md).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.fronts.http import params
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import Style, render
from node.fronts.http.services import HttpServices, services
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_prefix
from protocol.templates import Template

MAX_LIST = 200
CACHE = "public, max-age=60"


async def _templates(
    svc: HttpServices, prefix: str | None, after: str, limit: int
) -> tuple[list[Template], str | None]:
    catalog = svc.writes.templates
    if catalog is None:
        return [], None
    rows = await svc.writes.registry.list_templates(prefix, after, limit + 1)
    more = len(rows) > limit
    out = []
    for handle, _ in rows[:limit]:
        template = await catalog.get(handle)
        if template is not None:
            out.append(template)
    return out, rows[limit - 1][1] if more else None


def _prefix(request: web.Request) -> str | None:
    prefix = request.query.get("prefix") or None
    if prefix is not None:
        try:
            parse_prefix(prefix)
        except HandleSyntaxError as exc:
            raise ApiError(RC.INVALID_HANDLE, f"prefix: {exc.message}") from None
    return prefix


def _limit(request: web.Request) -> int:
    found = params.integer(request.query, "limit", low=1, high=MAX_LIST)
    return MAX_LIST if found is None else found


async def list_templates(request: web.Request) -> web.Response:
    svc = services(request)
    found, cursor = await _templates(
        svc, _prefix(request), request.query.get("after", "")[:300], _limit(request)
    )
    body = {
        "responseCode": int(RC.SUCCESS),
        "templates": [t.describe() for t in found],
        "next": cursor,
    }
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": CACHE})


async def get_template(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["handle"]
    catalog = svc.writes.templates
    template = await catalog.get(name) if catalog is not None else None
    if template is None:
        raise ApiError(RC.HANDLE_NOT_FOUND, f"no data template {name[:200]!r}", handle=name)
    body = {"responseCode": int(RC.SUCCESS), **template.describe()}
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": CACHE})


async def snms_templates(request: web.Request) -> web.Response:
    """The CAICT-style template service: every version of a prefix's templates, or the
    one ``version`` names."""
    svc = services(request)
    prefix = _prefix(request)
    if prefix is None:
        return _snms(-2, "prefix is required", None, 400)
    version = request.query.get("version")
    found, _ = await _templates(svc, prefix, "", MAX_LIST)
    data = [
        t.describe()
        for t in found
        if version is None or version in (t.version, t.handle.partition("/")[2])
    ]
    if version is not None and not data:
        return _snms(-2, f"no template version {version[:100]!r} under {prefix}", None, 404)
    return _snms(1, "success", data if version is None else data[0], 200)


def _snms(status: int, message: str, data: Any, http_status: int) -> web.Response:
    return render(
        {"status": status, "message": message, "data": data},
        status=http_status,
        style=Style(),
        headers={"Cache-Control": CACHE if status == 1 else "no-store"},
    )


def template_routes() -> Extension:
    def extend(app: web.Application) -> None:
        app.router.add_get("/api/templates", list_templates, name="templates")
        app.router.add_get("/api/templates/{handle:.+}", get_template, name="template")
        app.router.add_get("/snms/api/v5/template", snms_templates, name="snms_template")

    return extend

"""The interfaces CAICT-style secondary nodes expose to enterprises (docs/idis.md,
"Interfaces real secondary nodes expose"), for MES systems already integrated with
one: a token, then identifier data one at a time or in batches of up to
``batch_max_items``.

| route | does |
|---|---|
| ``POST /identity/token`` ``{username, password}`` | a bearer token (``node.auth.bearer``) |
| ``GET /identityv2/data/detail?handle=H`` | the record |
| ``POST /identityv2/data`` | create (the same content again is success) |
| ``PUT /identityv2/data`` | change the given values, keep the others |
| ``DELETE /identityv2/data?handle=H`` | delete |
| ``POST /identityv2/data/batchCreate``, ``PUT .../batchUpdate``, ``DELETE .../batchDelete`` | a result per item |

A record is ``{handle, templateVersion, value: [{index, type, auth, data: {format,
value}}]}``; ``auth`` 1 keeps a value from the public (admin read/write only), 0 or
absent makes it public. ``templateVersion`` names the data template the record follows:
its handle, or its version among the templates of the record's prefix and the
prefix's parents; the record then cites it (index 1001) and is checked against it.
The username is the admin identity (``300:88.118.2/ADMIN``) and the password its secret.

Every reply is ``{status, message, data}`` with status 1 ok, -1 not logged in, -2 a
business error (bad input, not found, conflict), -3 no permission, -4 an internal
error; the HTTP status says the same (200, 401, 400/404/409, 403, 500/503). Writes go
through the batch path (``node.fronts.http.batches.run_batch``), so they are checked,
signed and committed as every other write.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.auth import AuthContext, AuthError, Identity
from node.fronts.http.app import Extension
from node.fronts.http.batches import batch_body_limit, read_json_body, run_batch
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, render
from node.fronts.http.services import HttpServices, auth_error, services
from node.resolution.outcomes import Found
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_handle, prefix_ancestors
from protocol.jsonvalues import values_to_json
from protocol.templates import CITE_INDEX, CITE_TYPE, cited
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.http.compat")

Handler = Callable[[web.Request], Awaitable[web.Response]]
PUBLIC = "1110"  # admin read/write, public read
PRIVATE = "1100"  # admin read/write only


def _reply(status: int, message: str, data: Any = None, http_status: int = 200) -> web.Response:
    return render(
        {"status": status, "message": message, "data": data},
        status=http_status,
        headers={"Cache-Control": NO_STORE},
    )


def _status_of(http_status: int) -> int:
    if http_status == 401:
        return -1
    if http_status == 403:
        return -3
    if http_status >= 500:
        return -4
    return -2


def enveloped(handler: Handler) -> Handler:
    """Errors in the ``{status, message, data}`` envelope (these paths are outside
    ``/api/``, whose middleware answers in the Handle REST shape)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        svc = services(request)
        try:
            return await handler(request)
        except ApiError as err:
            return _reply(_status_of(err.status), err.message, None, err.status)
        except DatabaseUnavailable as exc:
            log.warning("compat %s: %s", request.path, exc)
            return _reply(-4, "the registry is unavailable; retry later", None, 503)
        except Exception:
            log.exception("compat %s failed", request.path)
            svc.metrics.registry_errors.labels("http_compat").inc()
            return _reply(-4, "internal server error", None, 500)

    return wrapped


async def _identity(svc: HttpServices, request: web.Request) -> Identity:
    identity = await svc.identity(request)
    if identity is None:
        raise ApiError(
            RC.AUTHENTICATION_NEEDED,
            "not logged in: send Authorization: Bearer <token from /identity/token>",
            status=401,
        )
    return identity


# -- token -------------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    svc = services(request)
    if svc.bearer is None:
        raise ApiError(RC.OPERATION_NOT_SUPPORTED, "tokens are not issued by this node", status=501)
    body = await read_json_body(request, 4096)
    user = body.get("username") if isinstance(body, dict) else None
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
        raise ApiError(RC.PROTOCOL_ERROR, "username and password are required", status=400)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    transport = request.transport
    headers = {"Authorization": f"Basic {basic}"}
    if "X-Forwarded-For" in request.headers:
        # Behind a trusted proxy the limits count the real client (node.auth.proxies).
        headers["X-Forwarded-For"] = ", ".join(request.headers.getall("X-Forwarded-For"))
    ctx = AuthContext(
        headers=headers,
        peer=request.remote,
        secure=request.secure,
        extra={"peercert": transport.get_extra_info("peercert") if transport else None},
    )
    try:  # the chain: the plain-HTTP policy, the failure limiter and metrics apply
        identity = await svc.auth.authenticate(ctx)
    except AuthError as exc:
        raise auth_error(exc) from None
    assert identity is not None
    lifetime = svc.settings.compat_token_lifetime_s
    data = {"token": svc.bearer.issue(identity, lifetime), "expiresIn": lifetime}
    return _reply(1, "success", data)


# -- one record --------------------------------------------------------------------------


async def detail(request: web.Request) -> web.Response:
    svc = services(request)
    identity = await _identity(svc, request)
    text = request.query.get("handle", "")
    try:
        parse_handle(text)
    except HandleSyntaxError as exc:
        raise ApiError(RC.INVALID_HANDLE, f"handle: {exc.message}") from None
    result = await svc.resolver.resolve(text, (), (), svc.clock(), public_only=False)
    if not isinstance(result, Found):
        raise ApiError(RC.HANDLE_NOT_FOUND, f"handle {text} does not exist", status=404)
    values = await svc.authorizer.readable(identity, text, result.values, public_only=False)
    items = []
    for v in values_to_json(values):
        v["auth"] = 0 if v.pop("permissions", PUBLIC)[2:3] == "1" else 1
        v.pop("timestamp", None)
        v.pop("ttl", None)
        items.append(v)
    data = {"handle": text, "templateVersion": cited(result.values), "value": items}
    return _reply(1, "success", data)


async def _values(svc: HttpServices, item: Any, n: int) -> dict[str, Any]:
    """A batch item (``node.fronts.http.batches``) from a CAICT-style record."""
    if not isinstance(item, dict) or not isinstance(item.get("handle"), str):
        return {"handle": None, "op": "create"}
    out: dict[str, Any] = {"handle": item["handle"]}
    values = []
    for v in item.get("value") or ():
        if not isinstance(v, dict):
            raise ApiError(RC.INVALID_VALUE, f"record {n}: each value must be an object")
        auth = v.get("auth")
        values.append(
            {
                "index": v.get("index"),
                "type": v.get("type"),
                "data": v.get("data"),
                "permissions": PRIVATE if auth in (1, "1", True) else PUBLIC,
            }
        )
    version = item.get("templateVersion")
    if version:
        cite = await _template_handle(svc, item["handle"], str(version))
        values = [v for v in values if v["index"] != CITE_INDEX]
        values.append({"index": CITE_INDEX, "type": CITE_TYPE, "data": cite})
    out["values"] = values
    return out


async def _template_handle(svc: HttpServices, handle: str, version: str) -> str:
    """``templateVersion``: a template's handle, or its version among the templates of
    the record's prefix and its parents."""
    if "/" in version:
        return version
    catalog = svc.writes.templates
    try:
        prefix = parse_handle(handle).owning_prefix
    except HandleSyntaxError:
        return version  # the item fails on its handle
    for candidate in prefix_ancestors(prefix):
        found = []
        for name, _ in await svc.writes.registry.list_templates(candidate, "", 200):
            template = await catalog.get(name) if catalog is not None else None
            if template is not None and version in (template.version, name.partition("/")[2]):
                found.append(template.handle)
        if len(found) == 1:
            return found[0]
        if found:
            raise ApiError(
                RC.INVALID_VALUE,
                f"templateVersion {version[:100]!r} is ambiguous under {candidate}: "
                f"name one of {', '.join(found)}",
            )
    raise ApiError(
        RC.INVALID_VALUE, f"no data template version {version[:100]!r} for {handle[:200]}"
    )


async def _write(request: web.Request, op: str, many: bool) -> web.Response:
    svc = services(request)
    identity = await _identity(svc, request)
    if op == "delete" and not many and "handle" in request.query:
        body: Any = {"handle": request.query["handle"]}
    else:
        body = await read_json_body(request, batch_body_limit(svc))
    records = body if many else [body]
    if many and isinstance(body, dict):
        records = body.get("data") or body.get("items")
    if not isinstance(records, list) or not records:
        raise ApiError(RC.PROTOCOL_ERROR, "the body must be a JSON array of records")
    limit = svc.settings.batch_max_items
    if len(records) > limit:
        raise ApiError(
            RC.PROTOCOL_ERROR,
            f"at most {limit} records a call, this one {len(records)}",
            status=413,
        )
    items = []
    for n, record in enumerate(records):
        if op == "delete":
            text = record if isinstance(record, str) else (record or {}).get("handle")
            items.append({"op": "delete", "handle": text})
            continue
        item = await _values(svc, record, n)
        item["op"] = op
        items.append(item)
    results = await run_batch(svc, identity, items, atomic=False, source="compat")
    if not many:
        r = results[0]
        if r["responseCode"] != RC.SUCCESS:
            return _reply(_status_of(r["status"]), r["message"], None, r["status"])
        return _reply(1, "success", {"handle": r["handle"]}, 201 if r["status"] == 201 else 200)
    out = [
        {"handle": r["handle"], "status": 1}
        if r["responseCode"] == RC.SUCCESS
        else {"handle": r["handle"], "status": _status_of(r["status"]), "message": r["message"]}
        for r in results
    ]
    failed = sum(1 for r in out if r["status"] != 1)
    data = {"total": len(out), "success": len(out) - failed, "fail": failed, "results": out}
    return _reply(1 if not failed else -2, "success" if not failed else f"{failed} failed", data)


def _route(op: str, many: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return await _write(request, op, many)

    return enveloped(handler)


def compat_routes() -> Extension:
    def extend(app: web.Application) -> None:
        r = app.router
        r.add_post("/identity/token", enveloped(token), name="compat_token")
        r.add_get("/identityv2/data/detail", enveloped(detail), name="compat_detail")
        r.add_post("/identityv2/data", _route("create", False), name="compat_create")
        r.add_put("/identityv2/data", _route("update", False), name="compat_update")
        r.add_delete("/identityv2/data", _route("delete", False), name="compat_delete")
        r.add_post("/identityv2/data/batchCreate", _route("create", True), name="compat_bcreate")
        r.add_put("/identityv2/data/batchUpdate", _route("update", True), name="compat_bupdate")
        r.add_delete("/identityv2/data/batchDelete", _route("delete", True), name="compat_bdelete")

    return extend

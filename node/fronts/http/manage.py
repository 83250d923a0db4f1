"""``/api/manage/...``: enterprises and their prefix applications over HTTP
(docs/enterprises.md).

| route | who |
|---|---|
| ``GET /api/manage/applications`` (``?status=``, ``?enterprise=``) | platform admins and auditors: all; an enterprise admin: its own |
| ``POST /api/manage/applications`` | an enterprise admin for its enterprise, a platform admin for any |
| ``GET /api/manage/applications/{prefix}`` | as the list |
| ``POST /api/manage/applications/{prefix}/reviews`` | auditors and platform admins |
| ``GET /api/manage/applications/{prefix}/history`` | as the list |
| ``GET /api/manage/enterprises`` | platform admins and auditors: all; an enterprise admin: its own |
| ``POST /api/manage/enterprises`` | platform admins |

Replies, errors included, are JSON only (no JSONP: these carry what only the caller may
see, and a review that enables a prefix carries the new admin's secret, once) and never
cached.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from node.auth import Identity, parse_admin_list
from node.auth.roles import RoleCheck, Roles
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, Style, error_reply, render
from node.fronts.http.services import SERVICES_KEY, services
from node.writes.onboarding import AdminNotCreated, NotUnderThisNode, Onboarding, Step
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from registry.errors import Conflict, DatabaseUnavailable, NotFound, QueryFailed, RegistryError
from registry.reviews import TransitionRefused
from registry.rows import Enterprise, Prefix, PrefixReview, PrefixStatus

log = logging.getLogger("idnode.manage")

BASE = "/api/manage"
MAX_BODY_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass(frozen=True)
class Manage:
    roles: RoleCheck
    onboarding: Onboarding


MANAGE_KEY = web.AppKey("idnode.http.manage", Manage)


# -- JSON shapes -----------------------------------------------------------------------


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def application_json(p: Prefix) -> dict[str, Any]:
    return {
        "prefix": p.prefix,
        "status": int(p.status),
        "statusName": p.status.label,
        "enterprise": {"creditCode": p.credit_code, "name": p.enterprise_name},
        "createdAt": _time(p.created_at),
        "updatedAt": _time(p.updated_at),
    }


def review_json(r: PrefixReview) -> dict[str, Any]:
    return {
        "id": r.id,
        "prefix": r.prefix,
        "action": r.action,
        "fromStatus": None if r.from_status is None else int(r.from_status),
        "toStatus": int(r.to_status),
        "toStatusName": r.to_status.label,
        "actor": r.actor,
        "reason": r.reason,
        "at": _time(r.at),
    }


def enterprise_json(e: Enterprise) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "creditCode": e.credit_code,
        "contact": e.contact,
        "status": e.status,
        "createdAt": _time(e.created_at),
    }


def _style(request: web.Request) -> Style:
    return Style(pretty=Style.of(request).pretty)  # never a callback: JSON only


def _reply(request: web.Request, body: Mapping[str, Any], status: int = 200) -> web.Response:
    return render(
        {"responseCode": 1, **body},
        status=status,
        style=_style(request),
        headers={"Cache-Control": NO_STORE},
    )


def _endpoint(handler: Handler) -> Handler:
    """JSON only, errors too: the API middleware would wrap an error in the caller's
    ``callback=``, so the endpoint renders its own (the middleware still adds CORS
    headers and counts it)."""

    @functools.wraps(handler)
    async def endpoint(request: web.Request) -> web.Response:
        try:
            if "callback" in request.query:
                raise ApiError(
                    RC.PROTOCOL_ERROR, "the management API answers JSON only (no callback=)"
                )
            return await handler(request)
        except ApiError as err:
            return error_reply(err, _style(request))

    return endpoint


# -- requests --------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    ctype = (request.headers.get("Content-Type") or "application/json").split(";")[0]
    if ctype.strip().lower() not in ("application/json", "text/json"):
        raise ApiError(RC.PROTOCOL_ERROR, "send the body as application/json", status=415)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(RC.PROTOCOL_ERROR, f"body over {MAX_BODY_BYTES} bytes", status=413)
    try:
        body = orjson.loads(await request.read() or b"null")
    except orjson.JSONDecodeError as exc:
        raise ApiError(RC.PROTOCOL_ERROR, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(RC.PROTOCOL_ERROR, "the body must be a JSON object")
    return body


def _text(body: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    """A string field ("" when an optional one is absent)."""
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(RC.PROTOCOL_ERROR, f'the body needs "{name}", a non-empty string')
    return value


def _status(value: Any) -> PrefixStatus:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ApiError(RC.PROTOCOL_ERROR, '"status" must be a number 0-5 or a status name')
    try:
        return PrefixStatus.parse(str(value))
    except ValueError as exc:
        raise ApiError(RC.INVALID_VALUE, str(exc)) from None


async def _caller(request: web.Request, what: str) -> tuple[Identity, Roles]:
    identity = await services(request).require_identity(request, what)
    return identity, await request.app[MANAGE_KEY].roles.of(identity)


def _denied(message: str) -> ApiError:
    return ApiError(RC.INSUFFICIENT_PERMISSIONS, message)


STEP_ERRORS = (RegistryError, HandleSyntaxError, NotUnderThisNode, AdminNotCreated)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """What a step refused (registry, syntax, policy) as the matching error reply; an
    unreachable or failing registry is left to the middleware (503, 500)."""
    try:
        yield
    except (DatabaseUnavailable, QueryFailed):
        raise
    except STEP_ERRORS as exc:
        raise _api_error(exc) from None


def _api_error(exc: Exception) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(RC.HANDLE_NOT_FOUND, str(exc))
    if isinstance(exc, TransitionRefused):
        return ApiError(RC.INVALID_VALUE, str(exc), status=409)
    if isinstance(exc, Conflict):
        return ApiError(RC.HANDLE_ALREADY_EXISTS, str(exc))
    if isinstance(exc, HandleSyntaxError):
        return ApiError(RC.INVALID_HANDLE, str(exc))
    if isinstance(exc, NotUnderThisNode):
        return ApiError(RC.SERVER_NOT_RESP, str(exc))
    if isinstance(exc, AdminNotCreated):
        return ApiError(RC.ERROR, str(exc), status=500)
    return ApiError(RC.INVALID_VALUE, str(exc))  # ReasonRequired, a bad credit code, ...


async def _visible(request: web.Request, roles: Roles, identity: Identity) -> Prefix:
    prefix = request.match_info["prefix"]
    if not roles.any:
        raise _denied(f"{identity.actor} is no platform admin, auditor or enterprise admin")
    with _refusals():
        row = await services(request).resolver.registry.get_prefix(prefix)
    if row is None:
        raise ApiError(RC.HANDLE_NOT_FOUND, f"prefix {prefix} is not registered")
    if not roles.may_see(row.credit_code):
        raise _denied(f"{identity.actor} is not an admin of the enterprise holding {row.prefix}")
    return row


# -- applications ----------------------------------------------------------------------


@_endpoint
async def list_applications(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "listing prefix applications")
    if not roles.any:
        raise _denied(f"{identity.actor} is no platform admin, auditor or enterprise admin")
    q = request.query
    status = _status(q["status"]) if "status" in q else None
    enterprise = q.get("enterprise") or None
    if not roles.sees_all:
        if enterprise not in (None, roles.enterprise):
            raise _denied(f"{identity.actor} sees only enterprise {roles.enterprise}'s prefixes")
        enterprise = roles.enterprise
    rows = [
        p
        for p in await services(request).resolver.registry.list_prefixes()
        if (status is None or p.status == status)
        and (enterprise is None or p.credit_code == enterprise)
    ]
    return _reply(
        request,
        {"totalCount": len(rows), "applications": [application_json(p) for p in rows]},
    )


@_endpoint
async def read_application(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "reading a prefix application")
    row = await _visible(request, roles, identity)
    return _reply(request, {"application": application_json(row)})


@_endpoint
async def apply(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "applying for a prefix")
    body = await _body(request)
    prefix = _text(body, "prefix", required=True)
    code = _text(body, "creditCode") or roles.enterprise
    if not roles.platform_admin:
        if roles.enterprise is None:
            raise _denied(
                f"{identity.actor} cannot apply for prefixes: an enterprise admin "
                "(300:<prefix>/ADMIN) applies for its enterprise, a platform admin for any"
            )
        if code != roles.enterprise:
            raise _denied(
                f"{identity.actor} is an admin of enterprise {roles.enterprise}, not of {code}"
            )
    if code is None:
        raise ApiError(RC.PROTOCOL_ERROR, 'name the enterprise applying: "creditCode"')
    svc = services(request)
    with _refusals():
        step = await request.app[MANAGE_KEY].onboarding.apply(
            prefix, code, actor=identity.actor, reason=_text(body, "reason"), now=svc.now()
        )
    log.info("prefix %s: application by %s for %s", step.prefix.prefix, identity.actor, code)
    return _reply(request, _step_json(step), status=201)


@_endpoint
async def review(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "reviewing a prefix application")
    if not (roles.auditor or roles.platform_admin):
        raise _denied(f"{identity.actor} is no auditor: only auditors and platform admins review")
    body = await _body(request)
    if "status" not in body:
        raise ApiError(RC.PROTOCOL_ERROR, 'the body needs "status": the status to move to')
    to = _status(body["status"])
    svc = services(request)
    with _refusals():
        step = await request.app[MANAGE_KEY].onboarding.review(
            request.match_info["prefix"],
            to,
            actor=identity.actor,
            reason=_text(body, "reason"),
            now=svc.now(),
        )
    log.info(
        "prefix %s: %s by %s%s",
        step.prefix.prefix,
        step.review.to_status.label,
        identity.actor,
        f", admin {step.credentials.admin} created" if step.credentials else "",
    )
    return _reply(request, _step_json(step))


def _step_json(step: Step) -> dict[str, Any]:
    body: dict[str, Any] = {
        "application": application_json(step.prefix),
        "review": review_json(step.review),
    }
    if step.credentials is not None:
        body["credentials"] = step.credentials.to_json()  # the only time it is shown
    return body


@_endpoint
async def history(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "reading a prefix's history")
    row = await _visible(request, roles, identity)
    with _refusals():
        steps = await request.app[MANAGE_KEY].onboarding.reviews.history(row.prefix)
    return _reply(request, {"prefix": row.prefix, "history": [review_json(r) for r in steps]})


# -- enterprises -----------------------------------------------------------------------


@_endpoint
async def list_enterprises(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "listing enterprises")
    if not roles.any:
        raise _denied(f"{identity.actor} is no platform admin, auditor or enterprise admin")
    rows = [
        e
        for e in await services(request).resolver.registry.list_enterprises()
        if roles.may_see(e.credit_code)
    ]
    return _reply(request, {"enterprises": [enterprise_json(e) for e in rows]})


@_endpoint
async def create_enterprise(request: web.Request) -> web.Response:
    identity, roles = await _caller(request, "registering an enterprise")
    if not roles.platform_admin:
        raise _denied(f"{identity.actor} is no platform admin: only they register enterprises")
    body = await _body(request)
    name = _text(body, "name", required=True)
    code = _text(body, "creditCode", required=True)
    svc = services(request)
    with _refusals():
        ent = await svc.resolver.registry.add_enterprise(
            name, code, _text(body, "contact"), svc.now()
        )
    log.info("enterprise %s (%s) registered by %s", ent.credit_code, ent.name, identity.actor)
    return _reply(request, {"enterprise": enterprise_json(ent)}, status=201)


def manage_routes() -> Extension:
    """The ``http_app`` extension serving ``/api/manage`` (from the app's HttpServices:
    its authorizer, registry, write service and the ``auditors`` setting). Adding it
    twice adds it once."""

    def extend(app: web.Application) -> None:
        if MANAGE_KEY in app:
            return
        svc = app[SERVICES_KEY]
        registry = svc.resolver.registry
        roles = RoleCheck(svc.authorizer, registry, parse_admin_list(svc.settings.auditors))
        onboarding = Onboarding(
            registry, svc.writes, configured=svc.settings.prefixes, source="http"
        )
        app[MANAGE_KEY] = Manage(roles, onboarding)
        r = app.router
        apps, one = f"{BASE}/applications", f"{BASE}/applications/{{prefix}}"
        r.add_get(apps, list_applications, name="manage_applications")
        r.add_post(apps, apply, name="manage_apply")
        r.add_get(one, read_application, name="manage_application")
        r.add_post(f"{one}/reviews", review, name="manage_review")
        r.add_get(f"{one}/history", history, name="manage_history")
        r.add_get(f"{BASE}/enterprises", list_enterprises, name="manage_enterprises")
        r.add_post(f"{BASE}/enterprises", create_enterprise, name="manage_enterprise_create")

    return extend

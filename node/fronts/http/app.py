"""The HTTP front's aiohttp application: routes, error and CORS middleware, metrics.

``http_app`` takes the services and any number of ``extensions``; each may add routes
(sessions, the browser record page ``/{handle}``) or middlewares before the router is
frozen, so later fronts extend the app without editing this module.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from node.fronts.http.errors import ApiError
from node.fronts.http.fastlane import HotLane
from node.fronts.http.handles import delete_handle, get_handle, handle_from_path, put_handle
from node.fronts.http.listing import list_handles, list_prefixes
from node.fronts.http.openapi import openapi_bytes
from node.fronts.http.reply import CORS_HEADERS, PREFLIGHT_HEADERS, RC_KEY, Style, error_reply
from node.fronts.http.services import SERVICES_KEY, HttpServices
from node.runtime.httpserve import QUICK_ANSWERS, guard_app
from node.runtime.lograte import LogEvery
from protocol.codes import ResponseCode as RC
from registry.errors import DatabaseUnavailable

log = logging.getLogger("idnode.http")
# Every request meets a registry that is down: say so once per interval, not per request.
_unavailable_log = LogEvery(log)

Extension = Callable[[web.Application], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/"


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors, CORS headers and metrics for every ``/api/`` request."""
    if not request.path.startswith(API):
        return await handler(request)
    svc = request.app[SERVICES_KEY]
    started = time.perf_counter()
    route = (request.match_info.route.name or "unknown").removesuffix("_slash")
    try:
        resp = await handler(request)
    except ApiError as err:
        resp = error_reply(_naming_the_handle(err, request), Style.of(request))
    except web.HTTPException as exc:  # the router's 404 / 405
        allow = exc.headers.get("Allow", "")
        status, headers = exc.status, {"Allow": allow} if allow else None
        if status == 405 and {m.strip() for m in allow.split(",")} <= {"OPTIONS"}:
            status, headers = 404, None  # only the CORS catch-all matched: no such endpoint
        unknown = ApiError(
            RC.PROTOCOL_ERROR,
            f"unknown HTTP API endpoint {request.method} {request.path}",
            status=status,
            headers=headers,
        )
        resp = error_reply(unknown, Style.of(request))
    except DatabaseUnavailable as exc:  # a retry may cure it: RC 3 "server too busy" -> 503
        _unavailable_log("http %s: %s", route, exc)
        svc.metrics.registry_errors.labels(f"http_{route}").inc()
        resp = error_reply(ApiError(RC.SERVER_TOO_BUSY, "the registry is unavailable; retry later"))
    except Exception:
        log.exception("http %s request failed", route)
        svc.metrics.registry_errors.labels(f"http_{route}").inc()
        resp = error_reply(ApiError(RC.ERROR, "internal server error"))
    resp.headers.update(CORS_HEADERS)
    svc.metrics.count_request("http", route, str(resp.get(RC_KEY, resp.status)))
    svc.metrics.time_request("http", route, time.perf_counter() - started)
    return resp


def _naming_the_handle(err: ApiError, request: web.Request) -> ApiError:
    """Every error about a handle names it (``"handle"`` in the body), as the reference's
    do: clients read it even from a failed authentication (pyhandle's delete_handle)."""
    if err.handle is None and "handle" in request.match_info:
        with contextlib.suppress(ApiError):  # not UTF-8: nothing to echo
            err.handle = handle_from_path(request)
    return err


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: browsers ask before a PUT/DELETE or a request with Authorization."""
    return web.Response(status=204, headers=PREFLIGHT_HEADERS)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_bytes(), content_type="application/json")


def http_app(services: HttpServices, *, extensions: Sequence[Extension] = ()) -> web.Application:
    app = web.Application(
        client_max_size=services.settings.http_max_body_bytes, middlewares=[api_middleware]
    )
    guard_app(app)  # header deadline, Server header (node.runtime.httpserve)
    app[SERVICES_KEY] = services
    if services.hot is not None:  # kept replies, also written by the connections
        app[QUICK_ANSWERS] = HotLane(
            services.hot,
            services.metrics,
            services.auth.client_address,
            services.resolver,
            services.clock,
        )
    r = app.router
    r.add_get("/api/openapi.json", openapi, name="openapi")
    r.add_get("/api/prefixes", list_prefixes, name="list_prefixes")
    r.add_get("/api/handles", list_handles, name="list_handles")
    r.add_get("/api/handles/", list_handles, name="list_handles_slash")  # as clients spell it too
    r.add_get("/api/handles/{handle:.+}", get_handle, name="resolution")
    r.add_put("/api/handles/{handle:.+}", put_handle, name="put")
    r.add_delete("/api/handles/{handle:.+}", delete_handle, name="delete")
    r.add_route("OPTIONS", "/api/{tail:.*}", preflight, name="preflight")
    for extend in extensions:
        extend(app)
    return app

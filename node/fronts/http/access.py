"""The HTTP front's access log (node.runtime.accesslog): an aiohttp middleware, outermost,
so it sees every request aiohttp handles (the API, the record page) with the reply the
client got, errors included.

Cache hits the connection answers itself (the fast lane, node.fronts.http.fastlane) never
reach aiohttp and so are not seen here; the fast lane logs them itself.
"""

from __future__ import annotations

import time

from aiohttp import web

from node.fronts.http.app import Extension, Handler
from node.fronts.http.reply import RC_KEY
from node.fronts.http.services import SERVICES_KEY

HTTP_FRONT = "http"


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc = request.app[SERVICES_KEY]
    access = svc.metrics.access
    if not access.wanted():
        return await handler(request)
    started = time.perf_counter()
    rc = 500  # what aiohttp answers an exception that gets past every middleware
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # outside /api/: the router's 404, a redirect
        rc = exc.status
        raise
    else:
        rc = resp.get(RC_KEY, resp.status)
        return resp
    finally:
        access.write(
            HTTP_FRONT,
            (request.match_info.route.name or "unknown").removesuffix("_slash"),
            request.match_info.get("handle"),
            rc,
            time.perf_counter() - started,
            svc.auth.client_address(request.remote, request.headers),
        )


def access_log_routes() -> Extension:
    """Adds the access-log middleware ahead of every other (once, however often added)."""

    def extend(app: web.Application) -> None:
        if access_middleware not in app.middlewares:
            app.middlewares.insert(0, access_middleware)

    return extend

"""The health port: /healthz (process up), /readyz (registry reachable), /metrics.

``/readyz`` says in words what is down (``registry unreachable at socket
/var/lib/idnode/run/.s.PGSQL.5432: ...``), so an operator reading a probe failure knows
where to look.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node.runtime.metrics import NodeMetrics
from registry.errors import RegistryError
from registry.store import Registry


def health_app(registry: Registry, metrics: NodeMetrics, timeout_s: float) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(registry.ping(), timeout_s)
        except TimeoutError:
            reason = f"registry at {registry.target} did not answer within {timeout_s:g} s"
        except RegistryError as exc:
            reason = exc.message
        else:
            metrics.ready.set(1)
            return web.json_response({"status": "ready"})
        metrics.ready.set(0)
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app

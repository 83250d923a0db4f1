"""The admin port: /healthz (process up), /readyz (registry reachable), /metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from registry.store import Registry

from .metrics import NodeMetrics


def admin_app(registry: Registry, metrics: NodeMetrics, timeout_s: float) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(registry.ping(), timeout_s)
        except Exception as exc:  # any failure means "not ready"; the reason is for operators
            metrics.ready.set(0)
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            return web.json_response({"status": "unavailable", "reason": reason}, status=503)
        metrics.ready.set(1)
        return web.json_response({"status": "ready"})

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

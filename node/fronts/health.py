"""The health port: /healthz (process up), /readyz (registry reachable), /metrics.

``/readyz`` says in words what is down, so an operator reading a probe failure knows
where to look: ``registry: embedded PostgreSQL not running, restart 3 in 4 s`` while
the node restarts its embedded server (node.runtime.supervise), else ``registry
unreachable at socket /var/lib/idnode/run/.s.PGSQL.5432 (database idnode): connection
refused`` (registry.outage); never an exception's repr.

The port listens on ``admin_bind`` (loopback by default), not with the API: metrics
tell an attacker how the node is doing under the attack. With ``metrics_token_file``
set, /metrics also asks for that bearer token (compared in constant time, never
logged); /healthz and /readyz stay open to probes, which say nothing beyond up or not.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from node.errors import NodeError
from node.runtime.httpserve import guard_app
from node.runtime.metrics import NodeMetrics
from node.runtime.supervise import EmbeddedSupervisor
from registry.errors import RegistryError
from registry.outage import driver_error, unreachable
from registry.store import Registry

BEARER = "Bearer "


def read_metrics_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace, the final newline, dropped)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise NodeError(f"metrics_token_file {path}: cannot read it: {reason}") from None
    if not token:
        raise NodeError(f"metrics_token_file {path} is empty: put the bearer token in it")
    return token


def health_app(
    registry: Registry,
    metrics: NodeMetrics,
    timeout_s: float,
    *,
    metrics_token: str | None = None,
    embedded: EmbeddedSupervisor | None = None,
) -> web.Application:
    expected = (BEARER + metrics_token).encode() if metrics_token is not None else None

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        down = embedded.status_words() if embedded is not None else None
        if down is not None:
            reason = f"registry: {down}"
        else:
            try:
                await asyncio.wait_for(registry.ping(), timeout_s)
            except TimeoutError:
                reason = f"registry at {registry.target} did not answer within {timeout_s:g} s"
            except RegistryError as exc:
                reason = unreachable(registry.target, exc) if driver_error(exc) else exc.message
            else:
                metrics.ready.set(1)
                return web.json_response({"status": "ready"})
        metrics.ready.set(0)
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)

    async def metrics_view(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"status": "unauthorized", "reason": "/metrics needs its bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        body = generate_latest(metrics.registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    guard_app(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app

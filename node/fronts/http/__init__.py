"""The HTTP front: the Handle.Net-compatible JSON REST API (``/api/...``).

- ``app``: the aiohttp application factory (routes, JSON errors, CORS, metrics).
- ``handles`` / ``listing``: the endpoints; ``params`` and ``reply``: their input/output.
- ``services``: what endpoints use (resolver, write service, auth chain, authorizer).
- ``openapi``: the OpenAPI 3.1 document served at ``/api/openapi.json``.
"""

from node.fronts.http.app import http_app
from node.fronts.http.services import HttpServices

__all__ = ["HttpServices", "http_app"]

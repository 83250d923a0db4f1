"""Shared pieces of the HTTP API tests: a real aiohttp client checking every reply
against the OpenAPI document, Basic credentials of the demo enterprises, and a snapshot
of the registry tables to prove that refused requests changed nothing. The fixtures
that start a real node with the demo data (``start_http_node``, ``http_node``, ``api``)
are in ``tests/node/conftest.py``.

Secrets are hashed with the minimum iteration count here (the setting), to keep the
suite fast; one test in test_auth_secrets.py checks the default.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
from openapi_schema_validator import OAS31Validator
from yarl import URL

from node.app import Node
from node.demo.dataset import DYE_PLANT, OPERATOR, SILK_MILL, YARN_MAKER, DemoEnterprise
from node.fronts.http.openapi import openapi_document

# Enterprise A owns 88.118.2, enterprise B owns 88.118.3 (node.demo.dataset).
A, B = SILK_MILL, YARN_MAKER
PREFIX = {
    A.credit_code: "88.118.2",
    B.credit_code: "88.118.3",
    DYE_PLANT.credit_code: "88.118.5",
    OPERATOR.credit_code: "88.118",
}
A_HANDLE = "88.118.2/ROLL-2026-000123"  # a greige roll of enterprise A (demo)
B_HANDLE = "88.118.3/YARN-2026-0412"  # a yarn lot of enterprise B (demo)


class SteppedClock:
    """A monotonic clock the test moves by hand (no sleeping)."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def basic(user: str, secret: str | bytes, *, encode_user: bool = True) -> dict[str, str]:
    """Basic credentials the way Handle.Net clients send them: the user
    percent-encoded (``300%3A88.118.2%2FADMIN``), the password as it is."""
    u = quote(user, safe="") if encode_user else user
    pw = secret if isinstance(secret, bytes) else secret.encode("utf-8")
    return {
        "Authorization": "Basic " + base64.b64encode(u.encode("utf-8") + b":" + pw).decode("ascii")
    }


def admin_of(ent: DemoEnterprise) -> dict[str, str]:
    return basic(f"300:{PREFIX[ent.credit_code]}/ADMIN", ent.admin_secret)


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    @property
    def json(self) -> Any:
        return orjson.loads(self.text)


CHECKED: list[tuple[str, str, int]] = []  # (method, path template, status) validated so far


def _template(path: str) -> str | None:
    path = path.split("?", 1)[0]
    if path == "/api/handles/":
        return "/api/handles"
    if path.startswith("/api/handles/"):
        return "/api/handles/{handle}"
    if path.startswith("/api/history/"):  # the handle may hold '/': not one segment
        return "/api/history/{handle}"
    if path.startswith("/api/templates/"):
        return "/api/templates/{handle}"
    if path in openapi_document()["paths"]:
        return path
    for template in openapi_document()["paths"]:  # one path segment per {parameter}
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), path):
            return template
    return None


def check_openapi(method: str, path: str, reply: Reply) -> None:
    """Validate a real reply against the served OpenAPI document: its status must be
    documented for the operation (or fall under "default") and its JSON body must
    match the schema. Unknown endpoints must answer with the ErrorReply shape."""
    if method in ("OPTIONS", "HEAD"):
        return
    doc = openapi_document()
    template = _template(path)
    operation = doc["paths"][template].get(method.lower()) if template else None
    responses = (
        operation["responses"]
        if operation
        else {
            "default": {
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorReply"}}
                }
            }
        }
    )
    response = responses.get(str(reply.status), responses.get("default"))
    assert response is not None, (
        f"{method} {path}: status {reply.status} not in the OpenAPI document"
    )
    if "content" not in response:  # e.g. 204: documented without a body, so none is sent
        assert reply.text == "", f"{method} {path}: {reply.status} has a body"
        CHECKED.append((method, template or "?", reply.status))
        return
    text = reply.text
    ctype = reply.headers.get("Content-Type", "")
    if ctype.startswith("application/javascript"):
        assert text.startswith("/**/") and text.endswith(");")
        text = text[text.index("(") + 1 : -2]
    else:
        assert ctype.startswith("application/json"), ctype
    schema = response["content"]["application/json"]["schema"]
    OAS31Validator({**schema, "components": doc["components"]}).validate(orjson.loads(text))
    CHECKED.append((method, template or "?", reply.status))


class Api:
    """A real HTTP client bound to one node; every reply is checked against the
    OpenAPI document (``check_openapi``)."""

    follow_redirects = True
    checks_openapi = True

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base

    def url(self, path: str) -> URL:
        # encoded=True: send the path bytes exactly as written (percent escapes kept).
        return URL(self.base + path, encoded=True)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = orjson.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        payload: Any = io.BytesIO(data) if data is not None and len(data) > 512 * 1024 else data
        async with self.session.request(
            method,
            self.url(path),
            data=payload,
            headers=hdrs,
            allow_redirects=self.follow_redirects,
        ) as resp:
            reply = Reply(resp.status, resp.headers, await resp.text())
        if self.checks_openapi:
            check_openapi(method, path, reply)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("PUT", path, body=body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body=body, **kw)


StartNode = Callable[..., Awaitable[Node]]


async def db_state(url: str) -> tuple[list[tuple[str, bytes, int]], int]:
    """Every handle row (key, values, version) and the number of history rows."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            'SELECT handle_key, "values", version FROM handles ORDER BY handle_key'
        )
        history = await conn.fetchval("SELECT count(*) FROM handle_history")
    finally:
        await conn.close()
    return [(r["handle_key"], bytes(r["values"]), r["version"]) for r in rows], history


async def history_of(url: str, key: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT action, actor FROM handle_history WHERE handle_key = $1 ORDER BY id", key
        )
    finally:
        await conn.close()
    return [(r["action"], r["actor"]) for r in rows]


def url_value(index: int, url: str) -> dict[str, Any]:
    return {"index": index, "type": "URL", "data": {"format": "string", "value": url}}


def admin_value(prefix: str, index: int = 100) -> dict[str, Any]:
    return {
        "index": index,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": f"{prefix}/ADMIN", "index": 300, "permissions": "111111111111"},
        },
    }


async def all_record_bytes(url: str) -> bytes:
    """Every byte of every handle record and history row."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch('SELECT "values" FROM handles')
        hist = await conn.fetch("SELECT old_values, new_values FROM handle_history")
    finally:
        await conn.close()
    out = b"".join(bytes(r["values"]) for r in rows)
    return out + b"".join(
        bytes(v) for r in hist for v in (r["old_values"], r["new_values"]) if v is not None
    )

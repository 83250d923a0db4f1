"""Shared pieces of the console tests: a browser-like aiohttp client (a cookie jar, the
Origin a browser sends with a form), the demo identities, and valid field values of the
demo's roll template taken from a demo record."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from node.app import Node
from node.demo.dataset import OPERATOR, SILK_MILL, YARN_MAKER
from protocol.handle import normalise
from tests.node.http_support import A_HANDLE

PLATFORM = ("300:88.118/ADMIN", OPERATOR.admin_secret)
ENT_A = ("300:88.118.2/ADMIN", SILK_MILL.admin_secret)
ENT_B = ("300:88.118.3/ADMIN", YARN_MAKER.admin_secret)
ROLL_TEMPLATE = "88.118/TPL.TEXTILE.ROLL.V1"
ROLES = {"server_admins": "300:88.118/ADMIN"}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Page:
    status: int
    headers: CIMultiDictProxy[str]
    text: str

    @property
    def csrf(self) -> str:
        found = _CSRF.search(self.text)
        assert found, "no CSRF field on the page"
        return found.group(1)


class ConsoleClient:
    """One browser: its cookies, and forms posted with this site's Origin."""

    def __init__(self, node: Node, *, tls: ssl.SSLContext | None = None):
        """``tls``: over HTTPS with this context (and the client certificate it holds)."""
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{node.http_port}"
        # unsafe: the jar keeps cookies of an IP-address host (127.0.0.1)
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(ssl=tls) if tls is not None else None,
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str, **kw: Any) -> Page:
        async with self.session.get(self.base + path, allow_redirects=False, **kw) as resp:
            return Page(resp.status, resp.headers, await resp.text())

    async def post(self, path: str, data: Any, *, origin: str | None = "self", **kw: Any) -> Page:
        headers = dict(kw.pop("headers", {}))
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        async with self.session.post(
            self.base + path, data=data, headers=headers, allow_redirects=False, **kw
        ) as resp:
            return Page(resp.status, resp.headers, await resp.text())

    async def login(self, who: tuple[str, str]) -> Page:
        page = await self.post("/console/login", {"identity": who[0], "secret": who[1]})
        assert page.status == 303, page.text
        return page

    async def csrf(self) -> str:
        return (await self.get("/console/imports")).csrf


async def roll_fields(node: Node) -> dict[str, str]:
    """The roll template's fields of demo record A_HANDLE: a valid set of values."""
    assert node.writes is not None and node.writes.templates is not None
    template = await node.writes.templates.get(ROLL_TEMPLATE)
    record = await node.writes.registry.get_handle(normalise(A_HANDLE))
    assert template is not None and record is not None
    out = {}
    for v in record.values:
        f = template.at(v.index)
        if f is not None:
            out[f.key] = v.data.decode("utf-8")
    return out

"""The record page's verification status line (node.fronts.http.page.signature) on a real node."""

from __future__ import annotations

import html
from dataclasses import replace
from urllib.parse import quote

import aiohttp

from node.app import Node
from node.demo.dataset import demo_dataset
from node.signing.signer import handle_node_prefix
from tests.node.http_support import (
    Api,
)
from tests.node.signing_support import H, put_signed, rewrite_in_pg

BROWSER = {"Accept": "text/html"}


async def status_of_page(node: Node, handle: str) -> str:
    url = f"http://127.0.0.1:{node.http_port}/{quote(handle, safe='/')}?noredirect"
    async with aiohttp.ClientSession() as session, session.get(url, headers=BROWSER) as r:
        assert r.status == 200, handle
        return status_of(await r.text())


def status_of(page: str) -> str:
    start = page.index('id="verification">') + len('id="verification">')
    return html.unescape(page[start : page.index("</p>", start)])


async def test_demo_pages_show_a_valid_signature(http_node: Node, api: Api) -> None:
    for demo in demo_dataset().handles[:5]:
        expected = f"✓ 签名有效 · Signature valid (signed by 400:0.NA/{handle_node_prefix(demo.handle)}, ES256)"
        assert await status_of_page(http_node, demo.handle) == expected


async def test_tampered_value_shows_invalid_and_names_it(
    http_node: Node, api: Api, database_url: str
) -> None:
    await put_signed(api)
    assert "Signature valid" in await status_of_page(http_node, H)
    await rewrite_in_pg(
        database_url,
        H,
        lambda vs: [replace(v, data=b"https://evil.example/b") if v.index == 2 else v for v in vs],
    )
    line = await status_of_page(http_node, H)
    assert line.startswith("✗ 签名无效 · Signature invalid: ") and "value 2 URL mismatched" in line


async def test_unsigned_record_says_so(http_node: Node, api: Api, database_url: str) -> None:
    await put_signed(api)
    await rewrite_in_pg(database_url, H, lambda vs: [v for v in vs if v.type != "HS_SIGNATURE"])
    assert await status_of_page(http_node, H) == "未签名 · Unsigned"

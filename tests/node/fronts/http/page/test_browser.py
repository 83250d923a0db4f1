"""The handle page in a real browser: headless Chromium against a real node.

Chromium comes from Debian's packages; CI installs it (and a CJK font, so the
screenshot shows the Chinese field names rather than empty boxes) with

    apt-get update && apt-get install -y chromium fonts-noto-cjk

and these tests skip, saying so, where it is missing. The node serves from the test's
own event loop, so Chromium runs as an asyncio subprocess: a blocking call would stall
the very server it is loading the page from.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from node.app import Node
from node.demo.dataset import SILK_LOT
from tests.node.cdp_support import CHROMIUM, HEADLESS, INSTALL
from tests.node.http_support import A, admin_of, admin_value

WIDTH, HEIGHT = 1024, 1400
BROWSER_TIMEOUT_S = 90.0  # first start on a cold CI box is slow; normally ~2 s

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=f"chromium not installed: {INSTALL}")


async def chromium(profile: Path, *args: str) -> bytes:
    """Run headless Chromium to completion; its stdout (the DOM for --dump-dom)."""
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *HEADLESS,
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode("utf-8", "replace")[-2000:]
    return out


def page_url(node: Node, handle: str) -> str:
    # Given to Chromium unencoded, as a person types it; the browser percent-encodes.
    return f"http://127.0.0.1:{node.http_port}/{handle}?noredirect"


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit truecolour PNG: enough of
    RFC 2083 (chunks, zlib, the five row filters) to look at the pixels without PIL."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format depth={depth} colour={colour}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


@pytest.fixture
async def seeded(http_node: Node) -> AsyncIterator[Node]:
    """The demo node plus one record whose values try to inject markup."""
    values = [
        admin_value("88.118.2"),
        {"index": 3, "type": "NOTE", "data": "<script>document.title='pwned'</script><b>bold?</b>"},
        {"index": 4, "type": "URL", "data": "javascript:alert(1)"},
    ]
    url = f"http://127.0.0.1:{http_node.http_port}/api/handles/88.118.2/XSS"
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, json=values, headers=admin_of(A)) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()
    yield http_node


async def test_dom_shows_labelled_fields(seeded: Node, tmp_path: Path) -> None:
    dom = (await chromium(tmp_path / "profile", "--dump-dom", page_url(seeded, SILK_LOT))).decode()
    assert f"<h1>{SILK_LOT}</h1>" in dom  # the browser sent it percent-encoded; we echo it
    for text in (
        "业务字段",
        "缸号",
        "dye lot",
        "颜色",
        "藏青",
        "染色工艺",
        "绳状溢流染色 95℃",
        "染色缸号",
    ):
        assert text in dom, text
    assert f'href="/{quote("88.118.2/ROLL-2026-000123", safe="/")}?noredirect"' in dom


async def test_dom_keeps_injected_markup_as_text(seeded: Node, tmp_path: Path) -> None:
    dom = (
        await chromium(tmp_path / "profile", "--dump-dom", page_url(seeded, "88.118.2/XSS"))
    ).decode()
    assert "<script" not in dom and "<b>" not in dom  # no element was created from a value
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt;" in dom
    assert "<title>88.118.2/XSS · 标识解析</title>" in dom  # the title was not rewritten
    assert 'href="javascript:' not in dom


async def test_screenshot(seeded: Node, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    await chromium(tmp_path / "profile", f"--screenshot={shot}", page_url(seeded, SILK_LOT))
    width, height, rows = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(set(rows)) > HEIGHT // 4, "too few distinct pixel rows: a blank page?"
    bpp = len(rows[0]) // width
    # "Ink": dark pixels (text). A rendered page of fields has plenty; a blank or
    # error-tinted page has next to none.
    ink = sum(1 for row in rows for i in range(0, len(row), bpp) if sum(row[i : i + 3]) < 300)
    assert 0.005 < ink / (width * height) < 0.5, f"dark pixel share {ink / (width * height):.4f}"
    # The heading band at the top of the page (first ~200 px) is not empty either.
    assert any(
        sum(rows[y][i : i + 3]) < 200 for y in range(200) for i in range(0, len(rows[y]), bpp)
    )

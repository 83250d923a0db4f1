"""The console in a real browser: headless Chromium driven over the DevTools protocol
(tests/node/cdp_support.py) against a real node with the demo data.

Covered: logging in, a template form refused with a message at the wrong field and then
saved, a CSV import followed on its progress page to its reject list, and every view
screenshotted into the test's directory. With ``IDNODE_CONSOLE_SCREENSHOTS=DIR`` the
screenshots are also written to DIR; the ones in docs/console/ are made so:

    IDNODE_CONSOLE_SCREENSHOTS=docs/console pytest tests/node/fronts/http/console/test_console_browser.py

Skipped, saying so, where Chromium is not installed (CI installs it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from protocol.handle import normalise
from tests.node.cdp_support import CHROMIUM, INSTALL, Browser
from tests.node.console_support import ENT_A, PLATFORM, ROLES, ROLL_TEMPLATE, roll_fields
from tests.node.http_support import A_HANDLE, A, StartNode, admin_of

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=f"chromium not installed: {INSTALL}")
WIDTH = 1024


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    # Samples every quarter second, so the charts have lines by the time they are seen.
    return await start_http_node(console_sample_interval_s=0.25, **ROLES)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    b = await Browser.start(tmp_path / "profile", width=WIDTH, height=800)
    try:
        yield b
    finally:
        await b.close()


class Shots:
    """Screenshots into the test's directory, and into IDNODE_CONSOLE_SCREENSHOTS."""

    def __init__(self, tmp: Path):
        self.dirs = [tmp / "shots"]
        extra = os.environ.get("IDNODE_CONSOLE_SCREENSHOTS")
        if extra:
            self.dirs.append(Path(extra))

    async def take(self, browser: Browser, name: str) -> None:
        data = b""
        for d in self.dirs:
            data = await browser.screenshot(d / f"{name}.png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == WIDTH  # IHDR width


async def login(browser: Browser, base: str, who: tuple[str, str], lang: str = "zh") -> None:
    await browser.goto(f"{base}/console/login?lang={lang}")
    await browser.fill({"identity": who[0], "secret": who[1]})
    await browser.click("main button[type=submit]")


async def test_enterprise_admin_form_and_import(
    node: Node, browser: Browser, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{node.http_port}"
    shots = Shots(tmp_path)
    await browser.goto(f"{base}/console/login?lang=en")
    await shots.take(browser, "login")
    # A wrong secret first: the form again, with the reason.
    await browser.fill({"identity": ENT_A[0], "secret": "not-the-secret"})
    await browser.click("main button[type=submit]")
    assert "Login failed" in await browser.text()
    await login(browser, base, ENT_A, "en")
    assert await browser.js("location.pathname") == "/console/prefixes"
    assert "88.118.2" in await browser.text() and "88.118.3" not in await browser.text()
    await shots.take(browser, "prefixes")

    await browser.goto(
        f"{base}/console/prefixes/88.118.2?template={ROLL_TEMPLATE}&field=rollNumber&value=P2026000123"
    )
    assert "Results: 1" in await browser.text()  # the search by a template field
    await shots.take(browser, "identifiers")

    # The template form: a width over the template's maximum is refused at that field.
    await browser.goto(f"{base}/console/prefixes/88.118.2/new?template={ROLL_TEMPLATE}")
    fields = await roll_fields(node)
    await browser.fill({"suffix": "ROLL-BROWSER-1", **{f"f.{k}": v for k, v in fields.items()}})
    await browser.fill({"f.widthCm": "900"})
    await browser.click("main button[type=submit]")
    message = await browser.js("document.getElementById('f-widthCm-msg')?.textContent")
    assert message and "400" in message, await browser.text()
    assert await browser.js("document.getElementById('f-widthCm').className") == "bad"
    await browser.js("document.getElementById('f-widthCm').scrollIntoView({block: 'center'})")
    await shots.take(browser, "form-error")
    await browser.fill({"f.widthCm": "150"})
    await browser.click("main button[type=submit]")
    assert await browser.js("location.pathname") == "/console/records/88.118.2/ROLL-BROWSER-1"
    assert "150" in await browser.text()
    await shots.take(browser, "record")

    # CSV import: two good rows, one refused by the template, one in another's prefix.
    keys = list(fields)
    lines = [",".join(["handle", *keys])]
    for handle, width in (
        ("88.118.2/CSV-B1", "150"),
        ("88.118.2/CSV-B2", "900"),
        ("88.118.3/CSV-B3", "150"),
        ("88.118.2/CSV-B4", "150"),
    ):
        cells = [handle, *({**fields, "widthCm": width}[k] for k in keys)]
        lines.append(",".join('"' + c.replace('"', '""') + '"' for c in cells))
    csv_file = tmp_path / "rolls.csv"
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    await browser.goto(f"{base}/console/imports")
    await browser.fill({"template": ROLL_TEMPLATE})
    await browser.attach("input[type=file]", csv_file)
    await browser.click("main button[type=submit]")
    assert (await browser.js("location.pathname")).startswith("/console/imports/console-")
    assert await browser.js("document.querySelector('progress') !== null")

    # The page reloads itself each second while the job runs.
    await browser.until("document.getElementById('state')?.textContent === 'done'")
    assert await browser.js("document.querySelector('progress').value") == 4
    text = await browser.text()
    assert "88.118.2/CSV-B2" in text and "88.118.3/CSV-B3" in text
    assert "88.118.2/CSV-B1" not in text  # loaded, not in the reject list
    await shots.take(browser, "import")
    assert node.writes is not None
    assert await node.writes.registry.get_handle(normalise("88.118.2/CSV-B4")) is not None


async def test_operator_views(node: Node, browser: Browser, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{node.http_port}"
    shots = Shots(tmp_path)
    async with (
        aiohttp.ClientSession() as api,
        api.post(
            f"{base}/api/manage/applications",
            json={"prefix": "88.118.7", "reason": "新织造车间"},
            headers=admin_of(A),
        ) as resp,
    ):
        assert resp.status == 201  # an application waiting in the review queue
    await login(browser, base, PLATFORM, "zh")
    assert await browser.js("location.pathname") == "/console/dashboard"
    for path, name, expect in (
        ("enterprises", "enterprises", "吴江盛泽云绫丝绸织造有限公司"),
        ("reviews", "reviews", "88.118.7"),
        ("keys", "keys", "签名密钥与证书"),
        (f"records/{A_HANDLE}", "record-view", "ROLL-2026-000123"),
    ):
        await browser.goto(f"{base}/console/{path}")
        assert expect in await browser.text(), path
        if name != "record-view":
            await shots.take(browser, name)

    async def charted() -> None:
        while True:
            await browser.goto(f"{base}/console/dashboard")
            if await browser.js("document.querySelectorAll('svg path').length") > 0:
                return

    await asyncio.wait_for(charted(), 30)
    await shots.take(browser, "dashboard")
    await browser.goto(f"{base}/console/dashboard?lang=en")
    assert "Requests per second" in await browser.text()

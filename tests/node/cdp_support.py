"""A small Chrome DevTools Protocol driver for headless Chromium: enough to load pages,
fill and submit forms, attach a file to a file input and take screenshots.

Chromium runs as an asyncio subprocess with ``--remote-debugging-port=0``; the port it
chose is read from ``DevToolsActivePort`` in its profile, and the page target is driven
over aiohttp's WebSocket client. Everything is asynchronous, so the node under test
keeps serving on the same loop (a blocking client such as Selenium would stall it).

Chromium comes from Debian's ``chromium`` package (no chromium-driver needed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp

INSTALL = "apt-get update && apt-get install -y chromium fonts-noto-cjk"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_TIMEOUT_S = 60.0  # a cold first start on a busy CI box
STEP_TIMEOUT_S = 30.0

# What every headless run here needs: no sandbox (containers run as root), no GPU, no
# network of Chromium's own, and /tmp rather than a 64 MB /dev/shm.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class Browser:
    def __init__(self, proc: asyncio.subprocess.Process, http: aiohttp.ClientSession):
        self.proc = proc
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, profile: Path, *, width: int = 1024, height: int = 768) -> Browser:
        assert CHROMIUM is not None, f"chromium not installed: {INSTALL}"
        profile.mkdir(parents=True, exist_ok=True)
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *HEADLESS,
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        browser = cls(proc, aiohttp.ClientSession())
        try:
            await asyncio.wait_for(
                browser._connect(profile / "DevToolsActivePort"), START_TIMEOUT_S
            )
            await browser.call("Page.enable")
            await browser.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _connect(self, port_file: Path) -> None:
        # Chromium writes the file once it listens; it is another process, so look again
        # until it is there (bounded by the caller's timeout).
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.returncode is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._calls.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                for fut in self._events.pop(data.get("method", ""), []):
                    if not fut.done():
                        fut.set_result(data.get("params", {}))

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.ws is not None
        call_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = fut
        await self.ws.send_str(
            json.dumps({"id": call_id, "method": method, "params": params or {}})
        )
        return await asyncio.wait_for(fut, STEP_TIMEOUT_S)

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(event, []).append(fut)
        return fut

    async def goto(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        await self.call("Page.navigate", {"url": url})
        await asyncio.wait_for(loaded, STEP_TIMEOUT_S)

    async def js(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def fill(self, values: dict[str, str]) -> None:
        """Set form fields by name, as a person typing them would."""
        for name, value in values.items():
            found = await self.js(
                f"(() => {{ const el = document.querySelector({json.dumps(f'[name={json.dumps(name)}]')});"
                f" if (!el) return false; el.value = {json.dumps(value)}; return true; }})()"
            )
            assert found, f"no field named {name}"

    async def click(self, selector: str) -> None:
        """Click and wait for the page it leads to."""
        loaded = self.expect("Page.loadEventFired")
        clicked = await self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return false; el.click(); return true; })()"
        )
        assert clicked, f"nothing matches {selector}"
        await asyncio.wait_for(loaded, STEP_TIMEOUT_S)

    async def attach(self, selector: str, path: Path) -> None:
        doc = await self.call("DOM.getDocument")
        node = await self.call(
            "DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector}
        )
        assert node["nodeId"], f"nothing matches {selector}"
        await self.call("DOM.setFileInputFiles", {"nodeId": node["nodeId"], "files": [str(path)]})

    async def until(self, expression: str, timeout_s: float = 60.0) -> None:
        """Until ``expression`` is true in the page, looking again after each page load
        (a page that reloads itself): the next load is awaited from before each look,
        so a reload between the two is never missed."""

        async def spin() -> None:
            while True:
                loaded = self.expect("Page.loadEventFired")
                try:
                    if await self.js(expression):
                        return
                except RuntimeError:  # evaluated while the page was being replaced
                    pass
                await loaded

        await asyncio.wait_for(spin(), timeout_s)

    async def text(self) -> str:
        return str(await self.js("document.body.innerText"))

    async def html(self) -> str:
        return str(await self.js("document.documentElement.outerHTML"))

    async def screenshot(self, path: Path) -> bytes:
        shot = await self.call("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("Browser.close"), 5)
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.http.close()

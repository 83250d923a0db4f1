"""The web console on ``idnode serve --workers 2``: a real supervisor, two real worker
processes, the embedded PostgreSQL. Every request goes on a new TCP connection, so the
kernel may hand it to either worker; each worker's own metrics (on admin port + i) show
that both answered. A login made through one worker holds on the other, a logout ends
it on both, and an import's progress and rejects read the same from either."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from node.demo.dataset import SILK_MILL, demo_dataset
from tests.node.process_support import READY, NodeProcess
from tests.node.serving.workers_support import workers_up

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]
ENT_A = ("300:88.118.2/ADMIN", SILK_MILL.admin_secret)
ROLL = "88.118.2/ROLL-2026-000123"  # a demo record: its fields are valid roll fields
ROLL_TEMPLATE = "88.118/TPL.TEXTILE.ROLL.V1"
FRESH = 30  # requests, each on its own connection
_CONSOLE = re.compile(r'^idnode_requests_total\{[^}]*op="console"[^}]*\} (\S+)$', re.MULTILINE)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Served:
    node: NodeProcess
    base: str  # the HTTP port every worker shares
    admins: list[int]  # each worker's own admin port, by index


@pytest.fixture
async def served(idnode_data_dir: Path) -> AsyncIterator[Served]:
    node = NodeProcess(
        ["--data-dir", str(idnode_data_dir), *FREE, "--demo", "--workers", "2"]
    ).start()
    try:
        ready = next(line for line in node.lines if READY.search(line))
        http = re.search(r"http=(\d+)", ready)
        assert http is not None, node.output
        up = sorted(workers_up(node).values())
        assert [index for index, _ in up] == [0, 1], node.output
        yield Served(node, f"http://127.0.0.1:{http[1]}", [admin for _, admin in up])
    finally:
        node.stop()
    assert "Traceback" not in node.output


class Browser:
    """A cookie jar, and a new TCP connection for every request (force_close)."""

    def __init__(self, served: Served):
        self.served = served
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # keeps a 127.0.0.1 cookie
        )

    async def close(self) -> None:
        await self.session.close()

    async def get(self, path: str) -> tuple[int, str, str]:
        """(status, Location, body)."""
        url = self.served.base + path
        async with self.session.get(url, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location", ""), await resp.text()

    async def post(self, path: str, data: object) -> tuple[int, str, str]:
        url = self.served.base + path
        headers = {"Origin": self.served.base}
        async with self.session.post(url, data=data, headers=headers, allow_redirects=False) as r:
            return r.status, r.headers.get("Location", ""), await r.text()

    async def console_counts(self) -> list[float]:
        """Console requests each worker has answered, from its own metrics."""
        counts = []
        for admin in self.served.admins:
            async with self.session.get(f"http://127.0.0.1:{admin}/metrics") as resp:
                assert resp.status == 200
                counts.append(sum(float(n) for n in _CONSOLE.findall(await resp.text())))
        return counts

    async def spread(self, path: str) -> list[tuple[int, str, str]]:
        """``FRESH`` GETs of ``path``; asserts that both workers answered some."""
        before = await self.console_counts()
        replies = [await self.get(path) for _ in range(FRESH)]
        after = await self.console_counts()
        answered = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(answered) == FRESH and all(n > 0 for n in answered), answered
        return replies


@pytest.fixture
async def browser(served: Served) -> AsyncIterator[Browser]:
    b = Browser(served)
    try:
        yield b
    finally:
        await b.close()


async def login(browser: Browser) -> None:
    status, location, text = await browser.post(
        "/console/login", {"identity": ENT_A[0], "secret": ENT_A[1]}
    )
    assert (status, location) == (303, "/console/"), text


async def test_a_session_holds_on_every_worker_and_ends_on_all(browser: Browser) -> None:
    await login(browser)
    for status, _, text in await browser.spread("/console/prefixes?lang=en"):
        assert status == 200 and ENT_A[0] in text  # logged in, whichever worker
    status, _, text = await browser.get("/console/prefixes")
    token = _CSRF.search(text)
    assert token is not None
    status, location, _ = await browser.post("/console/logout", {"csrf": token[1]})
    assert status == 303 and location.startswith("/console/login")
    for status, location, _ in await browser.spread("/console/prefixes"):
        assert status == 303 and location.startswith("/console/login?")


def roll_fields() -> dict[str, str]:
    """The demo roll's template fields (index 2000 and up): a valid set of values."""
    (record,) = [h for h in demo_dataset().handles if h.handle == ROLL]
    return {v["type"]: v["data"]["value"] for v in record.values if int(v["index"]) >= 2000}


async def test_an_import_reads_the_same_from_every_worker(browser: Browser) -> None:
    await login(browser)
    fields = roll_fields()
    keys = list(fields)

    def row(handle: str, **changed: str) -> str:
        cells = [handle, *({**fields, **changed}[k] for k in keys)]
        return ",".join('"' + c.replace('"', '""') + '"' for c in cells)

    csv_text = "\n".join(
        [
            ",".join(["handle", *keys]),
            row("88.118.2/WORKERS-1"),
            row("88.118.2/WORKERS-2", widthCm="900"),  # over the field's maximum
            row("88.118.3/WORKERS-3"),  # another enterprise's prefix
            row("88.118.2/WORKERS-4"),
        ]
    )
    status, _, text = await browser.get("/console/imports")
    token = _CSRF.search(text)
    assert status == 200 and token is not None
    form = aiohttp.FormData()
    form.add_field("csrf", token[1])
    form.add_field("template", ROLL_TEMPLATE)
    form.add_field("file", csv_text.encode(), filename="rolls.csv", content_type="text/csv")
    status, job_path, text = await browser.post("/console/imports", form)
    assert status == 303 and job_path.startswith("/console/imports/"), text

    async def finished() -> None:
        while True:  # each look is a request, on a fresh connection: the job runs meanwhile
            status, _, text = await browser.get(job_path + "?lang=en")
            assert status == 200, text
            if "<b id=state>done</b>" in text:
                return

    await asyncio.wait_for(finished(), 60)
    for status, _, text in await browser.spread(job_path + "?lang=en"):
        assert status == 200 and "<b id=state>done</b>" in text
        assert '<progress id="bar" max="4" value="4">' in text
        assert "88.118.2/WORKERS-2" in text and "88.118.3/WORKERS-3" in text
        assert "not an admin" in text
    for status, _, text in await browser.spread("/console/imports?lang=en"):
        assert status == 200 and job_path in text and "rolls.csv" in text

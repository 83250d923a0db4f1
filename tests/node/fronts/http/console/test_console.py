"""The web console over real HTTP against a real node with the demo data: login (right,
wrong, rate-limited), the cookie's attributes and its reach, CSRF refusals, every view in
both languages, the template form, a CSV import, enterprise isolation and escaping."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import aiohttp
import pytest

from node.app import Node
from node.fronts.http.console.importjob import STALE_S
from node.writes.onboarding import admin_values
from protocol.handle import normalise, parse_handle
from registry.console import ConsoleStore
from tests.node.console_support import (
    ENT_A,
    ENT_B,
    PLATFORM,
    ROLES,
    ROLL_TEMPLATE,
    ConsoleClient,
    roll_fields,
)
from tests.node.http_support import (
    A_HANDLE,
    B_HANDLE,
    A,
    StartNode,
    SteppedClock,
    admin_of,
    admin_value,
)


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_http_node(**ROLES)


@pytest.fixture
async def browser(node: Node) -> AsyncIterator[ConsoleClient]:
    client = ConsoleClient(node)
    try:
        yield client
    finally:
        await client.close()


async def test_login_page_speaks_both_languages(browser: ConsoleClient) -> None:
    zh = await browser.get("/console/login")
    assert zh.status == 200 and 'lang="zh-CN"' in zh.text and "登录" in zh.text
    en = await browser.get("/console/login?lang=en")
    assert 'lang="en"' in en.text and "Log in" in en.text
    by_header = await browser.get("/console/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Log in" in by_header.text
    assert "script-src" not in zh.headers["Content-Security-Policy"]  # default-src 'none'
    assert "default-src 'none'" in zh.headers["Content-Security-Policy"]


async def test_login_sets_a_console_only_cookie(browser: ConsoleClient) -> None:
    page = await browser.login(PLATFORM)
    assert page.headers["Location"] == "/console/"
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback, no TLS proxy said so
    home = await browser.get("/console/")
    assert (home.status, home.headers["Location"]) == (303, "/console/dashboard")
    dash = await browser.get("/console/dashboard")
    assert dash.status == 200 and "300:88.118/ADMIN" in dash.text


async def test_cookie_is_secure_behind_a_trusted_tls_proxy(browser: ConsoleClient) -> None:
    page = await browser.post(
        "/console/login",
        {"identity": ENT_A[0], "secret": ENT_A[1]},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert page.status == 303 and "Secure" in page.headers["Set-Cookie"]


async def test_wrong_secret_is_refused_without_a_session(browser: ConsoleClient) -> None:
    page = await browser.post("/console/login", {"identity": ENT_A[0], "secret": "wrong"})
    assert page.status == 401 and "Set-Cookie" not in page.headers
    assert "登录失败" in page.text
    assert (await browser.get("/console/prefixes")).status == 303  # to the login page


async def test_identity_without_a_role_gets_no_session(node: Node, browser: ConsoleClient) -> None:
    assert node.writes is not None
    handle = parse_handle("88.118/NOBODY")  # authenticates, administers nothing
    await node.writes.put(
        handle,
        admin_values(handle.text, "nobody-secret"),
        actor="test",
        now=node.now(),
        source="test",
    )
    page = await browser.post(
        "/console/login", {"identity": "300:88.118/NOBODY", "secret": "nobody-secret"}
    )
    assert page.status == 403 and "Set-Cookie" not in page.headers
    # An enterprise admin logs in, but the operator's pages are not theirs.
    await browser.login(ENT_A)
    assert (await browser.get("/console/dashboard")).status == 403


async def test_login_failures_meet_the_shared_limit(start_http_node: StartNode) -> None:
    node = await start_http_node(http_auth_max_failures=3, **ROLES)
    client = ConsoleClient(node)
    try:
        for _ in range(3):
            page = await client.post("/console/login", {"identity": ENT_A[0], "secret": "guess"})
            assert page.status == 401
        page = await client.post("/console/login", {"identity": ENT_A[0], "secret": ENT_A[1]})
        assert page.status == 429 and "Retry-After" in page.headers
        assert "Set-Cookie" not in page.headers
        # The same limiter as the API's Basic: this address is refused there too.
        url = f"{client.base}/api/handles?prefix=88.118.2"
        async with client.session.get(url, headers=admin_of(A)) as resp:
            assert resp.status == 429
    finally:
        await client.close()


async def test_post_from_elsewhere_is_refused(browser: ConsoleClient) -> None:
    creds = {"identity": ENT_A[0], "secret": ENT_A[1]}
    assert (await browser.post("/console/login", creds, origin=None)).status == 403
    assert (
        await browser.post("/console/login", creds, origin="https://evil.example")
    ).status == 403
    await browser.login(ENT_A)
    token = await browser.csrf()
    refused = await browser.post("/console/logout", {"csrf": "x" * 43})
    assert refused.status == 403 and "请求被拒绝" in refused.text
    cross = await browser.post("/console/logout", {"csrf": token}, origin="http://evil.example")
    assert cross.status == 403
    assert (await browser.get("/console/prefixes")).status == 200  # still logged in
    out = await browser.post("/console/logout", {"csrf": token})
    assert out.status == 303 and "Max-Age=0" in out.headers["Set-Cookie"]
    assert (await browser.get("/console/prefixes")).status == 303


async def test_api_never_honours_the_console_cookie(node: Node, browser: ConsoleClient) -> None:
    login = await browser.login(ENT_A)
    sid = re.search(r"idnode_console=([^;]+)", login.headers["Set-Cookie"])
    assert sid
    cookie = {"Cookie": f"idnode_console={sid.group(1)}"}
    async with aiohttp.ClientSession() as plain:
        base = browser.base
        async with plain.get(f"{base}/api/handles?prefix=88.118.2", headers=cookie) as resp:
            assert resp.status == 401
        async with plain.put(
            f"{base}/api/handles/88.118.2/BY-COOKIE", json=[admin_value("88.118.2")], headers=cookie
        ) as resp:
            assert resp.status == 401
        async with plain.get(f"{base}/console/prefixes", headers=cookie) as resp:
            assert resp.status == 200  # the same cookie is a session under /console/


@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_every_view_answers(browser: ConsoleClient, lang: str) -> None:
    await browser.login(PLATFORM)
    html_lang = 'lang="en"' if lang == "en" else 'lang="zh-CN"'
    for path in (
        "/console/dashboard",
        "/console/enterprises",
        "/console/reviews",
        "/console/keys",
        "/console/prefixes",
        "/console/prefixes/88.118.2",
        f"/console/prefixes/88.118.2?template={ROLL_TEMPLATE}&field=rollNumber&value=x",
        f"/console/records/{A_HANDLE}",
        f"/console/records/{A_HANDLE}/edit",
        f"/console/prefixes/88.118.2/new?template={ROLL_TEMPLATE}",
        "/console/imports",
    ):
        page = await browser.get(f"{path}{'&' if '?' in path else '?'}lang={lang}")
        assert page.status == 200, (path, page.text[:500])
        assert html_lang in page.text, path
        assert page.headers["Cache-Control"] == "no-store"
    assert (await browser.get("/console/nothing-here")).status == 404  # not a record page


async def test_enterprise_sees_only_its_own(node: Node, browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    listed = await browser.get("/console/prefixes")
    assert "88.118.2" in listed.text and "88.118.3" not in listed.text
    assert (await browser.get("/console/dashboard")).status == 403
    assert (await browser.get("/console/prefixes/88.118.3")).status == 403
    assert (await browser.get(f"/console/records/{B_HANDLE}")).status == 403
    assert (await browser.get(f"/console/records/{B_HANDLE}/edit")).status == 403
    token = await browser.csrf()
    fields = {f"f.{k}": v for k, v in (await roll_fields(node)).items()}
    into_b = await browser.post(
        "/console/prefixes/88.118.3/new",
        {"csrf": token, "template": ROLL_TEMPLATE, "suffix": "INTRUDER", **fields},
    )
    assert into_b.status == 403
    assert node.writes is not None
    assert await node.writes.registry.get_handle(normalise("88.118.3/INTRUDER")) is None
    own = await browser.get(f"/console/records/{A_HANDLE}")
    assert own.status == 200 and "ROLL-2026-000123" in own.text


async def test_form_shows_field_problems_then_saves(node: Node, browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    token = await browser.csrf()
    fields = {f"f.{k}": v for k, v in (await roll_fields(node)).items()}
    form = {"csrf": token, "template": ROLL_TEMPLATE, "suffix": "ROLL-CONSOLE-1", **fields}
    bad = await browser.post(
        "/console/prefixes/88.118.2/new?lang=en", {**form, "f.widthCm": "900", "f.colour": ""}
    )
    assert bad.status == 422
    assert 'id="f-widthCm" name="f.widthCm" value="900" class="bad"' in bad.text
    assert re.search(r'id="f-widthCm-msg">[^<]*400', bad.text), bad.text
    assert re.search(r'id="f-colour-msg">required, missing', bad.text)
    assert node.writes is not None
    assert await node.writes.registry.get_handle(normalise("88.118.2/ROLL-CONSOLE-1")) is None
    good = await browser.post("/console/prefixes/88.118.2/new", form)
    assert (good.status, good.headers["Location"]) == (
        303,
        "/console/records/88.118.2/ROLL-CONSOLE-1",
    )
    record = await node.writes.registry.get_handle(normalise("88.118.2/ROLL-CONSOLE-1"))
    assert record is not None
    # Edit: change one field, empty an optional one (it goes), the rest kept.
    edit = {**form, "f.widthCm": "152", "f.dyeLot": ""}
    edit.pop("suffix")
    saved = await browser.post("/console/records/88.118.2/ROLL-CONSOLE-1/edit", edit)
    assert saved.status == 303, saved.text
    record = await node.writes.registry.get_handle(normalise("88.118.2/ROLL-CONSOLE-1"))
    assert record is not None
    by_type = {v.type: v.data.decode() for v in record.values}
    assert by_type["widthCm"] == "152" and "dyeLot" not in by_type


async def test_values_are_shown_as_text(node: Node, browser: ConsoleClient) -> None:
    evil = "<script>document.title='pwned'</script><b>bold?</b>"
    url = f"{browser.base}/api/handles/88.118.2/XSS"
    values = [admin_value("88.118.2"), {"index": 3, "type": "NOTE", "data": evil}]
    async with (
        aiohttp.ClientSession() as plain,
        plain.put(url, json=values, headers=admin_of(A)) as r,
    ):
        assert r.status in (200, 201)
    typed = await browser.post("/console/login", {"identity": evil, "secret": "x"})
    assert "<script>" not in typed.text and "&lt;script&gt;" in typed.text
    await browser.login(ENT_A)
    page = await browser.get("/console/records/88.118.2/XSS")
    assert page.status == 200
    assert "<script" not in page.text and "<b>bold" not in page.text, page.text
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page.text
    search = await browser.get(
        f"/console/prefixes/88.118.2?template={ROLL_TEMPLATE}&field=rollNumber&value=" + quote(evil)
    )
    assert search.status == 200 and "<script>" not in search.text


async def test_csv_import_loads_and_lists_rejects(node: Node, browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    token = await browser.csrf()
    fields = await roll_fields(node)
    keys = list(fields)
    # The header names two fields by their Chinese name, the rest by key.
    header = [
        "handle",
        *("门幅(cm)" if k == "widthCm" else "颜色" if k == "colour" else k for k in keys),
    ]

    def row(handle: str, **changed: str) -> str:
        cells = [handle, *({**fields, **changed}[k] for k in keys)]
        return ",".join('"' + c.replace('"', '""') + '"' for c in cells)

    csv_text = "\n".join(
        [
            ",".join(header),
            row("88.118.2/CSV-1"),
            row("88.118.2/CSV-2", widthCm="900"),
            row("88.118.3/CSV-3"),  # another enterprise's prefix
            row("88.118.2/CSV-4"),
        ]
    )
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    form.add_field("template", ROLL_TEMPLATE)
    form.add_field("file", csv_text.encode(), filename="rolls.csv", content_type="text/csv")
    started = await browser.post("/console/imports", form)
    assert started.status == 303, started.text
    job_path = started.headers["Location"]
    pages: list[str] = []

    async def finished() -> bool:
        page = await browser.get(job_path + "?lang=en")
        pages.append(page.text)
        return "<b id=state>done</b>" in page.text

    async def poll() -> None:
        while not await finished():  # each look is a request: the job runs meanwhile
            pass

    await asyncio.wait_for(poll(), 30)
    last = pages[-1]
    assert '<progress id="bar" max="4" value="4">' in last
    assert "88.118.2/CSV-2" in last and "400" in last  # the field problem, with its line
    assert "88.118.3/CSV-3" in last and "not an admin" in last
    assert node.writes is not None
    registry = node.writes.registry
    for name, there in (("CSV-1", True), ("CSV-4", True), ("CSV-2", False)):
        assert (await registry.get_handle(normalise(f"88.118.2/{name}")) is not None) is there
    assert await registry.get_handle(normalise("88.118.3/CSV-3")) is None
    # Another enterprise's admin does not see the job.
    other = ConsoleClient(node)
    try:
        await other.login(ENT_B)
        assert (await other.get(job_path)).status == 404
        assert job_path not in (await other.get("/console/imports")).text
    finally:
        await other.close()
    assert job_path in (await browser.get("/console/imports")).text


async def test_a_failed_import_says_why(browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    form = aiohttp.FormData()
    form.add_field("csrf", await browser.csrf())
    form.add_field("template", ROLL_TEMPLATE)
    form.add_field("file", b'colour\n"red"\n', filename="x.csv", content_type="text/csv")
    started = await browser.post("/console/imports", form)
    assert started.status == 303, started.text

    async def failed() -> str:
        while True:  # each look is a request: the job runs meanwhile
            page = await browser.get(started.headers["Location"] + "?lang=en")
            if "<b id=state>done</b>" in page.text:
                raise AssertionError(page.text)
            if "<b id=state>failed</b>" in page.text:
                return page.text

    text = await asyncio.wait_for(failed(), 30)
    assert "handle" in text and 'class="notice err"' in text


async def test_an_import_whose_worker_died_says_so_and_stops_reloading(
    start_http_node: StartNode,
) -> None:
    """A worker killed mid-import leaves its row "running": once no worker has touched it
    for STALE_S, the page says the import stopped and how to finish it, and no longer
    reloads itself for ever."""
    clock = SteppedClock(time.time())
    node = await start_http_node(clock=clock, **ROLES)
    client = ConsoleClient(node)
    try:
        await client.login(ENT_A)
        assert node.db is not None
        store = ConsoleStore(node.db.registry)
        job = "console-dead-worker"  # as a worker left it: started, then killed
        await store.start_import(
            job,
            actor=ENT_A[0],
            source="console:rolls.csv",
            template=ROLL_TEMPLATE,
            total_rows=10,
            now=datetime.fromtimestamp(clock(), UTC),
        )
        page = await client.get(f"/console/imports/{job}?lang=en")
        assert "<b id=state>running</b>" in page.text and 'http-equiv="refresh"' in page.text
        clock.advance(STALE_S - 1)
        page = await client.get(f"/console/imports/{job}?lang=en")
        assert "<b id=state>running</b>" in page.text
        clock.advance(2)  # no heartbeat came: no worker runs it
        page = await client.get(f"/console/imports/{job}?lang=en")
        assert "<b id=state>interrupted</b>" in page.text, page.text
        assert 'http-equiv="refresh"' not in page.text
        assert "Upload the same file again" in page.text
        assert "interrupted" in (await client.get("/console/imports?lang=en")).text
    finally:
        await client.close()


async def test_upload_without_token_is_refused(browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    form = aiohttp.FormData()
    form.add_field("template", ROLL_TEMPLATE)
    form.add_field("file", b"handle\n", filename="x.csv", content_type="text/csv")
    assert (await browser.post("/console/imports", form)).status == 403


async def test_upload_over_the_limit_is_refused(start_http_node: StartNode) -> None:
    node = await start_http_node(console_import_max_bytes=1000, **ROLES)
    client = ConsoleClient(node)
    try:
        await client.login(ENT_A)
        form = aiohttp.FormData()
        form.add_field("csrf", await client.csrf())
        form.add_field("template", ROLL_TEMPLATE)
        form.add_field("file", b"handle\n" + b"x" * 2000, filename="x.csv", content_type="text/csv")
        assert (await client.post("/console/imports", form)).status == 413
    finally:
        await client.close()


async def test_session_ends_when_idle(start_http_node: StartNode) -> None:
    clock = SteppedClock(time.time())  # the node's wall clock: session rows are stamped with it
    node = await start_http_node(clock=clock, **ROLES)
    browser = ConsoleClient(node)
    try:
        await browser.login(ENT_A)
        assert (await browser.get("/console/prefixes")).status == 200
        clock.advance(node.settings.console_session_idle_timeout_s + 1)
        assert (await browser.get("/console/prefixes")).status == 303
    finally:
        await browser.close()


async def test_registry_down_is_a_503_page(node: Node, browser: ConsoleClient) -> None:
    await browser.login(ENT_A)
    assert node.writes is not None
    pool = node.writes.registry.pool
    await pool.close()  # every session lookup now fails as an outage does
    # Even a page that reads nothing else: the session itself is in the registry.
    for path in ("/console/prefixes?lang=en", "/console/login?lang=en"):
        page = await browser.get(path)
        assert page.status == 503, (path, page.status)
        assert "The registry is unavailable" in page.text and "Traceback" not in page.text
    assert (await browser.post("/console/logout", {})).status == 503


async def test_auditor_reviews_in_the_queue(start_http_node: StartNode) -> None:
    auditor = ("300:88.118/AUDITOR", "auditor-secret-for-tests")
    node = await start_http_node(auditors=auditor[0], **ROLES)
    assert node.writes is not None
    handle = parse_handle("88.118/AUDITOR")
    await node.writes.put(
        handle, admin_values(handle.text, auditor[1]), actor="test", now=node.now(), source="test"
    )
    applied = ConsoleClient(node)
    async with applied.session.post(
        f"{applied.base}/api/manage/applications", json={"prefix": "88.118.7"}, headers=admin_of(A)
    ) as resp:
        assert resp.status == 201
    await applied.close()
    ent, aud = ConsoleClient(node), ConsoleClient(node)
    try:
        await ent.login(ENT_A)
        token = await ent.csrf()
        refused = await ent.post("/console/reviews/88.118.7", {"csrf": token, "status": "5"})
        assert refused.status == 403
        await aud.login(auditor)
        queue = await aud.get("/console/reviews?lang=en")
        assert queue.status == 200 and "88.118.7" in queue.text and "awaiting review" in queue.text
        token = queue.csrf
        step = await aud.post("/console/reviews/88.118.7?lang=en", {"csrf": token, "status": "5"})
        assert step.status == 200 and "Review recorded: 88.118.7" in step.text
        no_reason = await aud.post("/console/reviews/88.118.7", {"csrf": token, "status": "3"})
        assert 'class="notice err"' in no_reason.text  # rejecting needs a reason
        enabled = await aud.post("/console/reviews/88.118.7", {"csrf": token, "status": "1"})
        assert "300:88.118.7/ADMIN" in enabled.text  # the new admin's secret, shown this once
        again = await aud.get("/console/reviews")
        assert "300:88.118.7/ADMIN" not in again.text
        prefix = await node.writes.registry.get_prefix("88.118.7")
        assert prefix is not None and int(prefix.status) == 1
    finally:
        await ent.close()
        await aud.close()


async def test_login_returns_to_the_page_asked_and_nowhere_else(browser: ConsoleClient) -> None:
    asked = await browser.get("/console/prefixes/88.118.2?page=0")
    assert asked.status == 303
    assert (
        asked.headers["Location"]
        == "/console/login?next=%2Fconsole%2Fprefixes%2F88.118.2%3Fpage%3D0"
    )
    creds = {"identity": ENT_A[0], "secret": ENT_A[1]}
    back = await browser.post(
        "/console/login", {**creds, "next": "/console/prefixes/88.118.2?page=0"}
    )
    assert back.headers["Location"] == "/console/prefixes/88.118.2?page=0"
    for elsewhere in ("https://evil.example/", "//evil.example/console/", "/api/handles"):
        page = await browser.post("/console/login", {**creds, "next": elsewhere})
        assert page.headers["Location"] == "/console/", elsewhere


async def test_two_nodes_on_one_registry_share_sessions_and_imports(
    node: Node, start_http_node: StartNode
) -> None:
    """Behind one address, a browser's requests reach either node: the login, the
    language, an import's page and the logout are the registry's, not a node's."""
    other = await start_http_node(**ROLES)
    one, two = ConsoleClient(node), ConsoleClient(other)
    await two.close()
    two.session = one.session  # one browser: one cookie jar (cookies ignore the port)
    try:
        await one.login(ENT_A)
        page = await two.get("/console/prefixes?lang=en")
        assert page.status == 200 and ENT_A[0] in page.text and 'lang="en"' in page.text
        assert 'lang="en"' in (await one.get("/console/prefixes")).text  # kept in the row
        form = aiohttp.FormData()
        form.add_field("csrf", await two.csrf())
        form.add_field("template", ROLL_TEMPLATE)
        form.add_field("file", b"handle\n88.118.3/X\n", filename="y.csv", content_type="text/csv")
        started = await two.post("/console/imports", form)
        assert started.status == 303, started.text
        job = await one.get(started.headers["Location"])
        assert job.status == 200 and "y.csv" in job.text
        assert (await two.post("/console/logout", {"csrf": page.csrf})).status == 303
        assert (await one.get("/console/prefixes")).status == 303
    finally:
        await one.close()

"""``GET /{handle}`` (the browser face, node.fronts.http.page.routes) over real HTTP against a real
node on the demo data: redirects, the HTML page, JSON by Accept, HS_ALIAS following
and its bounds, error pages, encodings, public-only values, escaping, HEAD."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from node.app import Node
from node.demo.dataset import SILK_LOT, TRACE_SITE
from node.fronts.http.page.routes import MAX_ALIAS_HOPS, wants_json
from protocol.handle import normalise, parse_handle
from protocol.jsonvalues import values_from_json
from tests.node.http_support import A_HANDLE, A, Api, admin_of, admin_value, url_value

JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
GS1_LOT = "88.118.3/01/06901234567892/10/LOT2026A"


class ProxyApi(Api):
    """The shared client, but redirects are answers to check, not to follow."""

    follow_redirects = False
    checks_openapi = False  # /{handle} is the browser page, not part of the API document


@pytest.fixture
async def api(http_node: Node) -> AsyncIterator[ProxyApi]:
    async with aiohttp.ClientSession() as session:
        yield ProxyApi(session, f"http://127.0.0.1:{http_node.http_port}")


def path(handle: str, query: str = "") -> str:
    return "/" + quote(handle, safe="/") + (f"?{query}" if query else "")


def text_value(index: int, type_: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"index": index, "type": type_, "data": {"format": "string", "value": text}, **extra}


def alias(target: str, index: int = 1) -> list[dict[str, Any]]:
    return [text_value(index, "HS_ALIAS", target), admin_value("88.118.2")]


async def put(api: Api, handle: str, values: list[dict[str, Any]]) -> None:
    r = await api.put("/api/handles/" + quote(handle, safe="/"), values, headers=admin_of(A))
    assert r.status in (200, 201), r.text


class Rows(HTMLParser):
    """The page's value rows as {key text: value text}, plus every href and script tag."""

    def __init__(self, page: str):
        super().__init__()
        self.rows: dict[str, str] = {}
        self.hrefs: list[tuple[str, str]] = []  # (href, rel)
        self.scripts = 0
        self._cell: str | None = None
        self._depth = 0
        self._key = self._text = ""
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "a":
            self.hrefs.append((a.get("href") or "", a.get("rel") or ""))
        if tag == "div" and self._cell is None and a.get("class") in ("k", "v"):
            self._cell, self._depth, self._text = a["class"], 0, ""
        elif tag == "div" and self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag != "div" or self._cell is None:
            return
        if self._depth:
            self._depth -= 1
            return
        if self._cell == "k":
            self._key = self._text
        else:
            self.rows.setdefault(self._key, self._text)  # the first row of a key
        self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text += data


# -- redirect, page, JSON ----------------------------------------------------------------


async def test_redirects_to_the_lowest_index_url(api: Api) -> None:
    r = await api.get(path(A_HANDLE), headers=BROWSER)
    assert r.status == 302
    assert r.headers["Location"] == TRACE_SITE + A_HANDLE
    assert r.headers["Vary"] == "Accept" and r.headers["Cache-Control"] == "public, max-age=86400"
    await put(
        api,
        "88.118.2/TWO-URLS",
        [
            url_value(7, "https://example.com/seven"),
            url_value(3, "https://example.com/三"),
            text_value(2, "URL.ALT", "https://example.com/alt"),
            admin_value("88.118.2"),
        ],
    )
    r = await api.get("/88.118.2/TWO-URLS")
    assert (r.status, r.headers["Location"]) == (302, "https://example.com/%E4%B8%89")
    r = await api.get("/88.118.2/TWO-URLS?noredirect=false")  # an explicit false still redirects
    assert r.status == 302


@pytest.mark.parametrize(
    "query", ["noredirect", "noredirect=", "noredirect=true", "noredirect=YES"]
)
async def test_noredirect_page_labels_template_fields(api: Api, query: str) -> None:
    r = await api.get(path(SILK_LOT, query), headers=BROWSER)
    assert r.status == 200, r.text
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in r.text
    assert f"<h1>{SILK_LOT}</h1>" in r.text and "染色缸号" in r.text  # the template's name
    rows = Rows(r.text).rows
    assert rows["缸号dye lot"].startswith("缸号-20260315-07#2000 · dyeLot · TTL 86400 s (1 d) · ")
    assert rows["颜色colour"].startswith("藏青#") and rows["色号colour number"].startswith(
        "QY-N1907"
    )
    assert rows["染色工艺dyeing process"].startswith("绳状溢流染色 95℃")
    # business fields come first, then the other values under their readable names
    fields, others = r.text.index('id="fields"'), r.text.index('id="values"')
    assert fields < others < r.text.index("上级标识") and r.text.index("藏青") < others
    assert rows["链接URL"].startswith(TRACE_SITE)
    assert rows["管理员administrator"].startswith(
        "handle88.118.5/ADMINindex300permissions111111111111"
    )
    links = dict(Rows(r.text).hrefs)
    assert links[TRACE_SITE + quote(SILK_LOT, safe="/")] == "noopener"  # the URL value
    assert "/88.118.2/ROLL-2026-000123?noredirect" in links  # PARENT: a link to its page
    assert "/88.118/TPL.TEXTILE.DYELOT.V1?noredirect" in links  # the template record
    cert = next(h for h in links if h.startswith("https://example.com/reports/"))
    assert links[cert] == "noopener"  # a business field holding a URL is a link too
    assert "Signature valid (signed by 400:0.NA/88.118, ES256)" in r.text, (
        r.text
    )  # demo records are signed
    assert r.headers["Cache-Control"] == "public, max-age=86400"


async def test_page_without_url_value_and_structured_data(api: Api) -> None:
    await put(
        api,
        "88.118.2/NO-URL",
        [
            text_value(1, "EMAIL", "qa@example.com"),
            admin_value("88.118.2"),
            {"index": 2, "type": "BLOB", "data": {"format": "base64", "value": "AAEC/w=="}},
            {
                "index": 200,
                "type": "HS_VLIST",
                "data": {"format": "vlist", "value": [{"handle": "88.118.2/ADMIN", "index": 300}]},
            },
            text_value(3, "NOTE", "line one\nline two", ttl="2030-01-01T00:00:00Z"),
        ],
    )
    r = await api.get("/88.118.2/NO-URL")  # nothing to redirect to: the page
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    rows = Rows(r.text).rows
    assert rows["BLOB"].startswith("AAEC/w==base64, 4 bytes#2")
    assert rows["值引用列表value list"].startswith("handle88.118.2/ADMINindex300")
    assert rows["NOTE"].startswith("line one\nline two#3 · NOTE · TTL until 2030-01-01T00:00:00Z")
    assert ("mailto:qa@example.com", "noopener") in Rows(r.text).hrefs
    assert "值 <small>Values</small>" in r.text and 'id="fields"' not in r.text


async def test_json_by_accept_is_the_api_body(api: Api) -> None:
    for handle in (A_HANDLE, SILK_LOT, GS1_LOT):
        proxied = await api.get(path(handle), headers=JSON)
        direct = await api.get("/api/handles/" + quote(handle, safe="/"))
        assert proxied.status == 200 and proxied.headers["Content-Type"].startswith(
            "application/json"
        )
        assert proxied.json == direct.json and proxied.json["handle"] == handle
        assert proxied.headers["Vary"] == "Accept"
    r = await api.get(path(A_HANDLE, "pretty"), headers=JSON)
    assert r.text.startswith('{\n  "responseCode": 1')


@pytest.mark.parametrize(
    "query", ["type=URL", "index=1", "type=fabricCode&index=1", "type=URL.", "type=NOPE"]
)
async def test_json_by_accept_applies_the_api_filters(api: Api, query: str) -> None:
    proxied = await api.get(path(A_HANDLE, query), headers=JSON)
    direct = await api.get("/api/handles/" + quote(A_HANDLE, safe="/") + "?" + query)
    assert proxied.status == direct.status == 200
    assert proxied.json == direct.json
    assert len(proxied.json["values"]) < len(
        (await api.get(path(A_HANDLE), headers=JSON)).json["values"]
    )


@pytest.mark.parametrize(
    "accept, expected",
    [
        ("application/json", True),
        ("application/json, text/html", True),
        ("text/html;q=0.9, application/json", True),
        ("application/vnd.handle+json", True),
        (BROWSER["Accept"], False),
        ("*/*", False),
        ("", False),
        ("application/json;q=0", False),
        ("application/json;q=0.5, text/html", False),
    ],
)
def test_accept_negotiation(accept: str, expected: bool) -> None:
    assert wants_json(accept) is expected


# -- HS_ALIAS ----------------------------------------------------------------------------


async def test_alias_is_followed(api: Api) -> None:
    await put(api, "88.118.2/ALIAS-1", alias("88.118.2/ALIAS-2"))
    await put(api, "88.118.2/ALIAS-2", alias(A_HANDLE, index=5))
    r = await api.get("/88.118.2/ALIAS-1")
    assert (r.status, r.headers["Location"]) == (302, TRACE_SITE + A_HANDLE)
    r = await api.get("/88.118.2/ALIAS-1?noredirect")
    assert r.status == 200 and "<h1>88.118.2/ALIAS-1</h1>" in r.text
    assert Rows(r.text).rows["匹号roll number"].startswith("P2026000123")  # the target's fields
    chain = r.text[r.text.index('id="alias"') :].split("</p>")[0]
    assert "88.118.2/ALIAS-2" in chain and A_HANDLE in chain
    r = await api.get("/88.118.2/ALIAS-1", headers=JSON)
    direct = await api.get("/api/handles/" + A_HANDLE)
    assert r.status == 200 and r.json == direct.json  # the record the values belong to
    assert r.headers["Content-Location"] == "/api/handles/" + A_HANDLE


async def test_alias_loop_is_an_error(api: Api) -> None:
    await put(api, "88.118.2/LOOP-A", alias("88.118.2/LOOP-B"))
    await put(api, "88.118.2/LOOP-B", alias("88.118.2/loop-a"))  # same handle, other case
    r = await api.get("/88.118.2/LOOP-A")
    assert r.status == 508 and r.headers["Content-Type"].startswith("text/html")
    assert "别名无法解析" in r.text
    assert "loop: 88.118.2/LOOP-A → 88.118.2/LOOP-B → 88.118.2/loop-a" in r.text
    r = await api.get("/88.118.2/LOOP-A", headers=JSON)
    assert (r.status, r.json["responseCode"]) == (508, 6) and "loop" in r.json["message"]
    await put(api, "88.118.2/SELF", alias("88.118.2/SELF"))
    assert (await api.get("/88.118.2/SELF")).status == 508


async def test_alias_chain_is_bounded(api: Api) -> None:
    hops = [f"88.118.2/HOP-{n}" for n in range(MAX_ALIAS_HOPS + 1)]
    for here, there in zip(hops, [*hops[1:], A_HANDLE], strict=True):
        await put(api, here, alias(there))
    r = await api.get(path(hops[1]))  # exactly MAX_ALIAS_HOPS hops: fine
    assert (r.status, r.headers.get("Location")) == (302, TRACE_SITE + A_HANDLE)
    r = await api.get(path(hops[0]))  # one more: refused
    assert r.status == 508 and f"more than {MAX_ALIAS_HOPS} HS_ALIAS hops" in r.text
    r = await api.get(path(hops[0]), headers=JSON)
    assert (r.status, r.json["responseCode"], r.json["handle"]) == (508, 6, hops[0])


async def test_alias_to_a_missing_handle(api: Api) -> None:
    await put(api, "88.118.2/DANGLING", alias("88.118.2/GONE"))
    r = await api.get("/88.118.2/DANGLING?noredirect")
    assert r.status == 404 and "88.118.2/GONE not found (reached through HS_ALIAS" in r.text


# -- errors ------------------------------------------------------------------------------


async def test_not_found_page(api: Api) -> None:
    r = await api.get("/88.118.2/NO-SUCH-ROLL", headers=BROWSER)
    assert r.status == 404 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "标识不存在" in r.text and '<code id="handle">88.118.2/NO-SUCH-ROLL</code>' in r.text
    assert r.headers["Cache-Control"] == "no-store"
    r = await api.get("/88.118.2/NO-SUCH-ROLL", headers=JSON)
    assert (r.status, r.json) == (
        404,
        {
            "responseCode": 100,
            "handle": "88.118.2/NO-SUCH-ROLL",
            "message": "handle 88.118.2/NO-SUCH-ROLL not found",
        },
    )


@pytest.mark.parametrize(
    "raw, status, words",
    [
        ("/no-slash-here", 400, "has no &#x27;/&#x27; between prefix and suffix"),
        ("/88..118/X", 400, "empty segment"),
        ("/88.118.2/%FF", 400, "not UTF-8"),
        ("/88.118.2/X?noredirect=maybe", 400, "noredirect"),
        ("/99.1/X", 400, "not responsible for prefix 99.1"),
        ("/0.NA/99.1", 400, "not responsible for prefix 99.1"),
    ],
)
async def test_bad_requests_get_pages(api: Api, raw: str, status: int, words: str) -> None:
    r = await api.get(raw)
    assert r.status == status and r.headers["Content-Type"].startswith("text/html")
    assert words in r.text and '<form action="/"' in r.text


async def test_api_and_other_routes_are_not_shadowed(api: Api) -> None:
    r = await api.get("/api/nothing-here", headers=BROWSER)
    assert (r.status, r.json["responseCode"]) == (404, 4)  # the API's JSON, not a page
    r = await api.call("POST", "/api/nothing-here")
    assert r.status == 404
    r = await api.get("/api/handles/" + A_HANDLE, headers=BROWSER)
    assert r.status == 200 and r.json["handle"] == A_HANDLE
    r = await api.get("/api/openapi.json")
    assert r.status == 200
    r = await api.get("/")
    assert r.status == 200 and '<input name="handle"' in r.text
    r = await api.get("/?handle=" + quote(SILK_LOT, safe=""))
    assert (r.status, r.headers["Location"]) == (302, path(SILK_LOT, "noredirect"))


# -- encodings, visibility, escaping, HEAD -----------------------------------------------


@pytest.mark.parametrize(
    "raw, handle",
    [
        ("/88.118.5/%E7%BC%B8%E5%8F%B7-20260315-07", SILK_LOT),
        ("/88.118.5%2F%E7%BC%B8%E5%8F%B7-20260315-07", SILK_LOT),
        ("/88.118.3/01/06901234567892/10/LOT2026A", GS1_LOT),
        ("/88.118.3/01%2F06901234567892%2F10%2FLOT2026A", GS1_LOT),
        ("/88.118.3/01/06901234567892/10/lot2026a", "88.118.3/01/06901234567892/10/lot2026a"),
    ],
)
async def test_utf8_and_slash_handles(api: Api, raw: str, handle: str) -> None:
    r = await api.get(raw + "?noredirect")
    assert r.status == 200 and f"<h1>{handle}</h1>" in r.text
    r = await api.get(raw)
    assert r.status == 302 and r.headers["Location"].startswith(TRACE_SITE)


async def test_non_public_values_are_never_shown(api: Api) -> None:
    await put(
        api,
        "88.118.2/MIXED",
        [
            url_value(1, "https://example.com/public"),
            admin_value("88.118.2"),
            text_value(2, "URL", "https://example.com/private-url", permissions="1100"),
            text_value(2001, "INTERNAL", "PRIVATE-COST-PRICE", permissions="1100"),
        ],
    )
    await put(
        api,
        "88.118.2/ALL-PRIVATE",
        [
            admin_value("88.118.2") | {"permissions": "1100"},
            url_value(1, "https://example.com/secret-path") | {"permissions": "1100"},
        ],
    )
    page = await api.get("/88.118.2/MIXED?noredirect")
    as_json = await api.get("/88.118.2/MIXED", headers={**JSON, **admin_of(A)})  # creds ignored
    for body in (page.text, as_json.text):
        assert "PRIVATE-COST-PRICE" not in body and "private-url" not in body and "public" in body
    r = await api.get("/88.118.2/ALL-PRIVATE")  # its only URL is private: no redirect
    assert r.status == 200 and "没有公开的值" in r.text and "secret-path" not in r.text
    r = await api.get("/88.118.2/ALL-PRIVATE", headers=JSON)
    assert (r.status, r.json["responseCode"], r.json["values"]) == (200, 200, [])
    r = await api.get("/88.118.2/ADMIN?noredirect")  # the demo's HS_SECKEY is 1100
    assert r.status == 200 and "HS_SECKEY" not in r.text and "pbkdf2" not in r.text.lower()


async def test_everything_is_escaped(api: Api, http_node: Node) -> None:
    script = "<script>alert('x')</script>"
    # Stored in the registry directly: the write path refuses a TEMPLATE naming no
    # template, but records older than that check, or written in SQL, may hold one.
    assert http_node.db is not None
    await http_node.db.registry.put_handle(
        parse_handle("88.118.2/XSS"),
        values_from_json(
            [
                text_value(1, "URL", "javascript:alert(1)"),
                admin_value("88.118.2"),
                text_value(2, "URL", 'https://example.com/?q="><script>alert(2)</script>'),
                text_value(3, "NOTE", script),
                text_value(4, f"T{script}", "type too"),
                text_value(1001, "TEMPLATE", f"88.118/{script}"),
            ]
        ),
        actor="test",
        now=datetime.now(UTC),
    )
    r = await api.get("/88.118.2/XSS")
    assert r.status == 302 and r.headers["Location"].startswith(
        "https://example.com/?q=%22%3E%3Cscript"
    )
    r = await api.get("/88.118.2/XSS?noredirect")
    parsed = Rows(r.text)
    assert parsed.scripts == 0 and "<script>" not in r.text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in r.text
    assert not any(h.startswith("javascript:") for h, _ in parsed.hrefs)  # shown as text only
    assert parsed.rows["链接URL"].startswith("javascript:alert(1)")
    assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none' rules
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "could not be read" in r.text  # a TEMPLATE naming no template: a notice, no failure
    r = await api.get("/88.118.2/%3Cscript%3Ealert(1)%3C%2Fscript%3E")  # in a 404 page
    assert r.status == 404 and "<script>" not in r.text and "&lt;script&gt;alert(1)" in r.text


async def test_head(api: Api) -> None:
    r = await api.call("HEAD", path(A_HANDLE))
    assert (r.status, r.headers["Location"], r.text) == (302, TRACE_SITE + A_HANDLE, "")
    r = await api.call("HEAD", path(SILK_LOT, "noredirect"))
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html") and r.text == ""
    r = await api.call("HEAD", "/88.118.2/NOPE")
    assert r.status == 404 and r.text == ""


async def test_registry_outage_and_bugs_get_pages(http_node: Node, api: Api) -> None:
    assert http_node.db is not None
    # A record the registry cannot decode (corrupted behind the node's back) is a server
    # fault: a 500 page that does not leak the details.
    await http_node.db.registry.pool.execute(
        'UPDATE handles SET "values" = $2 WHERE handle_key = $1',
        normalise(A_HANDLE),
        b"\x00\x00\x00\x01\xff",
    )
    r = await api.get(path(A_HANDLE))
    assert r.status == 500 and "internal server error" in r.text and "truncated" not in r.text

    # The registry going away: a 503 page with Retry-After, and RC 3 for JSON clients.
    await http_node.db.registry.pool.close()
    r = await api.get(path(SILK_LOT))
    assert (r.status, r.headers["Retry-After"]) == (503, "1") and "暂时无法解析" in r.text
    r = await api.get(path(SILK_LOT), headers=JSON)
    assert (r.status, r.json["responseCode"]) == (503, 3)


async def test_requests_are_counted(http_node: Node, api: Api) -> None:
    await api.get(path(A_HANDLE))
    await api.get("/88.118.2/NOPE")
    sample = http_node.metrics.registry.get_sample_value
    assert sample("idnode_requests_total", {"front": "http", "op": "page", "rc": "1"}) == 1
    assert sample("idnode_requests_total", {"front": "http", "op": "page", "rc": "100"}) == 1

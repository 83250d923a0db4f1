"""Redirects of the browser face never leave the site unless to a record's own http(s)
URL: ``/?handle=`` goes to a path on this node however the handle is spelled, and a
record's URL value is followed only when it is an absolute http(s) URL (an allowlist:
``ws:``, ``intent:``, ``view-source:``, ``javascript:`` in any case are not).

Every Location is read the way a browser reads it (WHATWG URL parsing: surrounding C0
controls and spaces dropped, tabs and newlines removed, '\\' taken as '/') and then
resolved against the page with ``urljoin``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import pytest

from node.app import Node
from node.fronts.http.page.html import handle_href, is_own_path, is_web_url
from node.fronts.http.page.routes import redirect_target
from protocol.values import HandleValue
from tests.node.http_support import A, Api, admin_of, admin_value

NODE = "http://node/"


def as_browser(location: str, base: str = NODE) -> tuple[str, str]:
    """(scheme, host) a browser on ``base`` goes to when it follows ``location``."""
    loc = location.strip("".join(chr(c) for c in range(0x21)))
    loc = re.sub(r"[\t\n\r]", "", loc)
    scheme = urlsplit(loc).scheme.lower()
    if scheme in ("", "http", "https"):
        loc = loc.replace("\\", "/")
    target = urlsplit(urljoin(base, loc))
    return target.scheme.lower(), target.netloc.lower()


def stays_here(location: str) -> bool:
    return as_browser(location) == ("http", "node")


# Handles as a person (or a link someone planted) may put in ``/?handle=``.
HANDLE_VECTORS = [
    "///evil.example",
    "//evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/%2F/evil.example",
    "%2F%2Fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "https://evil.example/",
    "HTTPS://evil.example/",
    "javascript:alert(1)",
    "//evil.example/88.118.2/X",
    "/.//evil.example",
    "\x00//evil.example",
    "88.118.2/ROLL-2026-000123",
]


@pytest.mark.parametrize("handle", HANDLE_VECTORS)
def test_handle_href_is_always_a_path_here(handle: str) -> None:
    href = handle_href(handle)
    assert is_own_path(href) and stays_here(href), href
    assert handle_href(handle, noredirect=False).startswith("/")


def test_is_own_path() -> None:
    for good in ("/", "/88.118.2/X?noredirect", "/%2F%2Fevil"):
        assert is_own_path(good)
    for bad in ("//evil", "/\\evil", "evil", "https://evil", "/\t/evil", " /x", ""):
        assert not is_own_path(bad)


def url(data: str | bytes, index: int = 1, vtype: str = "URL") -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data)


# URL values a tenant may store; none may become a Location.
BAD_TARGETS = [
    "ws://evil.example/",
    "wss://evil.example/",
    "intent://evil.example/#Intent;scheme=https;package=com.evil;end",
    "view-source:https://evil.example/",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "  javascript:alert(1)",
    "\x01javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "blob:https://evil.example/uuid",
    "ftp://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "https:/\\evil.example",
    "http:///evil.example",
    "https://",
    "http://@/",
    "/relative/path",
    "",
    "   ",
    "https://evil.example/\x00",
    "https://evil .example/",
]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_only_absolute_http_urls_are_redirect_targets(target: str) -> None:
    assert redirect_target((url(target),)) is None
    assert not is_web_url(target)


@pytest.mark.parametrize(
    "target, location",
    [
        ("https://example.com/x?y=1", "https://example.com/x?y=1"),
        ("HTTPS://Example.com/x", "https://example.com/x"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("  https://example.com/trimmed  ", "https://example.com/trimmed"),
        ("https://example.com/三", "https://example.com/%E4%B8%89"),
    ],
)
def test_http_urls_are_redirect_targets(target: str, location: str) -> None:
    assert redirect_target((url(target),)) == location
    assert as_browser(location)[1] == urlsplit(location).netloc


def test_the_first_usable_url_wins() -> None:
    values = (url("ws://evil.example/", 1), url("https://example.com/ok", 2), url("x", 3, "EMAIL"))
    assert redirect_target(values) == "https://example.com/ok"


# -- over HTTP -------------------------------------------------------------------------


class ProxyApi(Api):
    """Redirects are answers to check, not to follow."""

    follow_redirects = False
    checks_openapi = False  # /{handle} is the browser page, not part of the API document


@pytest.fixture
async def page_api(http_node: Node) -> AsyncIterator[ProxyApi]:
    async with aiohttp.ClientSession() as session:
        yield ProxyApi(session, f"http://127.0.0.1:{http_node.http_port}")


@pytest.mark.parametrize(
    "raw_query",
    [
        "handle=///evil.example",
        "handle=//evil.example",
        "handle=/%5Cevil.example",
        "handle=%5C%5Cevil.example",
        "handle=%2F%2Fevil.example",
        "handle=%252F%252Fevil.example",
        "handle=%20%20//evil.example",
        "handle=%09//evil.example",
        "handle=/%09/evil.example",
        "handle=https://evil.example",
        "handle=javascript:alert(1)",
        "handle=88.118.2/ROLL-2026-000123",
    ],
)
async def test_home_redirects_only_to_this_site(page_api: ProxyApi, raw_query: str) -> None:
    r = await page_api.get("/?" + raw_query)
    assert r.status == 302, r.text
    location = r.headers["Location"]
    assert is_own_path(location), location
    assert stays_here(location), location
    # And the page it names is this node's answer for the handle (an error page for
    # the odd ones), not someone else's.
    r = await page_api.get(location)
    assert r.status in (200, 400, 404) and r.headers["Content-Type"].startswith("text/html")


def text_value(index: int, type_: str, text: str) -> dict[str, Any]:
    return {"index": index, "type": type_, "data": {"format": "string", "value": text}}


async def test_records_redirect_only_to_http_urls(page_api: ProxyApi) -> None:
    for n, target in enumerate(BAD_TARGETS):
        handle = f"88.118.2/REDIR-{n}"
        values = [text_value(1, "URL", target), admin_value("88.118.2")]
        r = await page_api.put(
            "/api/handles/" + quote(handle, safe="/"), values, headers=admin_of(A)
        )
        assert r.status in (200, 201), r.text
        r = await page_api.get("/" + handle)
        assert r.status == 200 and "Location" not in r.headers, (target, r.headers)
    values = [text_value(1, "URL", "HTTPS://Example.com/ok"), admin_value("88.118.2")]
    r = await page_api.put("/api/handles/88.118.2/REDIR-OK", values, headers=admin_of(A))
    r = await page_api.get("/88.118.2/REDIR-OK")
    assert (r.status, r.headers["Location"]) == (302, "https://example.com/ok")

"""A record's past over HTTP (node.fronts.http.history): ``GET /api/handles/{h}?at=T`` and
``GET /api/history/{h}`` on a real node with the demo data, whose wall clock the test
sets (each write happens at a known time; no sleeping). Every reply is checked against
the OpenAPI document (``Api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import Node
from node.settings import load_settings
from protocol.handle import parse_handle
from protocol.rfc3339 import format_time
from protocol.valuecodec import encode_values
from tests.node.http_support import A, Api, B, SteppedClock, admin_of, admin_value, url_value

T0 = datetime(2026, 11, 2, 8, 0, 0, tzinfo=UTC).timestamp()
H = "88.118.2/TRACE-7"
PATH = "/api/handles/" + H
HISTORY = "/api/history/" + H


@dataclass
class Site:
    node: Node
    wall: SteppedClock
    api: Api

    async def put_at(self, when: float, values: list[dict[str, Any]], handle: str = H) -> None:
        self.wall.now = when
        r = await self.api.put("/api/handles/" + handle, values, headers=admin_of(A))
        assert r.status in (200, 201), r.text


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    settings = load_settings(
        env={},
        flags={
            "database_url": database_url,
            "data_dir": str(tmp_path / "node"),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
        },
    )
    wall = SteppedClock(T0 - 3600)  # the demo is seeded an hour before the test's writes
    node = Node(settings, clock=wall, monotonic=SteppedClock())
    await node.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Site(node, wall, Api(session, f"http://127.0.0.1:{node.http_port}"))
    finally:
        await node.stop()


def at(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(seconds, UTC))


def email(address: str, permissions: str = "1110") -> dict[str, Any]:
    return {"index": 2, "type": "EMAIL", "data": address, "permissions": permissions}


def version(n: int) -> list[dict[str, Any]]:
    return [admin_value("88.118.2"), url_value(1, f"https://example.com/trace-7/v{n}")]


async def three_versions(site: Site) -> None:
    """v1 at T0, v2 at T0+60, v3 at T0+120."""
    for n in (1, 2, 3):
        await site.put_at(T0 + (n - 1) * 60, version(n))


def urls(reply: Any) -> list[str]:
    return [v["data"]["value"] for v in reply.json["values"] if v["type"] == "URL"]


async def test_at_answers_the_record_as_it_stood(site: Site) -> None:
    await three_versions(site)
    api = site.api
    r = await api.get(f"{PATH}?at={at(T0)}")  # written at exactly T: it counts
    assert r.status == 200 and r.json["responseCode"] == 1
    assert urls(r) == ["https://example.com/trace-7/v1"]
    assert (r.json["at"], r.json["version"], r.json["writtenAt"]) == (at(T0), 1, at(T0))
    assert r.headers["Cache-Control"] == "no-store"
    r = await api.get(f"{PATH}?at={at(T0 + 90)}")
    assert urls(r) == ["https://example.com/trace-7/v2"] and r.json["version"] == 2
    assert r.json["writtenAt"] == at(T0 + 60)
    r = await api.get(f"{PATH}?at={at(T0 + 3600)}")
    assert urls(r) == ["https://example.com/trace-7/v3"]
    r = await api.get(f"{PATH}?at=2026-11-02T16:01:30%2B08:00&index=1")  # any offset; filters
    assert [v["index"] for v in r.json["values"]] == [1] and r.json["version"] == 2


async def test_at_before_creation_is_404_and_a_bad_time_is_400(site: Site) -> None:
    await three_versions(site)
    r = await site.api.get(f"{PATH}?at={at(T0 - 1)}")
    assert (r.status, r.json["responseCode"]) == (404, 100)
    assert r.json["message"] == f"handle {H} did not exist at {at(T0 - 1)}"
    assert r.json["handle"] == H
    for bad in ("yesterday", "2026-11-02T08:00:00", "2026-11-02", ""):
        r = await site.api.get(f"{PATH}?at={bad}")
        assert (r.status, r.json["responseCode"]) == (400, 4), bad
        assert r.json["message"].startswith("parameter at: ") and "RFC 3339" in r.json["message"]


async def test_at_after_a_delete_is_404_and_before_it_the_record(site: Site) -> None:
    await three_versions(site)
    site.wall.now = T0 + 300
    assert (await site.api.delete(PATH, headers=admin_of(A))).status == 200
    assert (await site.api.get(f"{PATH}?at={at(T0 + 300)}")).status == 404
    r = await site.api.get(f"{PATH}?at={at(T0 + 299)}")
    assert r.status == 200 and r.json["version"] == 3


async def test_at_reads_with_the_rights_of_a_normal_read(site: Site) -> None:
    await site.put_at(T0, [*version(1), email("quality@example.com", "1100")])
    await site.put_at(T0 + 60, version(2))  # the private value is gone now
    asked = f"{PATH}?at={at(T0 + 30)}"
    anonymous = await site.api.get(asked)
    assert [v["index"] for v in anonymous.json["values"]] == [1, 100, 400]
    assert "quality@" not in anonymous.text
    admin = await site.api.get(asked, headers=admin_of(A))
    assert [v["index"] for v in admin.json["values"]] == [1, 2, 100, 400]
    assert admin.json["values"][1]["data"]["value"] == "quality@example.com"
    other = await site.api.get(asked, headers=admin_of(B))  # another enterprise's admin
    assert (other.status, other.json["responseCode"]) == (403, 400)
    assert "publicOnly=true" in other.json["message"] and "quality@" not in other.text
    public = await site.api.get(asked + "&publicOnly=true", headers=admin_of(B))
    assert [v["index"] for v in public.json["values"]] == [1, 100, 400]


def hot_counts(node: Node) -> tuple[float, float]:
    hits = node.metrics.registry.get_sample_value(
        "idnode_cache_hits_total", {"front": "http", "op": "resolution"}
    )
    misses = node.metrics.registry.get_sample_value(
        "idnode_cache_misses_total", {"front": "http", "op": "resolution"}
    )
    return hits or 0.0, misses or 0.0


async def test_a_cached_record_does_not_answer_at(site: Site) -> None:
    await three_versions(site)
    assert site.node.http is not None and site.node.http.hot is not None
    await site.api.get(PATH)
    before = hot_counts(site.node)
    present = await site.api.get(PATH)  # kept: answered from the hot replies now
    assert urls(present) == ["https://example.com/trace-7/v3"]
    warmed = hot_counts(site.node)
    assert warmed[0] == before[0] + 1, "the plain GET should be a hit (the test needs a kept reply)"
    for _ in range(2):
        past = await site.api.get(f"{PATH}?at={at(T0)}")
        assert urls(past) == ["https://example.com/trace-7/v1"]
        assert (await site.api.get(f"{PATH}?at={at(T0 - 1)}")).status == 404
    assert hot_counts(site.node) == warmed  # neither looked up nor kept


# --- /api/history ----------------------------------------------------------------------


async def test_history_lists_versions_newest_first_with_diffs(site: Site) -> None:
    await three_versions(site)
    r = await site.api.get(HISTORY, headers=admin_of(A))
    assert r.status == 200 and r.json["handle"] == H and "next" not in r.json
    versions = r.json["versions"]
    assert [(v["version"], v["action"], v["at"]) for v in versions] == [
        (3, "modify", at(T0 + 120)),
        (2, "modify", at(T0 + 60)),
        (1, "create", at(T0)),
    ]
    assert versions[0]["actor"] == "300:88.118.2/ADMIN"
    newest = versions[0]["changes"]
    assert [(c["index"], c["change"], c["parts"]) for c in newest] == [
        (1, "changed", ["data"]),
        (400, "changed", ["data"]),
    ]
    assert newest[0]["before"]["data"]["value"] == "https://example.com/trace-7/v2"
    assert newest[0]["after"]["data"]["value"] == "https://example.com/trace-7/v3"
    assert newest[1]["summary"] == "400 HS_SIGNATURE signature replaced"
    assert newest[1]["before"] is None and newest[1]["after"] is None  # never the blob
    created = versions[2]["changes"]
    assert [(c["index"], c["change"]) for c in created] == [
        (1, "added"),
        (100, "added"),
        (400, "added"),
    ]
    assert all(v["signature"] == "valid" for v in versions)
    assert versions[0]["signatureDetail"] == "valid (signed by 400:0.NA/88.118)"


async def test_history_hides_what_the_caller_may_not_read(site: Site) -> None:
    await site.put_at(T0, [*version(1), email("quality@example.com", "1100")])
    await site.put_at(T0 + 60, [*version(1), email("recall-desk@example.com", "1100")])
    anonymous = await site.api.get(HISTORY)
    assert "quality@" not in anonymous.text and "recall-desk@" not in anonymous.text
    newest = anonymous.json["versions"][0]
    assert newest["actor"] is None  # who wrote it is not public either
    (private,) = [c for c in newest["changes"] if c["index"] == 2]
    assert private == {
        "index": 2,
        "type": None,
        "change": "changed",
        "parts": ["data"],
        "before": None,
        "after": None,
        "hidden": True,
        "summary": "2 value changed (data), not readable",
    }
    admin = await site.api.get(HISTORY, headers=admin_of(A))
    (shown,) = [c for c in admin.json["versions"][0]["changes"] if c["index"] == 2]
    assert shown["before"]["data"]["value"] == "quality@example.com"
    assert shown["after"]["data"]["value"] == "recall-desk@example.com"
    assert shown["hidden"] is False
    other = await site.api.get(HISTORY, headers=admin_of(B))
    assert other.status == 403 and "quality@" not in other.text


async def test_history_pages_with_limit_and_before(site: Site) -> None:
    for n in range(1, 6):
        await site.put_at(T0 + n * 60, version(n))
    first = await site.api.get(HISTORY + "?limit=2")
    assert [v["version"] for v in first.json["versions"]] == [5, 4]
    seen = [v["version"] for v in first.json["versions"]]
    link = first.json["next"]
    while link:
        page = await site.api.get(link)
        seen += [v["version"] for v in page.json["versions"]]
        link = page.json.get("next")
    assert seen == [5, 4, 3, 2, 1]
    cursor = first.json["versions"][0]["seq"]  # before= takes any version's seq
    after_newest = await site.api.get(f"{HISTORY}?before={cursor}&limit=1")
    assert [v["version"] for v in after_newest.json["versions"]] == [4]
    for bad in ("limit=0", "limit=1001", "limit=x", "before=0"):
        r = await site.api.get(f"{HISTORY}?{bad}")
        assert r.status == 400 and bad.split("=")[0] in r.json["message"], bad


async def test_history_of_unknown_and_of_handles_ending_in_history(site: Site) -> None:
    r = await site.api.get("/api/history/88.118.2/NEVER")
    assert (r.status, r.json["responseCode"], r.json["handle"]) == (404, 100, "88.118.2/NEVER")
    odd = "88.118.2/LOT-1/history"  # a handle of its own, and a history of its own
    await site.put_at(T0, version(1), handle=odd)
    assert (await site.api.get("/api/handles/" + odd)).json["handle"] == odd
    r = await site.api.get("/api/history/" + odd)
    assert r.json["handle"] == odd and len(r.json["versions"]) == 1
    r = await site.api.get("/api/history/99.1/X")
    assert (r.status, r.json["responseCode"]) == (400, 301)


async def test_a_forged_version_shows_an_invalid_signature(site: Site) -> None:
    """An outside attacker with write access to PostgreSQL appends a version whose URL
    points elsewhere and keeps the old HS_SIGNATURE: the history says it does not verify."""
    await three_versions(site)
    assert site.node.db is not None
    registry = site.node.db.registry
    record = await registry.get_handle(parse_handle(H).key)
    assert record is not None
    forged = tuple(
        replace(v, data=b"https://evil.example/trace-7") if v.index == 1 else v
        for v in record.values
    )
    forged_at = datetime.fromtimestamp(T0 + 200, UTC)
    await registry.pool.execute(
        "INSERT INTO handle_history (handle_key, handle, action, actor, at, version, "
        "old_values, new_values) VALUES ($1, $2, 'modify', 'mallory', $3, 4, $4, $5)",
        parse_handle(H).key,
        H,
        forged_at,
        encode_values(record.values),
        encode_values(forged),
    )
    honest = await site.api.get(f"{PATH}?at={at(T0 + 150)}")
    assert (honest.json["signature"], honest.json["version"]) == ("valid", 3)
    r = await site.api.get(f"{PATH}?at={at(T0 + 250)}")
    assert urls(r) == ["https://evil.example/trace-7"]
    assert r.json["signature"] == "invalid"
    assert "value 1 URL mismatched" in r.json["signatureDetail"]
    history = (await site.api.get(HISTORY)).json["versions"]
    assert [(v["version"], v["signature"]) for v in history] == [
        (4, "invalid"),
        (3, "valid"),
        (2, "valid"),
        (1, "valid"),
    ]
    (changed,) = history[0]["changes"]  # the forger kept the signature: one change
    assert changed["index"] == 1 and changed["after"]["data"]["value"].startswith("https://evil")

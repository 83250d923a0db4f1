"""Anonymous ``POST /api/sessions`` floods (issue 14, finding 7: 10,050 in 1.6 s pushed
out every legitimate pending session): one source holds at most its share of pending
sessions, so its flood is refused (429) instead of evicting anybody else's."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.node.abuse_auth_support import sample
from tests.node.http_support import Api, StartNode

FLOOD = 300


async def test_a_flood_from_one_source_evicts_nobody_else(start_http_node: StartNode) -> None:
    node = await start_http_node(http_sessions_max=100)  # 16 pending per source
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        polite = {"X-Forwarded-For": "198.51.100.5"}  # clients behind our TLS proxy
        mine = await api.post("/api/sessions", headers=polite)
        assert mine.status == 201
        flooder = {"X-Forwarded-For": "203.0.113.66"}
        replies = await asyncio.gather(
            *(api.post("/api/sessions", headers=flooder) for _ in range(FLOOD))
        )
        session = {"Authorization": f'Handle sessionId="{mine.json["sessionId"]}"', **polite}
        r = await api.get("/api/sessions/this", headers=session)
        assert r.status == 200 and r.json["sessionId"] == mine.json["sessionId"]
        statuses = [r.status for r in replies]
        assert statuses.count(201) == 16 and statuses.count(429) == FLOOD - 16
        refused = next(r for r in replies if r.status == 429)
        assert refused.json["responseCode"] == 3 and int(refused.headers["Retry-After"]) > 0
        assert "203.0.113.66" in refused.json["message"]
        # The same /64 is one source; another client is not held back by the flood.
        v6 = [{"X-Forwarded-For": f"2001:db8:5:6::{n:x}"} for n in range(17)]
        assert [(await api.post("/api/sessions", headers=h)).status for h in v6] == [201] * 16 + [
            429
        ]
        assert (
            await api.post("/api/sessions", headers={"X-Forwarded-For": "192.0.2.1"})
        ).status == 201
        # A deleted session gives its slot back.
        first = next(r for r in replies if r.status == 201)
        gone = {"Authorization": f'Handle sessionId="{first.json["sessionId"]}"', **flooder}
        assert (await api.delete("/api/sessions/this", headers=gone)).status == 204
        assert (await api.post("/api/sessions", headers=flooder)).status == 201
    assert (
        sample(node, "idnode_http_sessions_refused_total", {"reason": "per_source"})
        == FLOOD - 16 + 1
    )

"""``serve --demo`` adds what is missing and leaves what exists: an operator's edit of a
demo record survives every restart (it used to be rewritten at each start)."""

from __future__ import annotations

from node.app import Node
from node.demo.dataset import OPERATOR
from tests.node.conftest import StartNode
from tests.node.http_support import Api, admin_of


async def test_a_restart_keeps_an_operators_edit(
    start_http_node: StartNode, api: Api, http_node: Node
) -> None:
    email = {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "ops@example.cn"}}
    r = await api.put("/api/handles/88.118/ADMIN?index=2", [email], headers=admin_of(OPERATOR))
    assert r.status in (200, 201), r.json
    before = (await api.get("/api/handles/88.118/ADMIN")).json["values"]

    again = await start_http_node()  # --demo again, on the same registry
    assert again.demo_counts == {"enterprises added": 0, "prefixes added": 0, "records added": 0}
    after = (await api.get("/api/handles/88.118/ADMIN?auth=true")).json["values"]
    assert after == before and any(v["type"] == "EMAIL" for v in after)

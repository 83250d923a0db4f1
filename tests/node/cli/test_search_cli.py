"""``idnode search`` against a real PostgreSQL: the operator's recall query, paged and
whole, and its one-line refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node.demo.dataset import PONGEE, record, template_handle
from node.demo.seed import seed_records
from node.templates.shipped import ROLL
from registry.connect import open_registry
from tests.node.process_support import MILL, run_idnode

NOW = datetime(2026, 3, 18, 8, 0, tzinfo=UTC)


def roll(handle: str, lot: str, n: int) -> tuple[str, list[dict[str, object]]]:
    fields = {
        **PONGEE,
        "stage": "成品",
        "widthCm": "148",
        "weightGsm": "64",
        "colour": "黑",
        "rollNumber": f"C{n:06d}",
        "rollLengthM": "97.0",
        "grade": "优等品",
        "mill": "吴江示例织造",
        "productionDate": "2026-03-18",
        "dyeLot": lot,
    }
    return handle, record(handle, ROLL, fields).values


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The roll template published under 88.118, five rolls of DL-CLI under 88.118.2 and
    one under 88.118.5, written through the write service (field index included)."""
    registry = await open_registry(database_url, min_size=1, max_size=2, timeout_s=10)
    try:
        await registry.migrate()
        await registry.add_enterprise("盛泽示例丝绸有限公司", MILL, "ops@example.com", NOW)
        for prefix in ("88.118", "88.118.2", "88.118.5"):
            await registry.add_prefix(prefix, MILL, NOW)
        tpl = template_handle(ROLL)
        records = [(tpl.handle, tpl.values)]
        records += [roll(f"88.118.2/FIN-{n}", "DL-CLI", n) for n in range(5)]
        records += [roll("88.118.5/FIN-9", "DL-CLI", 9)]
        await seed_records(registry, records, actor="test", now=NOW)
    finally:
        await registry.close()
    return {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(tmp_path / "data")}


def search(env: dict[str, str], *args: str) -> dict[str, object]:
    base = ["search", "--template", ROLL.handle, "--value", "DL-CLI"]
    result = run_idnode(*base, *args, env=env)
    assert result.returncode == 0, result.stderr
    reply: dict[str, object] = json.loads(result.stdout)
    return reply


def refused(env: dict[str, str], *args: str) -> str:
    result = run_idnode("search", "--template", ROLL.handle, "--value", "DL-CLI", *args, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idnode: error: "), result.stderr
    return lines[0]


def _keys(n: int) -> Iterator[str]:
    return (f"88.118.2/FIN-{i}" for i in range(n))


def test_search_pages_and_all(env: dict[str, str]) -> None:
    first = search(env, "--field", "dyeLot", "--limit", "2", "--prefix", "88.118.2")
    assert first["handles"] == ["88.118.2/FIN-0", "88.118.2/FIN-1"]
    assert (first["next"], first["total"]) == ("88.118.2/FIN-1", 5)
    second = search(
        env,
        "--field",
        "dyeLot",
        "--limit",
        "2",
        "--prefix",
        "88.118.2",
        "--after",
        "88.118.2/FIN-1",
    )
    assert second["handles"] == ["88.118.2/FIN-2", "88.118.2/FIN-3"]
    whole = search(env, "--field", "dyelot", "--limit", "2", "--all")
    assert whole["handles"] == [*_keys(5), "88.118.5/FIN-9"]
    assert (whole["next"], whole["total"], whole["field"]) == (None, 6, "dyeLot")


def test_search_refusals(env: dict[str, str]) -> None:
    assert "fabricCode, rollNumber, dyeLot" in refused(env, "--field", "colour")
    assert "no template 88.118/TPL.NOPE" in refused(
        env, "--field", "dyeLot", "--template", "88.118/TPL.NOPE"
    )
    assert "--limit must be 1..10000" in refused(env, "--field", "dyeLot", "--limit", "0")

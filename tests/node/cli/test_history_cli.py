"""``idnode handle history``: compact versions with diffs, ``--at`` time travel with the
signature verdict, ``--json`` and ``--limit``; the real command in a subprocess against
a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from protocol.rfc3339 import format_time, parse_time
from tests.node.process_support import MILL, run_idnode

H = "88.118.2/ROLL-2026-000777"
FIELDS = [
    ("productName", "真丝双绉坯布"),
    ("weave", "平纹"),
    ("widthCm", "114"),
    ("gsm", "69"),
    ("lengthM", "50.0"),
    ("loom", "J-12"),
    ("warpYarn", "88.118.3/YARN-2026-0412"),
    ("weftYarn", "88.118.3/YARN-2026-0412"),
    ("grade", "A"),
    ("inspector", "沈工"),
    ("wovenOn", "2026-03-02"),
    ("status", "woven"),
    ("location", "仓库 3 号"),
]


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(tmp_path / "data")}
    for args in (
        ("enterprise", "add", "--name", "盛泽示例丝绸", "--credit-code", MILL),
        ("prefix", "add", "88.118.2", "--enterprise", MILL),
    ):
        result = run_idnode(*args, env=env)
        assert result.returncode == 0, result.stderr
    return env


def ok(*args: str, env: dict[str, str], input: str | None = None) -> str:
    result = run_idnode(*args, env=env, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def roll(status: str, location: str, grade: str) -> str:
    """A roll of 14 values: its URL and 13 fields (indexes 2000+)."""
    changed = {"status": status, "location": location, "grade": grade}
    values = [{"index": 1, "type": "URL", "data": "https://trace.example.com/h/" + H}]
    values += [
        {"index": 2000 + n, "type": name, "data": changed.get(name, value)}
        for n, (name, value) in enumerate(FIELDS)
    ]
    return json.dumps(values, ensure_ascii=False)


# Five versions, each changing one field.
VERSIONS = [
    ("woven", "仓库 3 号", "A"),
    ("inspected", "仓库 3 号", "A"),
    ("inspected", "仓库 3 号", "A-"),
    ("inspected", "染厂收货区", "A-"),
    ("dyeing", "染厂收货区", "A-"),
]


@pytest.fixture
def five_versions(env: dict[str, str]) -> list[dict[str, object]]:
    for fields in VERSIONS:
        ok("handle", "put", H, "-f", "-", env=env, input=roll(*fields))
    versions: list[dict[str, object]] = json.loads(ok("handle", "history", H, "--json", env=env))
    return versions


def test_history_is_compact_one_line_per_change(
    env: dict[str, str], five_versions: list[dict[str, object]]
) -> None:
    out = ok("handle", "history", H, env=env)
    lines = out.splitlines()
    # 1 title, 5 version lines, 14 values + a signature created, then 2 per change.
    assert len(lines) < 60, out
    assert len(lines) == 1 + 5 + 15 + 4 * 2, out
    assert lines[0] == f"{H}: 5 versions, oldest first"
    assert lines[1].startswith("v1  ") and " create by cli" in lines[1]
    assert lines[-3].startswith("v5  ") and " modify by cli" in lines[-3]
    assert "signature valid (signed by 400:0.NA/88.118)" in lines[-3]
    assert lines[-2] == "  ~ 400 HS_SIGNATURE signature replaced"  # in index order
    assert lines[-1] == '  ~ 2011 status data: "inspected" → "dyeing"'
    assert '  ~ 2012 location data: "仓库 3 号" → "染厂收货区"' in lines
    assert '  ~ 2008 grade data: "A" → "A-"' in lines
    assert "eyJ" not in out  # no signature blob anywhere


def test_json_is_the_api_shape_oldest_first(five_versions: list[dict[str, object]]) -> None:
    assert [v["version"] for v in five_versions] == [1, 2, 3, 4, 5]
    assert [v["action"] for v in five_versions] == ["create"] + ["modify"] * 4
    assert all(v["signature"] == "valid" for v in five_versions)
    last = five_versions[-1]["changes"]
    assert isinstance(last, list)
    assert [(c["index"], c["change"], c["parts"]) for c in last] == [
        (400, "changed", ["data"]),
        (2011, "changed", ["data"]),
    ]


def test_at_shows_the_record_then_with_its_signature(
    env: dict[str, str], five_versions: list[dict[str, object]]
) -> None:
    third = str(five_versions[2]["at"])
    out = ok("handle", "history", H, "--at", third, env=env)
    lines = out.splitlines()
    assert lines[0].startswith(f"{H} at {third}: version 3, written {third} by cli")
    assert lines[1] == "signature valid (signed by 400:0.NA/88.118)"
    assert '  2008 grade "A-"' in lines and '  2012 location "仓库 3 号"' in lines
    assert any(line.startswith("  400 HS_SIGNATURE <signature, ") for line in lines)
    assert "eyJ" not in out
    assert len(lines) == 2 + 15  # 14 values and the signature
    # Just before the fourth version was written: still the third.
    fourth = parse_time(str(five_versions[3]["at"]))
    got = json.loads(
        ok(
            "handle",
            "history",
            H,
            "--json",
            "--at",
            format_time(fourth - timedelta(microseconds=1)),
            env=env,
        )
    )
    assert (got["version"], got["signature"]) == (3, "valid")
    assert {v["index"]: v["data"]["value"] for v in got["values"]}[2012] == "仓库 3 号"


def test_at_before_creation_and_bad_times_fail_in_one_line(
    env: dict[str, str], five_versions: list[dict[str, object]]
) -> None:
    first = parse_time(str(five_versions[0]["at"]))
    early = format_time(first - timedelta(seconds=1))
    result = run_idnode("handle", "history", H, "--at", early, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"idnode: error: handle {H} did not exist at {early}"
    result = run_idnode("handle", "history", H, "--at", "2026-11-02 08:00", env=env)
    assert result.returncode == 2 and "RFC 3339" in result.stderr
    result = run_idnode("handle", "history", "88.118.2/NEVER", env=env)
    assert result.returncode == 1 and "has no history" in result.stderr


def test_limit_shows_the_newest_and_says_more_exist(
    env: dict[str, str], five_versions: list[dict[str, object]]
) -> None:
    lines = ok("handle", "history", H, "--limit", "2", env=env).splitlines()
    assert lines[0].startswith(f"{H}: 2 versions, oldest first; older ones not shown")
    assert [line.split()[0] for line in lines if line.startswith("v")] == ["v4", "v5"]
    assert datetime.fromisoformat(str(five_versions[4]["at"]).replace("Z", "+00:00"))
    assert run_idnode("handle", "history", H, "--limit", "0", env=env).returncode == 2

"""Shared pieces of the bulk import tests: finished-roll rows that follow the shipped
``TPL.TEXTILE.ROLL.V1`` template (docs/industry-data.md), written as CSV, and a registry
with the enterprises, prefixes and published template they need."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from node.templates.shipped import ROLL
from protocol.creditcode import check_character
from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.store import Registry

MILL = "91320509MA1BULK00" + check_character("91320509MA1BULK00")
WEAVER = "91320509MA1WEAN00" + check_character("91320509MA1WEAN00")
HEADER = ["handle", *(f.key for f in ROLL.fields)]
_COLOURS = ("本白", "藏青", "大红", "墨绿", "卡其", "浅灰")
_GRADES = ("优等品", "一等品", "合格品")


def roll_handle(n: int, prefix: str = "88.118.2") -> str:
    return f"{prefix}/ROLL-B-{n:07d}"


def roll_fields(n: int) -> dict[str, str]:
    """A finished roll, varied the way a mill's rolls vary (a few colours, lengths, days)."""
    return {
        "fabricCode": "30121000750721010",
        "productName": "涤纶春亚纺",
        "stage": "成品",
        "composition": "100% 涤纶",
        "yarnCount": "经 75D/72F FDY，纬 75D/72F DTY",
        "weave": "平纹",
        "widthCm": "150",
        "weightGsm": "62",
        "colour": _COLOURS[n % len(_COLOURS)],
        "rollNumber": f"P2026{n:07d}",
        "rollLengthM": f"{95 + n % 11}.5",
        "grade": _GRADES[(n // 7) % len(_GRADES)],
        "mill": "吴江盛泽示例丝绸织造有限公司",
        "productionDate": f"2026-03-{1 + n % 28:02d}",
        "dyeLot": f"DL-202603{1 + n % 28:02d}-{n % 4:02d}",
        "certificate": "https://example.com/reports/FIN-000503.pdf",
    }


def roll_row(n: int, prefix: str = "88.118.2") -> list[str]:
    fields = roll_fields(n)
    return [roll_handle(n, prefix), *(fields[k] for k in HEADER[1:])]


def csv_text(rows: Iterable[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_csv(path: Path, rows: Iterable[list[str]]) -> Path:
    path.write_text(csv_text(rows), encoding="utf-8")
    return path


def rolls(count: int, start: int = 0) -> Iterator[list[str]]:
    return (roll_row(n) for n in range(start, start + count))


async def prepare_registry(registry: Registry, now: datetime) -> None:
    """Two enterprises (a mill on 88.118.2, a weaver on 88.118.3), the node prefix 88.118
    and the roll template published under it."""
    await registry.add_enterprise("吴江示例丝绸织造有限公司", MILL, "ops@example.com", now)
    await registry.add_enterprise("盛泽示例织造有限公司", WEAVER, "ops@example.cn", now)
    for prefix, owner in (("88.118", MILL), ("88.118.2", MILL), ("88.118.3", WEAVER)):
        await registry.add_prefix(prefix, owner, now)
    body = HandleValue(1000, "IDIS_TEMPLATE", ROLL.to_json().encode("utf-8"))
    await registry.put_handle(parse_handle(ROLL.handle), [body], actor="test", now=now)

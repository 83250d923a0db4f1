"""A valid finished-roll record by field names (the shipped roll template), for the
tests of writes by field names, batches and the CAICT-style endpoints."""

from __future__ import annotations

from typing import Any

from node.demo.templates import fabric_code
from node.templates.shipped import ROLL

ROLL_TEMPLATE = ROLL.handle


def roll_fields(n: int, **changes: str) -> dict[str, str]:
    fields = {
        "fabricCode": fabric_code("301", "2100", "075072", "1010"),
        "productName": "涤纶春亚纺",
        "stage": "成品",
        "composition": "100% 涤纶",
        "yarnCount": "经 75D/72F FDY，纬 75D/72F DTY",
        "weave": "平纹",
        "widthCm": "150",
        "weightGsm": "62",
        "colour": "藏青",
        "rollNumber": f"C2026{n:06d}",
        "rollLengthM": "100.5",
        "grade": "一等品",
        "mill": "吴江测试丝绸有限公司",
        "productionDate": "2026-03-18",
        "dyeLot": "DL-20260316-02",
        "certificate": f"https://example.com/reports/FIN-{n:06d}.pdf",
    }
    fields.update(changes)
    return fields


def roll_body(n: int, **changes: str) -> dict[str, Any]:
    return {"template": ROLL_TEMPLATE, "fields": roll_fields(n, **changes)}

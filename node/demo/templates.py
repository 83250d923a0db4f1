"""Data templates of the demo node (docs/idis.md "Templates") and the code schemes
their fields hold (docs/industry-data.md): pure data and pure functions, no I/O.

A template names the fields a record of one kind carries: each item has a Chinese
name (what the top-level's template service shows), an English key that is also the
handle value ``type`` the field is stored under, and an index at 2000 or above. The
record builders in ``node.demo.dataset`` place values by these items, so a record can never
drift from the template it cites at index 1001.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TEXTILE_NODE = "88.118"
ELEVATOR_NODE = "88.119"


@dataclass(frozen=True)
class TemplateItem:
    key: str  # English key; the handle value type the field is stored under
    name: str  # Chinese field name
    label: str  # English label
    index: int  # idIndex, >= 2000
    required: bool = True
    kind: str = "string"  # metadata.type: string, number, date, datetime, url, handle
    min_length: int = 1
    max_length: int = 64

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "idType": self.key,
            "idIndex": self.index,
            "required": self.required,
            "metadata": {
                "type": self.kind,
                "minLength": self.min_length,
                "maxLength": self.max_length,
            },
        }


@dataclass(frozen=True)
class DemoTemplate:
    handle: str
    name: str
    version: str
    industry: tuple[tuple[str, str], ...]  # (GB/T 4754-2017 code, its name)
    items: tuple[TemplateItem, ...]

    @property
    def prefix(self) -> str:
        return self.handle.partition("/")[0]

    def item(self, key: str) -> TemplateItem:
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(f"template {self.handle} has no field {key!r}")

    def describe(self) -> dict[str, Any]:
        """The JSON shape of the template service (``/snms/api/v5/template``)."""
        return {
            "handle": self.handle,
            "prefix": self.prefix,
            "version": self.version,
            "name": self.name,
            "industryCategory": [{"code": c, "name": n} for c, n in self.industry],
            "items": [item.describe() for item in self.items],
        }

    def to_json(self) -> str:
        return json.dumps(self.describe(), ensure_ascii=False, sort_keys=True)


def _items(*specs: tuple[Any, ...]) -> tuple[TemplateItem, ...]:
    """Number fields 2000, 2001, ... in the order given, so indexes never collide."""
    return tuple(
        TemplateItem(spec[0], spec[1], spec[2], 2000 + n, *spec[3:]) for n, spec in enumerate(specs)
    )


_NUM = "number"
_DATE = "date"

YARN = DemoTemplate(
    handle=f"{TEXTILE_NODE}/TPL.TEXTILE.YARN.V1",
    name="化纤长丝批次",
    version="1.0",
    industry=(("C2822", "涤纶纤维制造"),),
    items=_items(
        ("productName", "产品名称", "product name"),
        ("yarnSpec", "规格", "linear density / filaments"),
        ("composition", "成分", "composition"),
        ("process", "工艺类型", "process (FDY/DTY/POY)", True, "string", 2, 8),
        ("lustre", "光泽", "lustre"),
        ("lotNumber", "批号", "lot number"),
        ("grade", "等级", "grade", True, "string", 1, 8),
        ("netWeightKg", "净重(kg)", "net weight (kg)", True, _NUM, 1, 10),
        ("bobbinCount", "筒数", "bobbin count", True, _NUM, 1, 6),
        ("mill", "生产企业", "manufacturer"),
        ("productionDate", "生产日期", "production date", True, _DATE, 10, 10),
        ("gtin", "商品条码", "GTIN-14", False, "string", 14, 14),
    ),
)

ROLL = DemoTemplate(
    handle=f"{TEXTILE_NODE}/TPL.TEXTILE.ROLL.V1",
    name="面料匹（坯布/成品）",
    version="1.0",
    industry=(("C1742", "绢纺和丝织加工"), ("C1751", "化纤织造加工")),
    items=_items(
        ("fabricCode", "面料编码", "fabric code (GB/T 22970)", True, "string", 17, 17),
        ("productName", "品名", "fabric name"),
        ("stage", "加工阶段", "stage (greige/finished)", True, "string", 2, 4),
        ("composition", "成分", "composition"),
        ("yarnCount", "纱支规格", "yarn count"),
        ("weave", "组织", "weave"),
        ("widthCm", "门幅(cm)", "width (cm)", True, _NUM, 2, 4),
        ("weightGsm", "克重(g/m²)", "weight (g/m²)", True, _NUM, 2, 4),
        ("colour", "颜色", "colour"),
        ("rollNumber", "匹号", "roll number"),
        ("rollLengthM", "匹长(m)", "roll length (m)", True, _NUM, 1, 6),
        ("grade", "等级", "grade", True, "string", 1, 8),
        ("mill", "生产企业", "manufacturer"),
        ("productionDate", "生产日期", "production date", True, _DATE, 10, 10),
        ("dyeLot", "缸号", "dye lot", False),
        ("certificate", "检测报告", "test certificate", False, "url", 12, 256),
    ),
)

DYELOT = DemoTemplate(
    handle=f"{TEXTILE_NODE}/TPL.TEXTILE.DYELOT.V1",
    name="染色缸号",
    version="1.0",
    industry=(("C1743", "丝印染精加工"), ("C1752", "化纤织物染整精加工")),
    items=_items(
        ("dyeLot", "缸号", "dye lot"),
        ("fabricCode", "面料编码", "fabric code (GB/T 22970)", True, "string", 17, 17),
        ("productName", "品名", "fabric name"),
        ("colour", "颜色", "colour"),
        ("colourNumber", "色号", "colour number"),
        ("dyeClass", "染料类别", "dye class"),
        ("process", "染色工艺", "dyeing process"),
        ("machineNo", "染缸编号", "dyeing machine"),
        ("batchWeightKg", "投坯重量(kg)", "batch weight (kg)", True, _NUM, 1, 8),
        ("rollCount", "匹数", "roll count", True, _NUM, 1, 4),
        ("colourFastness", "耐洗色牢度(级)", "wash fastness (grade)", True, "string", 1, 8),
        ("dyeingPlant", "染整企业", "dyeing plant"),
        ("dyeingDate", "染色日期", "dyeing date", True, _DATE, 10, 10),
        ("certificate", "检测报告", "test certificate", False, "url", 12, 256),
    ),
)

ELEVATOR = DemoTemplate(
    handle=f"{ELEVATOR_NODE}/TPL.ELEVATOR.V1",
    name="电梯设备",
    version="1.0",
    industry=(("C3435", "电梯、自动扶梯及升降机制造"),),
    items=_items(
        ("registrationCode", "注册代码", "registration code", True, "string", 20, 20),
        ("deviceCode", "设备代码", "device code", True, "string", 18, 18),
        ("equipmentVariety", "设备品种", "equipment variety"),
        ("model", "型号", "model"),
        ("manufacturer", "制造单位", "manufacturer"),
        ("ratedLoadKg", "额定载重量(kg)", "rated load (kg)", True, _NUM, 2, 6),
        ("ratedSpeedMs", "额定速度(m/s)", "rated speed (m/s)", True, _NUM, 1, 5),
        ("floors", "层站数", "floors/stops", True, _NUM, 1, 3),
        ("installAddress", "安装地址", "install address", True, "string", 4, 128),
        ("ownerUnit", "使用单位", "owner unit"),
        ("maintenanceUnit", "维保单位", "maintenance unit"),
        ("lastInspectionDate", "最近检验日期", "last inspection", True, _DATE, 10, 10),
        ("nextInspectionDue", "下次检验日期", "next inspection due", True, _DATE, 10, 10),
        ("rescueCode", "救援识别码", "rescue code", True, "string", 4, 8),
        ("emergencyHotline", "应急救援电话", "emergency hotline", True, "string", 5, 16),
    ),
)

# Elevator maintenance is repair of general-purpose equipment in GB/T 4754-2017.
MAINTENANCE = DemoTemplate(
    handle=f"{ELEVATOR_NODE}/TPL.ELEVATOR.MAINT.V1",
    name="电梯维护保养记录",
    version="1.0",
    industry=(("C4320", "通用设备修理"),),
    items=_items(
        ("deviceCode", "设备代码", "device code", True, "string", 18, 18),
        ("maintenanceType", "保养类型", "maintenance type"),
        ("workDate", "作业日期", "work date", True, _DATE, 10, 10),
        ("maintenanceUnit", "维保单位", "maintenance unit"),
        ("technician", "作业人员", "technician"),
        ("workItems", "保养项目", "items done", True, "string", 1, 256),
        ("result", "结论", "result"),
        ("nextMaintenanceDue", "下次保养日期", "next maintenance due", False, _DATE, 10, 10),
    ),
)

EVENT = DemoTemplate(
    handle=f"{ELEVATOR_NODE}/TPL.ELEVATOR.EVENT.V1",
    name="电梯应急事件",
    version="1.0",
    industry=(("C4320", "通用设备修理"),),
    items=_items(
        ("deviceCode", "设备代码", "device code", True, "string", 18, 18),
        ("eventType", "事件类型", "event type"),
        ("rescueCode", "救援识别码", "rescue code", True, "string", 4, 8),
        ("alarmTime", "报警时间", "alarm time", True, "datetime", 25, 25),
        ("arrivalTime", "到达时间", "arrival time", True, "datetime", 25, 25),
        ("rescueTime", "解救时间", "rescue time", True, "datetime", 25, 25),
        ("trappedPersons", "被困人数", "persons trapped", True, _NUM, 1, 3),
        ("rescueUnit", "救援单位", "rescue unit"),
        ("cause", "原因", "cause", False, "string", 1, 256),
    ),
)

TEMPLATES: tuple[DemoTemplate, ...] = (YARN, ROLL, DYELOT, ELEVATOR, MAINTENANCE, EVENT)


# --- code schemes -----------------------------------------------------------------

# GB 32100-2015 unified social credit code: 1 registration authority + 1 kind + 6 area
# + 9 GB 11714 organisation code (its own check last) + 1 check character.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # digits and letters but I, O, S, V, Z
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def credit_check_char(first17: str) -> str:
    """The 18th character: (31 - Σ value×weight mod 31) mod 31, in the code alphabet."""
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_WEIGHTS, strict=True))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def _org_check_char(body8: str) -> str:
    """GB 11714: 11 - Σ value×weight mod 11 (A=10 ... Z=35); 10 is written X, 11 is 0."""
    check = 11 - sum(int(c, 36) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_code(area: str, org_body: str, authority: str = "9", kind: str = "1") -> str:
    """Authority 9 (market regulation) + kind 1 (enterprise) + area + organisation code
    (8 characters + its check) + the overall check character."""
    first17 = authority + kind + area + org_body + _org_check_char(org_body)
    return first17 + credit_check_char(first17)


def fabric_code(category: str, material: str, yarn: str, weave: str) -> str:
    """A 17-digit GB/T 22970 fabric code: name (3) + raw material (4) + yarn structure
    (6) + weave (4). The layout follows the standard's four parts, but the digits here
    are illustrative, not looked up in its code tables."""
    return _digits(category + material + yarn + weave, 17, "fabric code")


def gtin_check_digit(body: str) -> str:
    """GS1 mod-10: weights 3,1,3,... from the rightmost digit of the body."""
    total = sum(int(d) * (3 if n % 2 == 0 else 1) for n, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def device_code(variety: str, maker: str, year: str, sequence: str) -> str:
    """设备代码: 4-digit variety + 5-digit manufacturer + 4-digit year + 5-digit sequence."""
    return _digits(variety + maker + year + sequence, 18, "device code")


def registration_code(variety: str, area: str, yyyymm: str, sequence: str) -> str:
    """Legacy 注册代码: 4-digit class + 6-digit area + YYYYMM + 4-digit sequence."""
    return _digits(variety + area + yyyymm + sequence, 20, "registration code")


def _digits(code: str, length: int, what: str) -> str:
    if len(code) != length or not code.isdigit():
        raise ValueError(f"{what} {code!r} is not {length} digits")
    return code

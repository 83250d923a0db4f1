"""The industry data templates idnode ships (docs/industry-data.md): textile (yarn lot,
roll greige or finished, dye lot) on the textile node prefix, elevator (lift,
component, maintenance record, inspection record, trapped-passenger event) on the
elevator node prefix. Each is a record at ``<node prefix>/TPL.<...>.V<n>``; a record
cites it at index 1001 and is validated against it on every write
(node.templates.catalog). Field indexes are numbered from 2000 in the order given and
never change within a version: a new version is a new handle.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from protocol.templates import Field, Template

TEXTILE_NODE = "88.118"
ELEVATOR_NODE = "88.119"


def _fields(*specs: tuple[Any, ...]) -> tuple[Field, ...]:
    """(key, name, label, type, required, min_length, max_length, {rules}) per field,
    numbered 2000, 2001, ... in order."""
    out = []
    for n, spec in enumerate(specs):
        key, name, label, *rest = spec
        kind = rest[0] if len(rest) > 0 else "string"
        required = rest[1] if len(rest) > 1 else True
        lo = rest[2] if len(rest) > 2 else 1
        hi = rest[3] if len(rest) > 3 else 64
        rules: dict[str, Any] = rest[4] if len(rest) > 4 else {}
        made = Field(key, 2000 + n, name, label, kind, required, lo, hi)
        changes: dict[str, Any] = {
            k: Decimal(str(v)) if k in ("minimum", "maximum") else v for k, v in rules.items()
        }
        out.append(replace(made, **changes))
    return tuple(out)


_DEC, _INT, _DATE, _TIME = "decimal", "integer", "date", "datetime"


def _range(lo: float, hi: float, unit: str = "") -> dict[str, Any]:
    return {"minimum": lo, "maximum": hi, "unit": unit}


_FABRIC_CODE = (
    "fabricCode",
    "面料编码",
    "fabric code (GB/T 22970)",
    "string",
    True,
    17,
    17,
    {"check": "gbt22970", "indexed": True},
)
_GRADE = (
    "grade",
    "等级",
    "grade",
    "enum",
    True,
    1,
    8,
    {"choices": ("优等品", "一等品", "合格品", "AA", "A", "B", "C")},
)
_CERT = ("certificate", "检测报告", "test certificate", "url", False, 12, 256)
_DEVICE_CODE = (
    "deviceCode",
    "设备代码",
    "device code",
    "string",
    True,
    18,
    18,
    {"check": "elevator-device", "indexed": True},
)

YARN = Template(
    f"{TEXTILE_NODE}/TPL.TEXTILE.YARN.V1",
    "1.0",
    "化纤长丝批次",
    _fields(
        ("productName", "产品名称", "product name"),
        ("yarnSpec", "规格", "linear density / filaments"),
        ("composition", "成分", "composition"),
        (
            "process",
            "工艺类型",
            "process (FDY/DTY/POY)",
            "enum",
            True,
            2,
            8,
            {"choices": ("FDY", "DTY", "POY", "ATY", "ITY")},
        ),
        ("lustre", "光泽", "lustre"),
        ("lotNumber", "批号", "lot number", "string", True, 1, 64, {"indexed": True}),
        _GRADE,
        (
            "netWeightKg",
            "净重(kg)",
            "net weight (kg)",
            _DEC,
            True,
            1,
            10,
            _range(0.001, 100000, "kg"),
        ),
        ("bobbinCount", "筒数", "bobbin count", _INT, True, 1, 6, _range(1, 100000)),
        ("mill", "生产企业", "manufacturer"),
        ("productionDate", "生产日期", "production date", _DATE, True, 10, 10),
        ("gtin", "商品条码", "GTIN-14", "string", False, 14, 14, {"check": "gtin"}),
    ),
    (("C2822", "涤纶纤维制造"),),
)

ROLL = Template(
    f"{TEXTILE_NODE}/TPL.TEXTILE.ROLL.V1",
    "1.0",
    "面料匹（坯布/成品）",
    _fields(
        _FABRIC_CODE,
        ("productName", "品名", "fabric name"),
        (
            "stage",
            "加工阶段",
            "stage (greige/finished)",
            "enum",
            True,
            2,
            8,
            {"choices": ("坯布", "成品", "greige", "finished")},
        ),
        ("composition", "成分", "composition"),
        ("yarnCount", "纱支规格", "yarn count"),
        ("weave", "组织", "weave"),
        ("widthCm", "门幅(cm)", "width (cm)", _DEC, True, 2, 6, _range(10, 400, "cm")),
        ("weightGsm", "克重(g/m²)", "weight (g/m²)", _DEC, True, 2, 6, _range(5, 2000, "g/m²")),
        ("colour", "颜色", "colour"),
        ("rollNumber", "匹号", "roll number", "string", True, 1, 64, {"indexed": True}),
        ("rollLengthM", "匹长(m)", "roll length (m)", _DEC, True, 1, 8, _range(0.1, 10000, "m")),
        _GRADE,
        ("mill", "生产企业", "manufacturer"),
        ("productionDate", "生产日期", "production date", _DATE, True, 10, 10),
        ("dyeLot", "缸号", "dye lot", "string", False, 1, 64, {"indexed": True}),
        _CERT,
    ),
    (("C1742", "绢纺和丝织加工"), ("C1751", "化纤织造加工")),
)

DYELOT = Template(
    f"{TEXTILE_NODE}/TPL.TEXTILE.DYELOT.V1",
    "1.0",
    "染色缸号",
    _fields(
        ("dyeLot", "缸号", "dye lot", "string", True, 1, 64, {"indexed": True}),
        _FABRIC_CODE,
        ("productName", "品名", "fabric name"),
        ("colour", "颜色", "colour"),
        ("colourNumber", "色号", "colour number"),
        ("dyeClass", "染料类别", "dye class"),
        ("process", "染色工艺", "dyeing process"),
        ("machineNo", "染缸编号", "dyeing machine"),
        (
            "batchWeightKg",
            "投坯重量(kg)",
            "batch weight (kg)",
            _DEC,
            True,
            1,
            10,
            _range(0.1, 100000, "kg"),
        ),
        ("rollCount", "匹数", "roll count", _INT, True, 1, 5, _range(1, 10000)),
        (
            "colourFastness",
            "耐洗色牢度(级)",
            "wash fastness (grade)",
            "string",
            True,
            1,
            8,
            {"pattern": r"[1-5](-[1-5])?"},
        ),
        ("dyeingPlant", "染整企业", "dyeing plant"),
        ("dyeingDate", "染色日期", "dyeing date", _DATE, True, 10, 10),
        _CERT,
    ),
    (("C1743", "丝印染精加工"), ("C1752", "化纤织物染整精加工")),
)

LIFT = Template(
    f"{ELEVATOR_NODE}/TPL.ELEVATOR.V1",
    "1.0",
    "电梯设备",
    _fields(
        (
            "registrationCode",
            "注册代码",
            "registration code",
            "string",
            True,
            20,
            20,
            {"check": "elevator-registration", "unique": True},
        ),
        _DEVICE_CODE,
        ("equipmentVariety", "设备品种", "equipment variety"),
        ("model", "型号", "model"),
        ("manufacturer", "制造单位", "manufacturer"),
        (
            "ratedLoadKg",
            "额定载重量(kg)",
            "rated load (kg)",
            _DEC,
            True,
            2,
            6,
            _range(100, 50000, "kg"),
        ),
        (
            "ratedSpeedMs",
            "额定速度(m/s)",
            "rated speed (m/s)",
            _DEC,
            True,
            1,
            5,
            _range(0.1, 20, "m/s"),
        ),
        ("floors", "层站数", "floors/stops", _INT, True, 1, 3, _range(2, 200)),
        ("installAddress", "安装地址", "install address", "string", True, 4, 128),
        ("ownerUnit", "使用单位", "owner unit"),
        ("maintenanceUnit", "维保单位", "maintenance unit"),
        ("lastInspectionDate", "最近检验日期", "last inspection", _DATE, True, 10, 10),
        ("nextInspectionDue", "下次检验日期", "next inspection due", _DATE, True, 10, 10),
        (
            "rescueCode",
            "救援识别码",
            "rescue code",
            "string",
            True,
            4,
            8,
            {"pattern": r"[0-9A-Z]{4,8}", "indexed": True},
        ),
        (
            "emergencyHotline",
            "应急救援电话",
            "emergency hotline",
            "string",
            True,
            5,
            16,
            {"pattern": r"[0-9-]{5,16}"},
        ),
    ),
    (("C3435", "电梯、自动扶梯及升降机制造"),),
)

COMPONENT = Template(
    f"{ELEVATOR_NODE}/TPL.ELEVATOR.PART.V1",
    "1.0",
    "电梯部件",
    _fields(
        (
            "partType",
            "部件类型",
            "component type",
            "enum",
            True,
            2,
            16,
            {
                "choices": (
                    "曳引机",
                    "控制柜",
                    "限速器",
                    "安全钳",
                    "门机",
                    "缓冲器",
                    "钢丝绳",
                    "other",
                )
            },
        ),
        ("partModel", "部件型号", "model"),
        ("partSerial", "出厂编号", "serial number", "string", True, 1, 64, {"indexed": True}),
        ("partMaker", "制造单位", "manufacturer"),
        ("typeTestCert", "型式试验证书", "type test certificate", "string", False, 4, 64),
        (
            "installedIn",
            "所属电梯",
            "installed in (lift identifier)",
            "handle",
            False,
            3,
            256,
            {"indexed": True},
        ),
        ("installDate", "安装日期", "install date", _DATE, False, 10, 10),
    ),
    (("C3435", "电梯、自动扶梯及升降机制造"),),
)

MAINTENANCE = Template(
    f"{ELEVATOR_NODE}/TPL.ELEVATOR.MAINT.V1",
    "1.0",
    "电梯维护保养记录",
    _fields(
        _DEVICE_CODE,
        (
            "maintenanceType",
            "保养类型",
            "maintenance type",
            "enum",
            True,
            2,
            16,
            {"choices": ("半月保养", "季度保养", "半年保养", "年度保养", "维修")},
        ),
        ("workDate", "作业日期", "work date", _DATE, True, 10, 10),
        ("maintenanceUnit", "维保单位", "maintenance unit"),
        ("technician", "作业人员", "technician"),
        ("workItems", "保养项目", "items done", "string", True, 1, 256),
        ("result", "结论", "result"),
        ("nextMaintenanceDue", "下次保养日期", "next maintenance due", _DATE, False, 10, 10),
    ),
    (("C4320", "通用设备修理"),),
)

INSPECTION = Template(
    f"{ELEVATOR_NODE}/TPL.ELEVATOR.INSPECT.V1",
    "1.0",
    "电梯定期检验记录",
    _fields(
        _DEVICE_CODE,
        (
            "inspectionType",
            "检验类别",
            "inspection type",
            "enum",
            True,
            2,
            16,
            {"choices": ("定期检验", "监督检验", "首次检验")},
        ),
        ("inspectionDate", "检验日期", "inspection date", _DATE, True, 10, 10),
        ("inspectionBody", "检验机构", "inspection body"),
        ("reportNumber", "报告编号", "report number", "string", True, 4, 64, {"indexed": True}),
        (
            "conclusion",
            "检验结论",
            "conclusion",
            "enum",
            True,
            2,
            16,
            {"choices": ("合格", "复检合格", "不合格")},
        ),
        ("nextInspectionDue", "下次检验日期", "next inspection due", _DATE, True, 10, 10),
        ("report", "检验报告", "report", "url", False, 12, 256),
    ),
    (("M7452", "检测服务"),),
)

EVENT = Template(
    f"{ELEVATOR_NODE}/TPL.ELEVATOR.EVENT.V1",
    "1.0",
    "电梯应急事件",
    _fields(
        _DEVICE_CODE,
        ("eventType", "事件类型", "event type"),
        (
            "rescueCode",
            "救援识别码",
            "rescue code",
            "string",
            True,
            4,
            8,
            {"pattern": r"[0-9A-Z]{4,8}"},
        ),
        ("alarmTime", "报警时间", "alarm time", _TIME, True, 20, 32),
        ("arrivalTime", "到达时间", "arrival time", _TIME, True, 20, 32),
        ("rescueTime", "解救时间", "rescue time", _TIME, True, 20, 32),
        ("trappedPersons", "被困人数", "persons trapped", _INT, True, 1, 3, _range(0, 100)),
        ("rescueUnit", "救援单位", "rescue unit"),
        ("cause", "原因", "cause", "string", False, 1, 256),
    ),
    (("C4320", "通用设备修理"),),
)

SHIPPED: tuple[Template, ...] = (
    YARN,
    ROLL,
    DYELOT,
    LIFT,
    COMPONENT,
    MAINTENANCE,
    INSPECTION,
    EVENT,
)

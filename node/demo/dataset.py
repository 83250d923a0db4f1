"""The ``serve --demo`` dataset: pure data, no I/O and no database code.

A textile node prefix ``88.118`` and an elevator node prefix ``88.119``, the
enterprises under them and sample identifiers shaped like the real thing
(docs/industry-data.md): yarn lot -> greige roll (匹号) -> dye lot (缸号) -> finished roll, and lifts
with their maintenance and emergency records. Every company, person, address and
code is invented; mail addresses use example.com / example.cn only. Values are in
the Handle REST shape (docs/rest-api.md). ``demo_dataset()`` is deterministic: no clock, no
randomness, so a re-seed writes byte-identical records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from node.demo.templates import (
    DYELOT,
    ELEVATOR,
    ELEVATOR_NODE,
    EVENT,
    MAINTENANCE,
    ROLL,
    TEMPLATES,
    TEXTILE_NODE,
    YARN,
    credit_code,
    device_code,
    fabric_code,
    gtin_check_digit,
    registration_code,
)
from protocol.handle import is_under
from protocol.templates import Field, Template
from registry.rows import PrefixStatus

Value = dict[str, Any]


@dataclass(frozen=True)
class DemoEnterprise:
    name: str
    credit_code: str  # GB 32100-2015 unified social credit code, check digit correct
    contact: str
    admin_secret: str  # the HS_SECKEY of the enterprise's <prefix>/ADMIN handles


@dataclass(frozen=True)
class DemoPrefix:
    prefix: str
    credit_code: str  # owner
    status: PrefixStatus


@dataclass(frozen=True)
class DemoHandle:
    handle: str
    values: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoDataset:
    enterprises: list[DemoEnterprise]
    prefixes: list[DemoPrefix]
    handles: list[DemoHandle]


ENABLED = PrefixStatus.ENABLED
AWAITING_REVIEW = PrefixStatus.AWAITING_REVIEW

# Index plan (docs/idis.md): 1 URL, 2 EMAIL, 100 HS_ADMIN, 300 HS_SECKEY, 1000 the template
# body of a template record, 1001 TEMPLATE, 1101+ PARENT trace links, 2000+ template fields.
# Trace links sit outside the 2000+ block so a new template version never renumbers them.
URL_INDEX = 1
EMAIL_INDEX = 2
ADMIN_INDEX = 100
SECKEY_INDEX = 300
TEMPLATE_BODY_INDEX = 1000
TEMPLATE_INDEX = 1001
PARENT_INDEX = 1101
ADMIN_PERMISSIONS = "111111111111"
TRACE_SITE = "https://trace.example.com/h/"

WUJIANG = "320509"  # administrative area code of Wujiang District, Suzhou

OPERATOR = DemoEnterprise(
    "苏州吴江工联标识解析服务有限公司",
    credit_code(WUJIANG, "MA7GK2D0"),
    "顾工 <idnode-ops@example.cn>",
    "demo-node-operator",
)
SILK_MILL = DemoEnterprise(
    "吴江盛泽云绫丝绸织造有限公司",
    credit_code(WUJIANG, "MA1W3L8N"),
    "沈工 <weaving@example.com>",
    "demo-yunling-silk",
)
YARN_MAKER = DemoEnterprise(
    "苏州澜丝化纤科技有限公司",
    credit_code(WUJIANG, "MA20QT4C"),
    "徐工 <yarn-qa@example.com>",
    "demo-lansi-filament",
)
DYE_PLANT = DemoEnterprise(
    "吴江盛泽清漪印染有限公司",
    credit_code(WUJIANG, "MA1Y6R5P"),
    "王工 <dyehouse@example.com>",
    "demo-qingyi-dyeing",
)
LIFT_MAKER = DemoEnterprise(
    "苏州汾湖启恒电梯有限公司",
    credit_code(WUJIANG, "MA4P9E1H"),
    "陆工 <lift-service@example.cn>",
    "demo-qiheng-elevator",
)
LIFT_CARE = DemoEnterprise(
    "苏州吴江稳升电梯维保工程有限公司",
    credit_code(WUJIANG, "MA5B7H3U"),
    "周工 <dispatch@example.cn>",
    "demo-wensheng-maintenance",
)
ENTERPRISES = (OPERATOR, SILK_MILL, YARN_MAKER, DYE_PLANT, LIFT_MAKER, LIFT_CARE)

PREFIXES = (
    DemoPrefix(TEXTILE_NODE, OPERATOR.credit_code, ENABLED),
    DemoPrefix(ELEVATOR_NODE, OPERATOR.credit_code, ENABLED),
    DemoPrefix("88.118.2", SILK_MILL.credit_code, ENABLED),
    DemoPrefix("88.118.3", YARN_MAKER.credit_code, ENABLED),
    DemoPrefix("88.118.5", DYE_PLANT.credit_code, ENABLED),
    # A second prefix for the yarn maker's new texturing (DTY) plant, not yet approved:
    # it has no admin handle and no identifiers until the top-level enables it.
    DemoPrefix("88.118.6", YARN_MAKER.credit_code, AWAITING_REVIEW),
    DemoPrefix("88.119.2", LIFT_MAKER.credit_code, ENABLED),
    DemoPrefix("88.119.3", LIFT_CARE.credit_code, ENABLED),
)

# --- value builders ---------------------------------------------------------------


def string_value(index: int, type_: str, text: str, **extra: Any) -> Value:
    return {"index": index, "type": type_, "data": {"format": "string", "value": text}, **extra}


def admin_value(prefix: str) -> Value:
    admin = {"handle": f"{prefix}/ADMIN", "index": SECKEY_INDEX, "permissions": ADMIN_PERMISSIONS}
    return {"index": ADMIN_INDEX, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}}


def admin_handle(prefix: str, owner: DemoEnterprise) -> DemoHandle:
    email = owner.contact.partition("<")[2].rstrip(">")
    return DemoHandle(
        f"{prefix}/ADMIN",
        [
            string_value(EMAIL_INDEX, "EMAIL", email),
            admin_value(prefix),
            # "1100": readable and writable by an administrator only, never public.
            string_value(SECKEY_INDEX, "HS_SECKEY", owner.admin_secret, permissions="1100"),
        ],
    )


def template_handle(template: Template) -> DemoHandle:
    return DemoHandle(
        template.handle,
        [
            string_value(URL_INDEX, "URL", f"https://example.com/templates/{template.handle}"),
            admin_value(template.prefix),
            string_value(TEMPLATE_BODY_INDEX, "IDIS_TEMPLATE", template.to_json()),
        ],
    )


def _field(template: Template, key: str) -> Field:
    found = template.field(key)
    if found is None:
        raise KeyError(f"template {template.handle} has no field {key!r}")
    return found


def record(
    handle: str,
    template: Template,
    fields: dict[str, str],
    parents: tuple[str, ...] = (),
) -> DemoHandle:
    """A record that follows ``template``: every field at the template's idIndex.

    Fails at import time rather than at seeding time when a field is unknown or a
    required one is missing, so the demo cannot contradict its own templates.
    """
    missing = [f.key for f in template.fields if f.required and f.key not in fields]
    if missing:
        raise ValueError(f"{handle}: required fields {missing} of {template.handle} missing")
    prefix = handle.partition("/")[0]
    values = [
        string_value(URL_INDEX, "URL", TRACE_SITE + quote(handle, safe="/")),
        admin_value(prefix),
        string_value(TEMPLATE_INDEX, "TEMPLATE", template.handle),
    ]
    values += [string_value(PARENT_INDEX + n, "PARENT", p) for n, p in enumerate(parents)]
    values += [string_value(_field(template, k).index, k, v) for k, v in fields.items()]
    return DemoHandle(handle, sorted(values, key=lambda v: int(v["index"])))


# --- textile ----------------------------------------------------------------------


CREPE = {  # 16 momme crepe de chine (真丝双绉), greige
    "fabricCode": fabric_code("201", "1100", "202204", "1010"),
    "productName": "真丝双绉",
    "composition": "100% 桑蚕丝",
    "yarnCount": "经 20/22D×2 桑蚕丝，纬 20/22D×4 强捻",
    "weave": "平纹",
}
PONGEE = {  # polyester pongee (涤纶春亚纺), the Shengze staple
    "fabricCode": fabric_code("301", "2100", "075072", "1010"),
    "productName": "涤纶春亚纺",
    "composition": "100% 涤纶",
    "yarnCount": "经 75D/72F FDY，纬 75D/72F DTY",
    "weave": "平纹",
}

GTIN = "0690123456789" + gtin_check_digit("0690123456789")
FDY_LOT = f"88.118.3/01/{GTIN}/10/LOT2026A"  # a GS1 Digital Link path as the suffix
DTY_LOT = "88.118.3/YARN-2026-0412"
SILK_LOT = "88.118.5/缸号-20260315-07"  # a UTF-8 suffix, as dye houses write it
PONGEE_LOT = "88.118.5/DL-20260316-02"


def yarn_lot(handle: str, process: str, lot: str, kg: str, **extra: str) -> DemoHandle:
    return record(
        handle,
        YARN,
        {
            "productName": f"涤纶{process}长丝",
            "yarnSpec": "75D/72F",
            "composition": "100% 涤纶",
            "process": process,
            "lustre": "半光",
            "lotNumber": lot,
            "grade": "AA",
            "netWeightKg": kg,
            "bobbinCount": str(int(kg) // 10),
            "mill": YARN_MAKER.name,
            "productionDate": "2026-02-20",
            **extra,
        },
    )


def greige_roll(
    number: str,
    fabric: dict[str, str],
    width: str,
    weight: str,
    length: str,
    day: str,
    parents: tuple[str, ...] = (),
) -> DemoHandle:
    return record(
        f"88.118.2/ROLL-2026-{number}",
        ROLL,
        {
            **fabric,
            "stage": "坯布",
            "widthCm": width,
            "weightGsm": weight,
            "colour": "本白",
            "rollNumber": f"P2026{number}",
            "rollLengthM": length,
            "grade": "一等品",
            "mill": SILK_MILL.name,
            "productionDate": day,
        },
        parents,
    )


def dye_lot(
    handle: str, fabric: dict[str, str], parents: tuple[str, ...], **fields: str
) -> DemoHandle:
    lot = handle.partition("/")[2]
    return record(
        handle,
        DYELOT,
        {
            "dyeLot": lot,
            "fabricCode": fabric["fabricCode"],
            "productName": fabric["productName"],
            "rollCount": str(len(parents)),
            "dyeingPlant": DYE_PLANT.name,
            "certificate": f"https://example.com/reports/{DYE_PLANT.credit_code}/{quote(lot)}.pdf",
            **fields,
        },
        parents,
    )


def finished_roll(
    number: str, fabric: dict[str, str], lot: str, colour: str, width: str, weight: str, length: str
) -> DemoHandle:
    return record(
        f"88.118.5/FIN-2026-{number}",
        ROLL,
        {
            **fabric,
            "stage": "成品",
            "widthCm": width,
            "weightGsm": weight,
            "colour": colour,
            "rollNumber": f"C2026{number}",
            "rollLengthM": length,
            "grade": "优等品",
            "mill": DYE_PLANT.name,
            "productionDate": "2026-03-18",
            "dyeLot": lot.partition("/")[2],
            "certificate": f"https://example.com/reports/{DYE_PLANT.credit_code}/FIN-{number}.pdf",
        },
        (lot,),
    )


def textile_handles() -> list[DemoHandle]:
    silk = (
        greige_roll("000123", CREPE, "114", "69", "50.0", "2026-03-02"),
        greige_roll("000124", CREPE, "114", "69", "49.6", "2026-03-02"),
    )
    pongee = (
        greige_roll("000311", PONGEE, "150", "62", "100.0", "2026-03-05", (FDY_LOT, DTY_LOT)),
        greige_roll("000312", PONGEE, "150", "62", "100.0", "2026-03-05", (FDY_LOT, DTY_LOT)),
    )
    silk_lot = dye_lot(
        SILK_LOT,
        CREPE,
        tuple(r.handle for r in silk),
        colour="藏青",
        colourNumber="QY-N1907",
        dyeClass="酸性染料",
        process="绳状溢流染色 95℃",
        machineNo="J-07",
        batchWeightKg="7.8",
        colourFastness="4",
        dyeingDate="2026-03-15",
    )
    pongee_lot = dye_lot(
        PONGEE_LOT,
        PONGEE,
        tuple(r.handle for r in pongee),
        colour="黑",
        colourNumber="QY-K0001",
        dyeClass="分散染料",
        process="高温高压溢流染色 130℃",
        machineNo="G-02",
        batchWeightKg="18.6",
        colourFastness="4-5",
        dyeingDate="2026-03-16",
    )
    return [
        yarn_lot(FDY_LOT, "FDY", "LOT2026A", "960", gtin=GTIN),
        yarn_lot(DTY_LOT, "DTY", "2026-0412", "1200"),
        *silk,
        *pongee,
        silk_lot,
        pongee_lot,
        finished_roll("000501", CREPE, SILK_LOT, "藏青", "112", "71", "47.5"),
        finished_roll("000502", CREPE, SILK_LOT, "藏青", "112", "71", "47.0"),
        finished_roll("000503", PONGEE, PONGEE_LOT, "黑", "148", "64", "96.5"),
        finished_roll("000504", PONGEE, PONGEE_LOT, "黑", "148", "64", "97.0"),
    ]


# --- elevators --------------------------------------------------------------------

# Invented 5-digit manufacturer code in the lifetime device code.
LIFT_MAKER_CODE = "03217"
VARIETIES = {"3110": "曳引驱动乘客电梯", "3120": "曳引驱动载货电梯"}  # TSG 08 varieties


@dataclass(frozen=True)
class _Lift:
    variety: str
    year_month: str  # of registration; the device code uses its year
    device_seq: str
    registration_seq: str
    fields: tuple[tuple[str, str], ...]

    @property
    def device_code(self) -> str:
        return device_code(self.variety, LIFT_MAKER_CODE, self.year_month[:4], self.device_seq)

    @property
    def handle(self) -> str:
        return f"88.119.2/{self.device_code}"

    def rescue_code(self) -> str:
        return dict(self.fields)["rescueCode"]

    def to_handle(self) -> DemoHandle:
        return record(
            self.handle,
            ELEVATOR,
            {
                "registrationCode": registration_code(
                    self.variety, WUJIANG, self.year_month, self.registration_seq
                ),
                "deviceCode": self.device_code,
                "equipmentVariety": VARIETIES[self.variety],
                "manufacturer": LIFT_MAKER.name,
                "maintenanceUnit": LIFT_CARE.name,
                "emergencyHotline": "96333",
                **dict(self.fields),
            },
        )


def _lift(variety: str, ym: str, dev: str, reg: str, **fields: str) -> _Lift:
    return _Lift(variety, ym, dev, reg, tuple(fields.items()))


_HOMES = "苏州市吴江区松陵街道芦荡路 188 号 悦澄花园 3 幢"
LIFTS = (
    _lift(
        "3110",
        "202405",
        "00158",
        "0012",
        model="QH-MRL1000/1.75",
        ratedLoadKg="1000",
        ratedSpeedMs="1.75",
        floors="18",
        installAddress=_HOMES + " 1 单元",
        ownerUnit="苏州吴江悦澄物业管理有限公司",
        lastInspectionDate="2025-05-20",
        nextInspectionDue="2026-05-19",
        rescueCode="30561",
    ),
    _lift(
        "3110",
        "202405",
        "00159",
        "0013",
        model="QH-MRL1000/1.75",
        ratedLoadKg="1000",
        ratedSpeedMs="1.75",
        floors="18",
        installAddress=_HOMES + " 2 单元",
        ownerUnit="苏州吴江悦澄物业管理有限公司",
        lastInspectionDate="2025-05-20",
        nextInspectionDue="2026-05-19",
        rescueCode="30562",
    ),
    _lift(
        "3120",
        "202503",
        "00021",
        "0004",
        model="QH-F3000/0.5",
        ratedLoadKg="3000",
        ratedSpeedMs="0.5",
        floors="4",
        installAddress="苏州市吴江区盛泽镇印染产业园纬七路 6 号 成品仓库",
        ownerUnit=DYE_PLANT.name,
        lastInspectionDate="2025-04-08",
        nextInspectionDue="2026-04-07",
        rescueCode="41207",
    ),
    _lift(
        "3110",
        "202508",
        "00087",
        "0031",
        model="QH-MR1350/2.0",
        ratedLoadKg="1350",
        ratedSpeedMs="2.0",
        floors="13",
        installAddress="苏州市吴江区黎里镇汾湖高新区启航路 58 号 研发楼",
        ownerUnit="苏州汾湖示范科创园管理有限公司",
        lastInspectionDate="2025-08-26",
        nextInspectionDue="2026-08-25",
        rescueCode="52318",
    ),
)


def maintenance(
    number: str, lift: _Lift, kind: str, day: str, items: str, next_due: str
) -> DemoHandle:
    return record(
        f"88.119.3/MR-2026-{number}",
        MAINTENANCE,
        {
            "deviceCode": lift.device_code,
            "maintenanceType": kind,
            "workDate": day,
            "maintenanceUnit": LIFT_CARE.name,
            "technician": "钱师傅（T 证 DEMO-0173）",
            "workItems": items,
            "result": "合格",
            "nextMaintenanceDue": next_due,
        },
        (lift.handle,),
    )


def elevator_handles() -> list[DemoHandle]:
    half_month = "机房、轿厢、层门、底坑共 31 项（TSG T5002 附件 A 半月项目）"
    quarter = "半月项目及曳引绳、制动器间隙等季度项目"
    trapped = LIFTS[0]
    event = record(
        "88.119.3/EV-2026-000042",
        EVENT,
        {
            "deviceCode": trapped.device_code,
            "eventType": "困人",
            "rescueCode": trapped.rescue_code(),
            "alarmTime": "2026-03-10T19:42:05+08:00",
            "arrivalTime": "2026-03-10T19:58:40+08:00",
            "rescueTime": "2026-03-10T20:03:15+08:00",
            "trappedPersons": "2",
            "rescueUnit": LIFT_CARE.name,
            "cause": "层门门锁回路接触不良，已更换触点",
        },
        (trapped.handle,),
    )
    return [
        *(lift.to_handle() for lift in LIFTS),
        maintenance("000871", LIFTS[0], "半月保养", "2026-03-03", half_month, "2026-03-17"),
        maintenance("000872", LIFTS[1], "半月保养", "2026-03-03", half_month, "2026-03-17"),
        maintenance("000915", LIFTS[2], "季度保养", "2026-03-09", quarter, "2026-03-23"),
        event,
    ]


def demo_dataset(only_under: Sequence[str] = (), *, top_level: bool = False) -> DemoDataset:
    """The whole demo: enterprises, prefixes and every handle record, freshly built.
    ``only_under``: just what lies under these prefixes (one node of a topology: the
    textile node 88.118, the elevator node 88.119). ``top_level``: a top-level node holds
    no secondary's identifiers: its own prefixes (``only_under``), owned by the operator,
    and their admin handles, nothing more."""
    if top_level:
        own = [DemoPrefix(p, OPERATOR.credit_code, ENABLED) for p in only_under]
        return DemoDataset([OPERATOR], own, [admin_handle(p.prefix, OPERATOR) for p in own])
    owners = {e.credit_code: e for e in ENTERPRISES}
    admins = [
        admin_handle(p.prefix, owners[p.credit_code]) for p in PREFIXES if p.status == ENABLED
    ]
    data = DemoDataset(
        enterprises=list(ENTERPRISES),
        prefixes=list(PREFIXES),
        handles=[
            *admins,
            *(template_handle(t) for t in TEMPLATES),
            *textile_handles(),
            *elevator_handles(),
        ],
    )
    if not only_under:
        return data

    def kept(prefix: str) -> bool:
        return any(is_under(prefix, p) for p in only_under)

    prefixes = [p for p in data.prefixes if kept(p.prefix)]
    owners_kept = {p.credit_code for p in prefixes}
    return DemoDataset(
        [e for e in data.enterprises if e.credit_code in owners_kept],
        prefixes,
        [h for h in data.handles if kept(h.handle.partition("/")[0])],
    )

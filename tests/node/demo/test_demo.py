"""The demo dataset is internally consistent and every value is valid REST shape.

The checks here are written independently of the builders in node.demo.dataset (the credit
code check, for one, is re-implemented from GB 32100-2015), so a builder bug cannot
hide behind itself.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from node.demo import dataset as demo
from node.demo.dataset import DemoDataset, DemoHandle, demo_dataset
from node.demo.templates import credit_check_char
from protocol.handle import is_under, normalise, parse_handle, parse_prefix
from protocol.jsonvalues import values_from_json
from protocol.templates import Template

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# The worked example printed in GB 32100-2015 itself.
PUBLISHED_CODE = "91350100M000100Y43"


def credit_code_ok(code: str) -> bool:
    if len(code) != 18 or any(c not in ALPHABET for c in code):
        return False
    total = sum(ALPHABET.index(c) * w for c, w in zip(code[:17], WEIGHTS, strict=False))
    return ALPHABET[(31 - total % 31) % 31] == code[17]


def org_code_ok(code9: str) -> bool:
    """GB 11714 organisation code (positions 9-17 of a credit code)."""
    total = sum(int(c, 36) * w for c, w in zip(code9[:8], (3, 7, 9, 10, 5, 8, 4, 2), strict=False))
    check = 11 - total % 11
    return code9[8] == {10: "X", 11: "0"}.get(check, str(check))


@pytest.fixture(scope="module")
def data() -> DemoDataset:
    return demo_dataset()


@pytest.fixture(scope="module")
def by_handle(data: DemoDataset) -> dict[str, DemoHandle]:
    return {h.handle: h for h in data.handles}


def values_of(record: DemoHandle, type_: str) -> list[dict[str, Any]]:
    return [v for v in record.values if v["type"] == type_]


def text(value: dict[str, Any]) -> str:
    data = value["data"]
    return data if isinstance(data, str) else str(data["value"])


def fields(record: DemoHandle) -> dict[str, str]:
    return {v["type"]: text(v) for v in record.values if v["index"] >= 2000}


def template_of(record: DemoHandle, by_handle: dict[str, DemoHandle]) -> dict[str, Any]:
    (ref,) = values_of(record, "TEMPLATE")
    (body,) = values_of(by_handle[text(ref)], "IDIS_TEMPLATE")
    result: dict[str, Any] = json.loads(text(body))
    return result


def records_following(data: DemoDataset, suffix: str) -> list[DemoHandle]:
    return [
        h for h in data.handles if any(text(v).endswith(suffix) for v in values_of(h, "TEMPLATE"))
    ]


# --- determinism and purity --------------------------------------------------------


def test_same_dataset_every_call() -> None:
    first, second = demo_dataset(), demo_dataset()
    assert first == second
    for a, b in zip(first.handles, second.handles, strict=True):
        assert json.dumps(a.values, ensure_ascii=False) == json.dumps(b.values, ensure_ascii=False)


def test_calls_do_not_share_mutable_values() -> None:
    first = demo_dataset()
    first.handles[0].values.clear()
    assert demo_dataset().handles[0].values


@pytest.mark.parametrize("module", ["dataset.py", "templates.py"])
def test_module_does_no_io(module: str) -> None:
    source = (Path(demo.__file__).parent / module).read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "asyncpg", "random", "time", "datetime", "os"}


# --- enterprises and prefixes ------------------------------------------------------


def test_check_matches_the_published_example() -> None:
    assert credit_code_ok(PUBLISHED_CODE)
    assert org_code_ok(PUBLISHED_CODE[8:17])
    assert credit_check_char(PUBLISHED_CODE[:17]) == PUBLISHED_CODE[17]


def test_every_credit_code_verifies(data: DemoDataset) -> None:
    codes = [e.credit_code for e in data.enterprises]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert credit_code_ok(code), code
        assert org_code_ok(code[8:17]), code
        assert code[:2] == "91" and code[2:8] == "320509", code


@pytest.mark.parametrize("code", [PUBLISHED_CODE, *(e.credit_code for e in demo.ENTERPRISES)])
def test_any_single_change_breaks_the_check(code: str) -> None:
    for pos in range(18):
        for c in ALPHABET:
            if c != code[pos]:
                assert not credit_code_ok(code[:pos] + c + code[pos + 1 :]), (pos, c)


def test_enterprises_are_demo_only(data: DemoDataset) -> None:
    for e in data.enterprises:
        assert re.search(r"有限公司$", e.name), e.name
        assert re.fullmatch(r"\S+ <[\w.-]+@example\.(com|cn)>", e.contact), e.contact
        assert e.admin_secret.startswith("demo-")
    assert len({e.admin_secret for e in data.enterprises}) == len(data.enterprises)


def test_prefixes(data: DemoDataset) -> None:
    owners = {e.credit_code for e in data.enterprises}
    names = [p.prefix for p in data.prefixes]
    assert len(set(map(normalise, names))) == len(names)
    assert {"88.118", "88.119"} <= set(names)
    for p in data.prefixes:
        assert parse_prefix(p.prefix) == p.prefix
        assert p.credit_code in owners
        assert p.status in range(6)
        assert is_under(p.prefix, "88.118") or is_under(p.prefix, "88.119")
    node_owner = {p.credit_code for p in data.prefixes if p.prefix in ("88.118", "88.119")}
    assert len(node_owner) == 1  # one operator runs both node prefixes
    assert [p.status for p in data.prefixes].count(4) == 1
    textile = [p for p in data.prefixes if p.prefix.startswith("88.118.")]
    elevator = [p for p in data.prefixes if p.prefix.startswith("88.119.")]
    assert len({p.credit_code for p in textile}) >= 2 and len(elevator) == 2


# --- handles and values ------------------------------------------------------------


def test_handles_parse_and_live_under_enabled_prefixes(data: DemoDataset) -> None:
    enabled = {p.prefix for p in data.prefixes if p.status == 1}
    keys = [normalise(h.handle) for h in data.handles]
    assert len(set(keys)) == len(keys)
    for h in data.handles:
        parsed = parse_handle(h.handle)
        assert parsed.text == h.handle
        assert parsed.prefix in {p.prefix for p in data.prefixes}
        assert parsed.prefix in enabled, h.handle
        assert h.values


def test_special_suffixes_present(data: DemoDataset) -> None:
    suffixes = [parse_handle(h.handle).suffix for h in data.handles]
    assert any(not s.isascii() for s in suffixes)
    (gs1,) = [s for s in suffixes if "/" in s]
    match = re.fullmatch(r"01/(\d{14})/10/(\w+)", gs1)
    assert match
    gtin = match.group(1)
    # GTIN-14: weights 3,1,3,... from the left of the 13-digit body (3 on its last digit).
    total = sum(int(d) * (1 if n % 2 else 3) for n, d in enumerate(gtin[:13]))
    assert (10 - total % 10) % 10 == int(gtin[13])


def check_value(value: dict[str, Any]) -> None:
    assert set(value) <= {"index", "type", "data", "ttl", "permissions"}, value
    assert type(value["index"]) is int and 0 <= value["index"] <= 0xFFFFFFFF
    assert isinstance(value["type"], str) and value["type"]
    if "ttl" in value:
        assert type(value["ttl"]) is int
    if "permissions" in value:
        assert re.fullmatch("[01]{4}", value["permissions"])
    data = value["data"]
    if isinstance(data, str):
        return
    assert set(data) == {"format", "value"}
    fmt, payload = data["format"], data["value"]
    if fmt == "admin":
        assert set(payload) == {"handle", "index", "permissions"}
        parse_handle(payload["handle"])
        assert type(payload["index"]) is int
        assert re.fullmatch("[01]{12}", payload["permissions"])
    elif fmt == "base64":
        assert re.fullmatch(r"[A-Za-z0-9+/]*=*", payload)
    elif fmt == "hex":
        assert re.fullmatch(r"([0-9A-Fa-f]{2})*", payload)
    else:
        assert fmt == "string" and isinstance(payload, str) and payload


def test_values_are_rest_shaped_with_unique_indexes(data: DemoDataset) -> None:
    for h in data.handles:
        for value in h.values:
            check_value(value)
        indexes = [v["index"] for v in h.values]
        assert len(set(indexes)) == len(indexes), h.handle
        json.dumps(h.values)  # serialisable as is


def test_admin_handles(data: DemoDataset, by_handle: dict[str, DemoHandle]) -> None:
    owners = {e.credit_code: e for e in data.enterprises}
    for p in data.prefixes:
        admin = by_handle.get(f"{p.prefix}/ADMIN")
        if p.status != 1:
            assert admin is None
            continue
        assert admin is not None, p.prefix
        (seckey,) = values_of(admin, "HS_SECKEY")
        assert seckey["index"] == 300 and seckey["permissions"] == "1100"
        assert text(seckey) == owners[p.credit_code].admin_secret
        (hs_admin,) = values_of(admin, "HS_ADMIN")
        assert hs_admin["index"] == 100
        assert hs_admin["data"]["value"] == {
            "handle": f"{p.prefix}/ADMIN",
            "index": 300,
            "permissions": "111111111111",
        }


def test_every_hs_admin_names_an_existing_admin(
    data: DemoDataset, by_handle: dict[str, DemoHandle]
) -> None:
    for h in data.handles:
        (hs_admin,) = values_of(h, "HS_ADMIN")
        assert hs_admin["index"] == 100
        target = hs_admin["data"]["value"]
        assert target["handle"] in by_handle, h.handle
        assert parse_handle(target["handle"]).prefix == parse_handle(h.handle).prefix
        key = [v for v in by_handle[target["handle"]].values if v["index"] == target["index"]]
        assert [v["type"] for v in key] == ["HS_SECKEY"]
    assert not any(  # secrets only in admin handles
        values_of(h, "HS_SECKEY") for h in data.handles if not h.handle.endswith("/ADMIN")
    )


# --- templates and records ---------------------------------------------------------


METADATA_KEYS = {
    "type",
    "minLength",
    "maxLength",
    "min",
    "max",
    "unit",
    "pattern",
    "enum",
    "check",
    "unique",
    "indexed",
}


def test_templates_describe_themselves(data: DemoDataset) -> None:
    templates = [h for h in data.handles if values_of(h, "IDIS_TEMPLATE")]
    assert {parse_handle(h.handle).suffix for h in templates} >= {
        "TPL.TEXTILE.ROLL.V1",
        "TPL.TEXTILE.DYELOT.V1",
        "TPL.ELEVATOR.V1",
        "TPL.ELEVATOR.MAINT.V1",
    }
    for h in templates:
        (body,) = values_of(h, "IDIS_TEMPLATE")
        tpl = json.loads(text(body))
        assert tpl["prefix"] == parse_handle(h.handle).prefix in ("88.118", "88.119")
        assert tpl["version"] and tpl["items"]
        for cat in tpl["industryCategory"]:
            assert re.fullmatch(r"[A-T]\d{4}", cat["code"]) and cat["name"]  # GB/T 4754
        idx = [i["idIndex"] for i in tpl["items"]]
        assert len(set(idx)) == len(idx) and min(idx) >= 2000
        for item in tpl["items"]:
            assert set(item) >= {"name", "idType", "idIndex", "required", "metadata"}
            meta = item["metadata"]
            assert {"type", "minLength", "maxLength"} <= set(meta) <= METADATA_KEYS
            assert 0 < meta["minLength"] <= meta["maxLength"]
        assert Template.from_json(text(body), h.handle).to_json() == text(body)


def test_records_follow_their_templates(
    data: DemoDataset, by_handle: dict[str, DemoHandle]
) -> None:
    records = [h for h in data.handles if values_of(h, "TEMPLATE")]
    assert len(records) >= 14
    for h in records:
        (ref,) = values_of(h, "TEMPLATE")
        assert ref["index"] == 1001
        tpl = template_of(h, by_handle)
        items = {i["idIndex"]: i for i in tpl["items"]}
        present = {v["index"]: v for v in h.values}
        for index, item in items.items():
            if item["required"]:
                assert index in present, (h.handle, item["idType"])
        for index, value in present.items():
            if index < 2000:
                continue
            item = items[index]  # no business field outside the template
            assert value["type"] == item["idType"], (h.handle, index)
            n = len(text(value))
            meta = item["metadata"]
            assert meta["minLength"] <= n <= meta["maxLength"], (h.handle, item["idType"])
            if meta["type"] == "date":
                assert re.fullmatch(r"20\d\d-[01]\d-[0-3]\d", text(value))
            elif meta["type"] == "url":
                assert re.fullmatch(r"https://[\w.-]*example\.(com|cn)/\S+", text(value))
        # ...and every rule of it (types, ranges, enums, code structures).
        template = Template.from_json(json.dumps(tpl))
        assert template.problems(values_from_json(h.values)) == [], h.handle
        (url,) = values_of(h, "URL")
        assert url["index"] == 1 and text(url).startswith("https://")


def test_trace_links_resolve(data: DemoDataset, by_handle: dict[str, DemoHandle]) -> None:
    for h in data.handles:
        for parent in values_of(h, "PARENT"):
            assert text(parent) in by_handle, (h.handle, text(parent))

    def parents(h: DemoHandle) -> list[DemoHandle]:
        return [by_handle[text(v)] for v in values_of(h, "PARENT")]

    finished = [h for h in records_following(data, "ROLL.V1") if fields(h)["stage"] == "成品"]
    assert finished
    for roll in finished:
        (lot,) = parents(roll)
        assert template_of(lot, by_handle)["handle"].endswith("DYELOT.V1")
        assert fields(lot)["dyeLot"] == fields(roll)["dyeLot"]
        assert fields(lot)["fabricCode"] == fields(roll)["fabricCode"]
        greige = parents(lot)
        assert len(greige) == int(fields(lot)["rollCount"]) >= 1
        for g in greige:
            assert fields(g)["stage"] == "坯布"
            assert fields(g)["fabricCode"] == fields(roll)["fabricCode"]


def test_textile_fields(data: DemoDataset) -> None:
    rolls = records_following(data, "TEXTILE.ROLL.V1")
    lots = records_following(data, "TEXTILE.DYELOT.V1")
    yarns = records_following(data, "TEXTILE.YARN.V1")
    assert 8 <= len(rolls) + len(lots) + len(yarns) <= 15
    compositions = {fields(h)["composition"] for h in rolls}
    assert {"100% 桑蚕丝", "100% 涤纶"} <= compositions
    for h in rolls + lots:
        assert re.fullmatch(r"\d{17}", fields(h)["fabricCode"])


def test_elevator_codes(data: DemoDataset, by_handle: dict[str, DemoHandle]) -> None:
    lifts = records_following(data, "/TPL.ELEVATOR.V1")
    others = records_following(data, "MAINT.V1") + records_following(data, "EVENT.V1")
    assert len(lifts) >= 3 and 6 <= len(lifts) + len(others) <= 10
    for lift in lifts:
        f = fields(lift)
        reg, dev = f["registrationCode"], f["deviceCode"]
        assert re.fullmatch(r"\d{20}", reg) and reg[4:10] == "320509"
        assert 1 <= int(reg[14:16]) <= 12 and reg[10:12] == "20"
        assert re.fullmatch(r"\d{18}", dev) and dev[9:11] == "20"
        assert reg[:4] == dev[:4]  # same equipment variety
        assert f["emergencyHotline"] == "96333"
        assert f["lastInspectionDate"] < f["nextInspectionDue"]
    for record in others:
        (parent,) = values_of(record, "PARENT")
        lift = by_handle[text(parent)]
        assert lift in lifts
        assert fields(record)["deviceCode"] == fields(lift)["deviceCode"]
    events = records_following(data, "EVENT.V1")
    assert events
    for event in events:
        f = fields(event)
        assert f["alarmTime"] < f["arrivalTime"] < f["rescueTime"]
        lift = by_handle[text(values_of(event, "PARENT")[0])]
        assert f["rescueCode"] == fields(lift)["rescueCode"]

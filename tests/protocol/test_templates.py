"""protocol.templates: the template model, its JSON form, and the validation of a record
that cites one (docs/industry-data.md). Each field type and rule is checked with values
it takes and values it refuses, and the exact rule the Problem carries; template bodies
that are not usable templates are refused with a TemplateError saying why."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from node.demo.dataset import GTIN, LIFTS
from node.templates.shipped import LIFT, ROLL, SHIPPED, YARN
from protocol.codes import ResponseCode
from protocol.templates import (
    CITE_INDEX,
    CITE_TYPE,
    MAX_FIELDS,
    MAX_VALUE_CHARS,
    TYPES,
    Field,
    Problem,
    Template,
    TemplateError,
    TemplateViolation,
    cited,
)
from protocol.values import HandleValue
from tests.node.templates_support import roll_fields

HANDLE = "88.118/TPL.TEST.V1"


def item(key: str = "v", index: int = 2000, required: bool = True, **meta: Any) -> dict[str, Any]:
    return {"idType": key, "idIndex": index, "required": required, "metadata": meta}


def template(*items: dict[str, Any], handle: str = HANDLE) -> Template:
    return Template.from_json({"handle": handle, "items": list(items)})


def rule(meta: dict[str, Any], text: str) -> str | None:
    """The rule a one-field template names for ``text``, or None when it takes it."""
    problems = template(item(**meta)).problems([HandleValue(2000, "v", text.encode("utf-8"))])
    if not problems:
        return None
    [problem] = problems
    assert (problem.key, problem.index, problem.value) == ("v", 2000, text)
    return problem.rule


def values(t: Template, **fields: str) -> list[HandleValue]:
    return t.record(fields)


# --- field types ---------------------------------------------------------------------

INTEGER = {"type": "integer"}
COUNT = {"type": "integer", "min": 1, "max": 100000}
KG = {"type": "decimal", "unit": "kg", "min": 0.001, "max": 100000}
DATE = {"type": "date"}
DATETIME = {"type": "datetime"}
PROCESS = {"type": "enum", "enum": ["FDY", "DTY", "POY"]}
URL = {"type": "url"}
REF = {"type": "handle"}

NOT_DECIMAL_KG = "not a decimal number (in kg, without the unit)"
NOT_DATE = "not a date (YYYY-MM-DD)"
NOT_DATETIME = "not a date and time (RFC 3339, e.g. 2026-03-15T08:30:00+08:00)"
NO_OFFSET = "has no UTC offset (RFC 3339 needs one, e.g. +08:00)"
NOT_HTTP = "not an http(s) URL"

TYPE_CASES = [
    # string
    ({}, "涤纶春亚纺", None),
    ({}, "", "is empty"),
    ({}, " \t ", "is empty"),
    # integer
    (INTEGER, "42", None),
    (INTEGER, "-7", None),
    (INTEGER, "+3", None),
    (INTEGER, "0", None),
    (INTEGER, "9" * 18, None),
    (INTEGER, "9" * 19, "not an integer"),
    (INTEGER, "4.2", "not an integer"),
    (INTEGER, "1e3", "not an integer"),
    (INTEGER, "0x1F", "not an integer"),
    (INTEGER, " 42", "not an integer"),
    (INTEGER, "", "not an integer"),
    (INTEGER, "４２", "not an integer"),  # full-width digits
    (INTEGER, "٤٢", "not an integer"),  # Arabic-Indic digits
    (COUNT, "1", None),
    (COUNT, "100000", None),
    (COUNT, "0", "below the minimum 1"),
    (COUNT, "-5", "below the minimum 1"),
    (COUNT, "100001", "above the maximum 100000"),
    # decimal, with a unit
    (KG, "960", None),
    (KG, "0.5", None),
    (KG, ".5", None),
    (KG, "12.", None),
    (KG, "0.001", None),
    (KG, "100000", None),
    (KG, "100000.000", None),
    (KG, "960kg", NOT_DECIMAL_KG),
    (KG, "960 kg", NOT_DECIMAL_KG),
    (KG, "1,5", NOT_DECIMAL_KG),
    (KG, "1e3", NOT_DECIMAL_KG),
    (KG, "NaN", NOT_DECIMAL_KG),
    (KG, "Infinity", NOT_DECIMAL_KG),
    (KG, ".", NOT_DECIMAL_KG),
    (KG, "٩٦٠", NOT_DECIMAL_KG),
    (KG, "0.0001", "below the minimum 0.001 kg"),
    (KG, "-1", "below the minimum 0.001 kg"),
    (KG, "100000.01", "above the maximum 100000 kg"),
    ({"type": "decimal"}, "abc", "not a decimal number"),
    ({"type": "number"}, "1.5", None),  # the first demo templates' name for decimal
    ({"type": "number"}, "abc", "not a decimal number"),
    # date
    (DATE, "2026-03-18", None),
    (DATE, "2024-02-29", None),
    (DATE, "yesterday", NOT_DATE),
    (DATE, "2026-02-30", NOT_DATE),
    (DATE, "2025-02-29", NOT_DATE),
    (DATE, "2026-13-01", NOT_DATE),
    (DATE, "20260318", NOT_DATE),
    (DATE, "2026-W11-3", NOT_DATE),  # ISO 8601 week date, not YYYY-MM-DD
    (DATE, "2026-3-18", NOT_DATE),
    (DATE, "2026/03/18", NOT_DATE),
    (DATE, "2026-03-18T08:00", NOT_DATE),
    (DATE, "２０２６-03-18", NOT_DATE),
    # datetime, with an offset
    (DATETIME, "2026-03-15T08:30:00+08:00", None),
    (DATETIME, "2026-03-15T00:30:00Z", None),
    (DATETIME, "2026-03-15T00:30:00.25-05:00", None),
    (DATETIME, "2026-03-15 08:30:00+08:00", None),  # RFC 3339 section 5.6 allows the space
    (DATETIME, "2026-03-15t00:30:00z", None),
    (DATETIME, "2026-03-15T08:30:00", NO_OFFSET),
    (DATETIME, "2026-03-15T08:30:00.5", NO_OFFSET),
    (DATETIME, "2026-03-15", NOT_DATETIME),
    (DATETIME, "tomorrow", NOT_DATETIME),
    (DATETIME, "2026-03-15T08:30+08:00", NOT_DATETIME),  # no seconds
    (DATETIME, "20260315T083000+0800", NOT_DATETIME),  # ISO 8601 basic form
    (DATETIME, "2026-03-15T08:30:00+0800", NOT_DATETIME),
    (DATETIME, "2026-W11-7T08:30:00+08:00", NOT_DATETIME),
    (DATETIME, "2026-03-15T25:00:00+08:00", NOT_DATETIME),
    (DATETIME, "2026-02-30T08:30:00+08:00", NOT_DATETIME),
    (DATETIME, "2026-03-15T08:30:00+24:00", NOT_DATETIME),
    # enum
    (PROCESS, "DTY", None),
    (PROCESS, "dty", "not one of FDY, DTY, POY"),
    (PROCESS, "DTY ", "not one of FDY, DTY, POY"),
    (PROCESS, "", "not one of FDY, DTY, POY"),
    # url: http and https only
    (URL, "https://example.com/reports/FIN-000001.pdf", None),
    (URL, "http://example.com", None),
    (URL, "HTTPS://EXAMPLE.COM/X", None),
    (URL, "https://例子.测试/报告/缸号-07.pdf", None),
    (URL, "ftp://example.com/report.pdf", NOT_HTTP),
    (URL, "mailto:qa@example.com", NOT_HTTP),
    (URL, "javascript:alert(1)", NOT_HTTP),
    (URL, "example.com/report.pdf", NOT_HTTP),
    (URL, "https://", NOT_HTTP),
    (URL, "https:///report.pdf", NOT_HTTP),
    (URL, "https://example.com/a b.pdf", NOT_HTTP),
    (URL, "https://example.com/\nreport.pdf", NOT_HTTP),  # urlsplit would drop the \n
    (URL, "https://exa\tmple.com/", NOT_HTTP),
    (URL, "https://[::1/report.pdf", "not a URL"),
    # handle reference
    (REF, "88.119.2/311003217202400158", None),
    (REF, "88.118.3/01/06901234567892/10/LOT2026A", None),
    (REF, "88.118.5/缸号-20260315-07", None),
    (REF, "LOT2026A", "not an identifier: handle 'LOT2026A' has no '/' between prefix and suffix"),
    (REF, "/LOT2026A", "not an identifier: handle '/LOT2026A' has an empty prefix before '/'"),
    (REF, "88.118/", "not an identifier: handle '88.118/' has an empty suffix after '/'"),
    (
        REF,
        "88.118/a\x01b",
        "not an identifier: handle contains control character U+0001 at position 8",
    ),
]


@pytest.mark.parametrize(("meta", "text", "expected"), TYPE_CASES)
def test_each_field_type_takes_its_values_and_names_what_is_wrong(
    meta: dict[str, Any], text: str, expected: str | None
) -> None:
    assert rule(meta, text) == expected


def test_every_type_is_covered_here() -> None:
    assert {m.get("type", "string") for m, _, _ in TYPE_CASES} - {"number"} == set(TYPES)


# --- rules ---------------------------------------------------------------------------

WASH_FASTNESS = {"pattern": "[1-5](-[1-5])?"}

RULE_CASES = [
    # length, in characters (not UTF-8 bytes)
    ({"minLength": 3, "maxLength": 5}, "abc", None),
    ({"minLength": 3, "maxLength": 5}, "abcde", None),
    ({"minLength": 3, "maxLength": 5}, "缸号缸号缸", None),
    ({"minLength": 3, "maxLength": 5}, "ab", "shorter than 3 characters"),
    ({"minLength": 3, "maxLength": 5}, "缸号", "shorter than 3 characters"),
    ({"minLength": 3, "maxLength": 5}, "abcdef", "longer than 5 characters"),
    ({}, "x" * MAX_VALUE_CHARS, None),
    ({}, "x" * (MAX_VALUE_CHARS + 1), f"longer than {MAX_VALUE_CHARS} characters"),
    # pattern: the whole value must match
    (WASH_FASTNESS, "4", None),
    (WASH_FASTNESS, "3-4", None),
    (WASH_FASTNESS, "6", "does not match the pattern [1-5](-[1-5])?"),
    (WASH_FASTNESS, "3-4 ", "does not match the pattern [1-5](-[1-5])?"),
    (WASH_FASTNESS, "grade 4", "does not match the pattern [1-5](-[1-5])?"),
    # structure checks of industry codes
    ({"check": "gtin"}, GTIN, None),
    ({"check": "gtin"}, GTIN[:-1] + "0", "not a valid code: its check digit is wrong"),
    ({"check": "gtin"}, GTIN[1:], "not a valid code: a GTIN-14 must be 14 digits"),
    ({"check": "elevator-device"}, LIFTS[0].device_code, None),
    (
        {"check": "elevator-device"},
        "2" + LIFTS[0].device_code[1:],
        "not a valid code: its variety 2110 is not a lift variety (3xxx)",
    ),
    (
        {"check": "credit-code"},
        "91350100M000100Y44",
        "not a valid code: credit code '91350100M000100Y44' has check character '4', expected '3'",
    ),
    # the order: type, length, pattern, check
    ({"type": "date", "minLength": 10, "maxLength": 10}, "yesterday", NOT_DATE),
    ({"type": "integer", "maxLength": 2}, "12.5", "not an integer"),
    ({"maxLength": 3, "pattern": "[a-z]+"}, "ABCD", "longer than 3 characters"),
    ({"pattern": "[0-9]{14}", "check": "gtin"}, "ABC", "does not match the pattern [0-9]{14}"),
]


@pytest.mark.parametrize(("meta", "text", "expected"), RULE_CASES)
def test_each_rule_is_applied_and_named(
    meta: dict[str, Any], text: str, expected: str | None
) -> None:
    assert rule(meta, text) == expected


def test_the_type_is_checked_before_the_length() -> None:
    # The shipped yarn template: productionDate is a date of exactly 10 characters.
    f = YARN.field("productionDate")
    assert f is not None and (f.min_length, f.max_length) == (10, 10)
    assert f.problem("yesterday") == NOT_DATE
    [problem] = [
        p
        for p in YARN.problems(values(YARN, productionDate="yesterday"))
        if p.key == "productionDate"
    ]
    assert problem == Problem("productionDate", f.index, "yesterday", NOT_DATE)
    assert str(problem) == f"productionDate (index {f.index}) = 'yesterday': {NOT_DATE}"


# --- whole records ---------------------------------------------------------------------


def test_a_record_by_field_names_follows_its_template() -> None:
    record = ROLL.record(roll_fields(1))
    assert record[0] == HandleValue(CITE_INDEX, CITE_TYPE, ROLL.handle.encode())
    for v in record[1:]:
        f = ROLL.field(v.type)
        assert f is not None and (f.key, f.index) == (v.type, v.index)
    assert len(record) == 1 + len(roll_fields(1))
    assert ROLL.problems(record) == []
    assert cited(record) == ROLL.handle


def test_values_below_the_field_block_are_not_the_templates_business() -> None:
    others = [
        HandleValue(1, "URL", b"https://trace.example.com/h/88.118.2/R1"),
        HandleValue(100, "HS_ADMIN", b"\x00\x00binary"),
        HandleValue(1101, "PARENT", b"88.118.5/DL-1"),
    ]
    assert ROLL.problems([*others, *ROLL.record(roll_fields(1))]) == []


def test_field_types_match_whatever_their_case() -> None:
    record = [HandleValue(v.index, v.type.upper(), v.data) for v in ROLL.record(roll_fields(1))[1:]]
    assert ROLL.problems(record) == []


def test_every_missing_required_field_is_reported_at_once_each_named() -> None:
    problems = ROLL.problems([HandleValue(CITE_INDEX, CITE_TYPE, ROLL.handle.encode())])
    required = [f for f in ROLL.fields if f.required]
    assert len(required) > 10 and any(not f.required for f in ROLL.fields)
    assert problems == [Problem(f.key, f.index, "", "required, missing") for f in required]
    assert str(problems[0]) == "fabricCode (index 2000): required, missing"

    partial = dict(roll_fields(1))
    del partial["mill"], partial["rollNumber"]
    assert [(p.key, p.rule) for p in ROLL.problems(ROLL.record(partial))] == [
        ("rollNumber", "required, missing"),
        ("mill", "required, missing"),
    ]


def test_a_value_at_an_index_that_is_no_field_is_refused() -> None:
    stray = HandleValue(2999, "remark", b"hand-written")
    problems = ROLL.problems([*ROLL.record(roll_fields(1)), stray])
    assert problems == [
        Problem("remark", 2999, "", "index 2999 is no field of 88.118/TPL.TEXTILE.ROLL.V1")
    ]


def test_a_value_stored_under_the_wrong_type_is_refused() -> None:
    record = ROLL.record(roll_fields(1))
    fabric = next(v for v in record if v.type == "fabricCode")
    moved = [v for v in record if v is not fabric]
    moved.append(HandleValue(fabric.index, "productName", fabric.data))
    assert ROLL.problems(moved) == [
        Problem("fabricCode", fabric.index, "", "stored as type productName, not fabricCode")
    ]


def test_a_value_that_is_not_utf8_text_is_refused() -> None:
    record = [v for v in ROLL.record(roll_fields(1)) if v.type != "colour"]
    colour = ROLL.field("colour")
    assert colour is not None
    record.append(HandleValue(colour.index, "colour", b"\xff\xfe"))
    assert ROLL.problems(record) == [Problem("colour", colour.index, "", "not UTF-8 text")]


def test_every_problem_of_a_record_is_listed() -> None:
    record = ROLL.record(
        roll_fields(1, widthCm="150cm", productionDate="2026-02-30", stage="半成品")
    )
    assert [(p.key, p.value, p.rule) for p in ROLL.problems(record)] == [
        ("stage", "半成品", "not one of 坯布, 成品, greige, finished"),
        ("widthCm", "150cm", "not a decimal number (in cm, without the unit)"),
        ("productionDate", "2026-02-30", NOT_DATE),
    ]


def test_a_long_value_is_shortened_when_a_problem_shows_it() -> None:
    problem = Problem("productName", 2001, "x" * 41, "longer than 40 characters")
    assert str(problem) == f"productName (index 2001) = '{'x' * 37}...': longer than 40 characters"
    exactly = Problem("productName", 2001, "x" * 40, "r")
    assert str(exactly) == f"productName (index 2001) = '{'x' * 40}': r"


def test_the_shipped_lift_record_of_the_demo_follows_its_template() -> None:
    demo = LIFTS[0].to_handle()
    fields = {v["type"]: v["data"]["value"] for v in demo.values if v["index"] >= 2000}
    assert LIFT.problems(LIFT.record(fields)) == []
    fields["registrationCode"] = "3110320509202413" + "0012"  # month 13
    [problem] = LIFT.problems(LIFT.record(fields))
    assert problem.rule == "not a valid code: its registration month 13 is not 01-12"


# --- values by field names -------------------------------------------------------------


def test_values_for_places_each_field_at_its_index_under_its_key() -> None:
    colour = ROLL.field("colour")
    assert colour is not None
    out = ROLL.values_for({"FABRICCODE": "30121000750721010", "colour": "藏青"})
    assert out == [
        HandleValue(2000, "fabricCode", b"30121000750721010"),
        HandleValue(colour.index, "colour", "藏青".encode()),
    ]


@pytest.mark.parametrize(
    ("given", "text"),
    [
        (0.1, "0.1"),
        (150, "150"),
        (150.0, "150"),
        (62.5, "62.5"),
        (1e-7, "0.0000001"),
        (1e20, "100000000000000000000"),
        (-0.25, "-0.25"),
        (Decimal("100.50"), "100.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("0"), "0"),
        ("100.50", "100.50"),  # text is kept as given
    ],
)
def test_numbers_are_written_without_float_noise(given: object, text: str) -> None:
    [value] = ROLL.values_for({"rollLengthM": given})
    assert value.data.decode() == text


@pytest.mark.parametrize("given", [None, {"m": 1}, [1, 2]])
def test_a_field_value_must_be_a_string_or_a_number(given: object) -> None:
    with pytest.raises(TemplateViolation) as caught:
        ROLL.values_for({"colour": given})
    colour = ROLL.field("colour")
    assert colour is not None
    assert caught.value.problems == (
        Problem("colour", colour.index, "", "must be a string or a number"),
    )


def test_an_unknown_field_name_is_a_violation_naming_it() -> None:
    with pytest.raises(TemplateViolation) as caught:
        ROLL.record({**roll_fields(1), "colour2": "红"})
    assert caught.value.template == ROLL.handle
    assert caught.value.problems == (Problem("colour2", 0, "", "no such field"),)
    assert str(caught.value) == (
        "not a valid record of 88.118/TPL.TEXTILE.ROLL.V1: colour2 (index 0): no such field"
    )


# --- TemplateViolation and cited() -------------------------------------------------------


def test_a_violation_lists_its_problems() -> None:
    problems = [Problem(f"f{n}", 2000 + n, "", "required, missing") for n in range(2)]
    error = TemplateViolation(HANDLE, problems)
    assert str(error) == (
        f"not a valid record of {HANDLE}: f0 (index 2000): required, missing; "
        "f1 (index 2001): required, missing"
    )
    assert error.response_code == ResponseCode.INVALID_VALUE


@pytest.mark.parametrize(
    ("count", "more"), [(20, ""), (21, " (and 1 more)"), (45, " (and 25 more)")]
)
def test_a_violation_lists_twenty_problems_and_counts_the_rest(count: int, more: str) -> None:
    problems = [Problem(f"f{n}", 2000 + n, "", "required, missing") for n in range(count)]
    error = TemplateViolation(HANDLE, problems)
    message = str(error)
    assert message.endswith(f"f19 (index 2019): required, missing{more}")
    assert message.count("required, missing") == 20
    assert len(error.problems) == count


def test_cited_names_the_template_a_record_cites() -> None:
    url = HandleValue(1, "URL", b"https://example.com")
    assert cited([url, HandleValue(CITE_INDEX, "TEMPLATE", ROLL.handle.encode())]) == ROLL.handle
    assert cited([HandleValue(CITE_INDEX, "template", b" 88.118/TPL.X.V1\n")]) == "88.118/TPL.X.V1"
    assert cited([url]) is None
    assert cited([]) is None
    assert cited([HandleValue(CITE_INDEX, "TEMPLATE", b"  ")]) is None


# --- template bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda t: t.handle)
def test_every_shipped_template_round_trips_through_json(shipped: Template) -> None:
    text = shipped.to_json()
    again = Template.from_json(text, shipped.handle)
    assert again == shipped
    assert again.describe() == shipped.describe()
    assert again.to_json() == text
    assert Template.from_json(text.encode("utf-8")) == shipped
    assert Template.from_json(shipped.describe()) == shipped
    assert Template.from_json(text, shipped.handle.lower()) == shipped  # handles ignore case
    # Every rule survives: each field describes itself the same after the trip.
    for before, after in zip(shipped.fields, again.fields, strict=True):
        assert after.describe() == before.describe()
        assert (after.searchable, after.choices, after.pattern) == (
            before.searchable,
            before.choices,
            before.pattern,
        )


def test_a_template_describes_itself_in_the_template_service_shape() -> None:
    described = ROLL.describe()
    assert described["handle"] == ROLL.handle
    assert described["prefix"] == "88.118"
    assert described["industryCategory"][0] == {"code": "C1742", "name": "绢纺和丝织加工"}
    fabric = described["items"][0]
    assert fabric == {
        "name": "面料编码",
        "label": "fabric code (GB/T 22970)",
        "idType": "fabricCode",
        "idIndex": 2000,
        "required": True,
        "metadata": {
            "type": "string",
            "minLength": 17,
            "maxLength": 17,
            "check": "gbt22970",
            "indexed": True,
        },
    }
    width = next(i for i in described["items"] if i["idType"] == "widthCm")
    assert width["metadata"] == {
        "type": "decimal",
        "minLength": 2,
        "maxLength": 6,
        "min": "10",
        "max": "400",
        "unit": "cm",
    }
    registration = LIFT.describe()["items"][0]["metadata"]
    assert registration["unique"] is True and "indexed" not in registration


def test_a_minimal_template_takes_its_defaults() -> None:
    t = Template.from_json(json.dumps({"items": [{"idType": "lot", "idIndex": 2000}]}), HANDLE)
    assert t.handle == HANDLE and t.prefix == "88.118" and t.version == "" and t.industry == ()
    [f] = t.fields
    assert (f.type, f.required, f.unique, f.indexed, f.min_length) == (
        "string",
        True,
        False,
        False,
        None,
    )
    assert t.field("LOT") is f and t.at(2000) is f and t.at(2001) is None


def body(*items: Any, **doc: Any) -> dict[str, Any]:
    return {"handle": HANDLE, "items": list(items), **doc}


def many(n: int) -> list[dict[str, Any]]:
    return [item(f"f{k}", 2000 + k) for k in range(n)]


TYPE_LIST = ", ".join(TYPES)
BAD_BODIES: list[tuple[Any, str]] = [
    ("{not json", "the template body is not JSON"),
    (b"\xff\xfe\xfa", "the template body is not JSON"),
    ("", "the template body is not JSON"),
    ("[1, 2]", "the template body is not a JSON object"),
    ('"a template"', "the template body is not a JSON object"),
    ({"items": [item()]}, "the template names no handle"),
    ({"handle": "", "items": [item()]}, "the template names no handle"),
    ({"handle": HANDLE}, f"the template needs between 1 and {MAX_FIELDS} items"),
    (body(), f"the template needs between 1 and {MAX_FIELDS} items"),
    (
        {"handle": HANDLE, "items": {"0": item()}},
        f"the template needs between 1 and {MAX_FIELDS} items",
    ),
    (body(*many(MAX_FIELDS + 1)), f"the template needs between 1 and {MAX_FIELDS} items"),
    (body(item("dyeLot", 2000), item("DYELOT", 2001)), "two items have the key DYELOT"),
    (body(item("a", 2000), item("b", 2001), item("c", 2000)), "two items have the index 2000"),
    (body(item("a", 1999)), "item 0 (a): idIndex must be an integer of 2000 or more"),
    (
        body(item("a", 2000), item("b", 1001)),
        "item 1 (b): idIndex must be an integer of 2000 or more",
    ),
    (
        body({"idType": "a", "idIndex": "2000"}),
        "item 0 (a): idIndex must be an integer of 2000 or more",
    ),
    (
        body({"idType": "a", "idIndex": True}),
        "item 0 (a): idIndex must be an integer of 2000 or more",
    ),
    (
        body({"idType": "a", "idIndex": 2**31}),
        "item 0 (a): idIndex must be an integer of 2000 or more",
    ),
    (body({"idType": "a"}), "item 0 (a): idIndex must be an integer of 2000 or more"),
    (body(item(type="blob")), f"item 0 (v): type 'blob' is not one of {TYPE_LIST}"),
    (body(item(type="")), f"item 0 (v): type '' is not one of {TYPE_LIST}"),
    (body(["lot", 2000]), "item 0 is not an object"),
    (body({"idIndex": 2000}), "item 0: idType must be a name like dyeLot, not None"),
    (body(item("1lot")), "item 0: idType must be a name like dyeLot, not '1lot'"),
    (body(item("dye lot")), "item 0: idType must be a name like dyeLot, not 'dye lot'"),
    (body(item("a" * 65)), f"item 0: idType must be a name like dyeLot, not {'a' * 65!r}"),
    (
        body({"idType": "a", "idIndex": 2000, "metadata": "string"}),
        "item 0 (a): metadata is not an object",
    ),
    (
        body(item(check="isbn")),
        "item 0 (v): check 'isbn' is not one of ['credit-code', 'elevator-device', 'elevator-registration', 'gbt22970', 'gtin']",
    ),
    (body(item(type="enum")), "item 0 (v): an enum field needs its enum list"),
    (body(item(type="enum", enum=[])), "item 0 (v): an enum field needs its enum list"),
    (body(item(type="enum", enum="FDY")), "item 0 (v): enum must be a list of choices"),
    (body(item(minLength=-1)), "item 0 (v) minLength must be a non-negative integer"),
    (body(item(maxLength="64")), "item 0 (v) maxLength must be a non-negative integer"),
    (body(item(maxLength=6.5)), "item 0 (v) maxLength must be a non-negative integer"),
    (body(item(type="decimal", min="ten")), "item 0 (v) min must be a number"),
    (body(item(type="decimal", max=True)), "item 0 (v) max must be a number"),
    (body(item(type="decimal", max=float("inf"))), "item 0 (v) max must be a finite number"),
    (body(item(pattern="x" * 201)), "item 0 (v): a pattern may be 200 characters at most"),
    (body(item(pattern="[0-9")), "item 0 (v): the pattern does not compile: "),
    (
        body(item("a"), item("b", 2001, pattern="(a+)+$")),
        "item 1 (b): the pattern nests quantifiers (slow to match): (a+)+$",
    ),
]


@pytest.mark.parametrize(("doc", "message"), BAD_BODIES)
def test_a_body_that_is_no_usable_template_is_refused_saying_why(doc: Any, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template.from_json(doc)
    assert str(caught.value).startswith(message)
    assert caught.value.response_code == ResponseCode.INVALID_VALUE


def test_a_body_naming_another_handle_is_refused() -> None:
    with pytest.raises(TemplateError) as caught:
        Template.from_json(ROLL.to_json(), "88.118/TPL.TEXTILE.ROLL.V2")
    assert str(caught.value) == (
        "the template body names 88.118/TPL.TEXTILE.ROLL.V1, not its own handle "
        "88.118/TPL.TEXTILE.ROLL.V2"
    )


def test_a_template_of_the_most_items_allowed_is_taken() -> None:
    t = Template.from_json(body(*many(MAX_FIELDS)))
    assert len(t.fields) == MAX_FIELDS and t.at(2000 + MAX_FIELDS - 1) is not None


NESTED = [
    "(a+)+",
    "(a*)*",
    "(a+)*b",
    "(?:x+y)*",
    r"(\d+){2,}",
    "(a{2,})+",
    "((a)+)+",
    "((a+))*",
    "(a(b+)c)+",
    "(?P<lot>[A-Z]+-?)+",
    "(a+?)+",
    "(?x) (a+) +",  # verbose mode: the space does not part the group from its +
]


@pytest.mark.parametrize("pattern", NESTED)
def test_a_pattern_nesting_quantifiers_is_refused_when_parsed(pattern: str) -> None:
    # A ReDoS guard: each of these backtracks exponentially on a near-miss.
    with pytest.raises(TemplateError) as caught:
        template(item(pattern=pattern))
    assert str(caught.value) == (
        f"item 0 (v): the pattern nests quantifiers (slow to match): {pattern}"
    )


FLAT = [
    "[0-9A-Z]{4,8}",
    "[1-5](-[1-5])?",
    "[0-9-]{5,16}",
    "(ab)+",
    "(a|b)+c",
    "(a+)?",  # at most once: nothing to backtrack over
    "(a+)(b)+",
    r"\(a+\)+",  # escaped parentheses are no group
    "(a[+*])+",  # + and * in a class are literals
    "([^]+])+",
    "[(a+)]+",
    "(a{})+",  # "{}" is a literal, not a repeat
    "DL-[0-9]{8}-[0-9]{2}",
]


@pytest.mark.parametrize("pattern", FLAT)
def test_a_pattern_without_nested_quantifiers_is_taken(pattern: str) -> None:
    f = template(item(pattern=pattern)).fields[0]
    assert f.pattern == pattern
    re.compile(pattern)


def test_every_shipped_pattern_passes_the_guard() -> None:
    patterns = [f.pattern for t in SHIPPED for f in t.fields if f.pattern]
    assert patterns
    for t in SHIPPED:
        Template.from_json(t.to_json())


@pytest.mark.parametrize(
    "item, why",
    [
        ({"idType": "a", "idIndex": 2000, "required": "false"}, "required must be true or false"),
        (
            {"idType": "a", "idIndex": 2000, "metadata": {"unique": 1}},
            "unique must be true or false",
        ),
        (
            {"idType": "a", "idIndex": 2000, "metadata": {"minLength": 5, "maxLength": 2}},
            "minimum above",
        ),
        (
            {"idType": "a", "idIndex": 2000, "metadata": {"type": "integer", "min": 9, "max": 1}},
            "minimum above",
        ),
    ],
)
def test_fields_no_value_could_fill_and_loose_flags_are_refused(
    item: dict[str, object], why: str
) -> None:
    with pytest.raises(TemplateError, match=why):
        Field.from_json(item, "item 0")

"""node.templates.catalog: the templates records cite, read through a lookup and kept.

The catalog's seam is its lookup (handle -> the record's values, or None); here it is a
plain async function over a dict of published records, counting what it is asked, so
the tests see when the catalog reads and when it keeps.
"""

from __future__ import annotations

import json

import pytest

from node.demo.dataset import LIFTS
from node.templates.catalog import TEMPLATE_ROW, TemplateCatalog, guard_template_record
from node.templates.shipped import DYELOT, LIFT, ROLL, SHIPPED
from protocol.templates import (
    BODY_INDEX,
    BODY_TYPE,
    CITE_INDEX,
    CITE_TYPE,
    Problem,
    Template,
    TemplateError,
    TemplateViolation,
)
from protocol.values import HandleValue
from registry.rows import FieldRows
from tests.node.templates_support import roll_fields

OWN = "88.118.2/TPL.OWN.V1"


class Published:
    """Records by handle (upper case, as the registry matches them), and the lookups."""

    def __init__(self, *templates: Template) -> None:
        self.records: dict[str, tuple[HandleValue, ...]] = {}
        self.asked: list[str] = []
        for t in templates:
            self.publish(t.handle, t.to_json())

    def publish(self, handle: str, body: str | bytes) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.records[handle.upper()] = template_record(data)

    async def lookup(self, handle: str) -> tuple[HandleValue, ...] | None:
        self.asked.append(handle)
        return self.records.get(handle.upper())


def template_record(body: bytes) -> tuple[HandleValue, ...]:
    return (
        HandleValue(1, "URL", b"https://trace.example.com/h/template"),
        HandleValue(BODY_INDEX, BODY_TYPE, body),
    )


def body_value(t: Template | str) -> HandleValue:
    text = t.to_json() if isinstance(t, Template) else t
    return HandleValue(BODY_INDEX, BODY_TYPE, text.encode("utf-8"))


def lift_fields() -> dict[str, str]:
    demo = LIFTS[0].to_handle()
    return {v["type"]: v["data"]["value"] for v in demo.values if v["index"] >= 2000}


# --- reading and keeping ---------------------------------------------------------------


async def test_a_template_read_once_is_kept() -> None:
    shelf = Published(ROLL)
    catalog = TemplateCatalog(shelf.lookup)
    first = await catalog.get(ROLL.handle)
    assert first == ROLL
    assert await catalog.get(ROLL.handle) is first
    assert await catalog.get(ROLL.handle.lower()) is first  # handles ignore case
    for _ in range(3):
        await catalog.check_record(ROLL.record(roll_fields(1)))
    assert shelf.asked == [ROLL.handle]


async def test_a_miss_is_not_kept_so_a_template_published_later_is_found() -> None:
    shelf = Published()
    catalog = TemplateCatalog(shelf.lookup)
    assert await catalog.get(ROLL.handle) is None
    assert await catalog.get(ROLL.handle) is None
    shelf.publish(ROLL.handle, ROLL.to_json())
    assert await catalog.get(ROLL.handle) == ROLL
    assert await catalog.get(ROLL.handle) == ROLL
    assert shelf.asked == [ROLL.handle] * 3


async def test_a_record_without_a_template_body_is_no_template() -> None:
    shelf = Published()
    shelf.records[ROLL.handle.upper()] = (HandleValue(1, "URL", b"https://example.com"),)
    catalog = TemplateCatalog(shelf.lookup)
    assert await catalog.get(ROLL.handle) is None
    assert await catalog.get(ROLL.handle) is None
    assert len(shelf.asked) == 2


@pytest.mark.parametrize(
    "broken",
    [
        b"{not json",
        json.dumps({"handle": OWN, "items": []}).encode(),
        json.dumps({"handle": OWN, "items": [{"idType": "a", "idIndex": 10}]}).encode(),
        json.dumps(
            {"handle": "88.118.2/TPL.OTHER.V1", "items": [{"idType": "a", "idIndex": 2000}]}
        ).encode(),
    ],
    ids=["not-json", "no-items", "index-below-2000", "names-another-handle"],
)
async def test_a_broken_template_validates_nothing(broken: bytes) -> None:
    shelf = Published()
    shelf.publish(OWN, broken)
    catalog = TemplateCatalog(shelf.lookup)
    assert await catalog.get(OWN) is None
    record = [HandleValue(CITE_INDEX, CITE_TYPE, OWN.encode()), HandleValue(2000, "a", b"x")]
    with pytest.raises(TemplateViolation) as caught:
        await catalog.check_record(record)
    assert caught.value.problems == (
        Problem(CITE_TYPE, CITE_INDEX, OWN, "no such template (IDIS_TEMPLATE)"),
    )
    assert str(caught.value) == (
        f"not a valid record of {OWN}: TEMPLATE (index 1001) = '{OWN}': "
        "no such template (IDIS_TEMPLATE)"
    )
    assert len(shelf.asked) == 2  # not kept: asked again


async def test_forget_drops_a_kept_template() -> None:
    shelf = Published(ROLL)
    catalog = TemplateCatalog(shelf.lookup)
    await catalog.get(ROLL.handle)
    catalog.forget(ROLL.handle.lower())
    catalog.forget("88.118/TPL.NEVER.READ.V1")  # forgetting what is not kept is no error
    await catalog.get(ROLL.handle)
    assert shelf.asked == [ROLL.handle, ROLL.handle]


async def test_at_most_max_entries_are_kept_the_least_recently_used_going_first() -> None:
    shelf = Published(*SHIPPED)
    catalog = TemplateCatalog(shelf.lookup, max_entries=2)
    a, b, c = SHIPPED[:3]
    await catalog.get(a.handle)
    await catalog.get(b.handle)
    await catalog.get(a.handle)  # a is now the most recently used
    assert shelf.asked == [a.handle, b.handle]
    await catalog.get(c.handle)  # b goes
    await catalog.get(a.handle)
    await catalog.get(c.handle)
    assert shelf.asked == [a.handle, b.handle, c.handle]
    await catalog.get(b.handle)  # read again; a, the least recently used, goes
    assert shelf.asked == [a.handle, b.handle, c.handle, b.handle]
    await catalog.get(c.handle)
    await catalog.get(a.handle)
    assert shelf.asked == [a.handle, b.handle, c.handle, b.handle, a.handle]


async def test_every_shipped_template_is_read_from_its_published_body() -> None:
    catalog = TemplateCatalog(Published(*SHIPPED).lookup)
    for t in SHIPPED:
        assert await catalog.get(t.handle) == t


# --- check_record ----------------------------------------------------------------------


async def test_a_record_citing_no_template_is_not_checked() -> None:
    shelf = Published(ROLL)
    catalog = TemplateCatalog(shelf.lookup)
    record = [HandleValue(1, "URL", b"https://example.com"), HandleValue(2000, "anything", b"")]
    assert await catalog.check_record(record) is None
    assert shelf.asked == []


async def test_check_record_returns_the_index_rows_of_indexed_fields() -> None:
    catalog = TemplateCatalog(Published(ROLL).lookup)
    fields = roll_fields(7)
    rows = await catalog.check_record(ROLL.record(fields))
    h = ROLL.handle
    assert rows == FieldRows(
        indexed=(
            (h, "fabricCode", fields["fabricCode"]),
            (h, "rollNumber", "C2026000007"),
            (h, "dyeLot", "DL-20260316-02"),
        ),
        unique=(),
    )


async def test_check_record_returns_the_rows_of_unique_fields_apart() -> None:
    catalog = TemplateCatalog(Published(LIFT).lookup)
    fields = lift_fields()
    rows = await catalog.check_record(LIFT.record(fields))
    h = LIFT.handle
    assert rows == FieldRows(
        indexed=((h, "deviceCode", LIFTS[0].device_code), (h, "rescueCode", "30561")),
        unique=((h, "registrationCode", fields["registrationCode"]),),
    )


async def test_a_field_both_indexed_and_unique_has_a_row_in_each() -> None:
    own = Template.from_json(
        {
            "handle": OWN,
            "items": [
                {
                    "idType": "serial",
                    "idIndex": 2000,
                    "metadata": {"unique": True, "indexed": True},
                },
                {"idType": "note", "idIndex": 2001, "required": False},
            ],
        }
    )
    catalog = TemplateCatalog(Published(own).lookup)
    rows = await catalog.check_record(
        [*own.record({"serial": "S-1", "note": "n"}), HandleValue(1, "URL", b"https://x.cn")]
    )
    assert rows == FieldRows(indexed=((OWN, "serial", "S-1"),), unique=((OWN, "serial", "S-1"),))
    # A record with no searchable field has empty rows, not None: it cites a template.
    note_only = Template.from_json({"handle": OWN, "items": [{"idType": "note", "idIndex": 2000}]})
    catalog = TemplateCatalog(Published(note_only).lookup)
    assert await catalog.check_record(note_only.record({"note": "n"})) == FieldRows((), ())


async def test_a_record_breaking_its_template_is_refused_naming_every_problem() -> None:
    catalog = TemplateCatalog(Published(ROLL).lookup)
    record = ROLL.record(roll_fields(1, widthCm="150cm", grade="特等品"))
    record = [v for v in record if v.type != "mill"]
    with pytest.raises(TemplateViolation) as caught:
        await catalog.check_record(record)
    assert caught.value.template == ROLL.handle
    assert [(p.key, p.rule) for p in caught.value.problems] == [
        ("widthCm", "not a decimal number (in cm, without the unit)"),
        ("grade", "not one of 优等品, 一等品, 合格品, AA, A, B, C"),
        ("mill", "required, missing"),
    ]


async def test_a_record_citing_an_unpublished_template_is_refused() -> None:
    catalog = TemplateCatalog(Published(ROLL).lookup)
    with pytest.raises(TemplateViolation) as caught:
        await catalog.check_record(DYELOT.record({"dyeLot": "DL-1"}))
    assert caught.value.problems == (
        Problem(CITE_TYPE, CITE_INDEX, DYELOT.handle, "no such template (IDIS_TEMPLATE)"),
    )


# --- guard_template_record -------------------------------------------------------------


def test_a_new_template_record_gets_its_own_index_row() -> None:
    rows = guard_template_record(ROLL.handle, None, [body_value(ROLL)])
    assert rows == FieldRows(indexed=((TEMPLATE_ROW, "prefix", "88.118"),))
    assert TEMPLATE_ROW == BODY_TYPE
    own = Template.from_json({"handle": OWN, "items": [{"idType": "a", "idIndex": 2000}]})
    rows = guard_template_record(OWN.lower(), [], [body_value(own)])
    assert rows == FieldRows(indexed=((TEMPLATE_ROW, "prefix", "88.118.2"),))


def test_rewriting_a_template_with_the_same_body_is_allowed() -> None:
    existing = [HandleValue(1, "URL", b"https://example.com"), body_value(ROLL)]
    merged = [HandleValue(1, "URL", b"https://example.com/v2"), body_value(ROLL)]
    assert guard_template_record(ROLL.handle, existing, merged) == FieldRows(
        indexed=((TEMPLATE_ROW, "prefix", "88.118"),)
    )


def test_changing_a_published_templates_body_is_refused() -> None:
    described = ROLL.describe()
    described["items"] = described["items"][:-1]  # drop the last field
    changed = Template.from_json(described)
    with pytest.raises(TemplateError) as caught:
        guard_template_record(ROLL.handle, [body_value(ROLL)], [body_value(changed)])
    assert str(caught.value) == (
        f"{ROLL.handle} is a published template and does not change: publish the new "
        "definition as a new version (a new handle, e.g. ...V2)"
    )


def test_a_body_naming_another_handle_is_refused() -> None:
    with pytest.raises(TemplateError) as caught:
        guard_template_record("88.118/TPL.TEXTILE.ROLL.V2", None, [body_value(ROLL)])
    assert str(caught.value) == (
        f"the template body names {ROLL.handle}, not its own handle 88.118/TPL.TEXTILE.ROLL.V2"
    )


def test_a_body_that_is_no_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="the template needs between 1 and 200 items"):
        guard_template_record(OWN, None, [body_value(json.dumps({"handle": OWN, "items": []}))])
    with pytest.raises(TemplateError, match="the template body is not JSON"):
        guard_template_record(OWN, None, [body_value("{")])


def test_a_record_with_no_template_body_is_not_a_template_record() -> None:
    merged = [HandleValue(1, "URL", b"https://example.com"), *ROLL.record(roll_fields(1))]
    assert guard_template_record("88.118.2/R1", None, merged) is None
    assert guard_template_record("88.118.2/R1", merged, merged) is None

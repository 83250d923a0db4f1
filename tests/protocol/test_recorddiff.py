"""protocol.recorddiff: value-by-value differences between two versions of a record, and
protocol.rfc3339: the times the history takes and prints."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol.codes import TTLType
from protocol.jsonvalues import value_to_json
from protocol.recorddiff import (
    Change,
    Part,
    brief,
    change_to_json,
    describe,
    diff_to_json,
    diff_values,
)
from protocol.rfc3339 import format_time, parse_time
from protocol.values import HandleValue, Reference

URL = HandleValue(1, "URL", b"https://example.com/roll/1", timestamp=100)
EMAIL = HandleValue(2, "EMAIL", b"ops@example.com", timestamp=100)
SECRET = HandleValue(300, "HS_SECKEY", b"\x00sealed-1", permissions=0b1100, timestamp=100)
SIG = HandleValue(400, "HS_SIGNATURE", b"eyJhbGciOiJFUzI1NiJ9." + b"x" * 600, timestamp=100)


def test_identical_records_and_timestamps_alone_are_no_change() -> None:
    assert diff_values([URL, EMAIL], [URL, EMAIL]) == ()
    restamped = [replace(URL, timestamp=999), replace(EMAIL, timestamp=5)]
    assert diff_values([URL, EMAIL], restamped) == ()


def test_added_changed_removed_in_index_order() -> None:
    new_url = replace(URL, data=b"https://example.com/roll/1-v2", timestamp=200)
    tel = HandleValue(3, "TEL", b"+86 512 0000")
    changes = diff_values([EMAIL, URL], [tel, new_url])  # order of the input does not matter
    assert [(c.index, c.change, c.parts) for c in changes] == [
        (1, Change.CHANGED, (Part.DATA,)),
        (2, Change.REMOVED, ()),
        (3, Change.ADDED, ()),
    ]
    assert changes[1].before == EMAIL and changes[1].after is None
    assert changes[2].before is None and changes[2].after == tel
    assert [c.type for c in changes] == ["URL", "EMAIL", "TEL"]


@pytest.mark.parametrize(
    "changed, parts",
    [
        (replace(URL, type="URL.ALT"), (Part.TYPE,)),
        (replace(URL, ttl=3600), (Part.TTL,)),
        (replace(URL, ttl_type=TTLType.ABSOLUTE), (Part.TTL,)),
        (replace(URL, permissions=0b1100), (Part.PERMISSIONS,)),
        (replace(URL, references=(Reference("88.118.2/X", 1),)), (Part.REFERENCES,)),
        (replace(URL, type="EMAIL", data=b"a@b", ttl=60), (Part.TYPE, Part.DATA, Part.TTL)),
    ],
)
def test_each_part_of_a_value_is_named(changed: HandleValue, parts: tuple[Part, ...]) -> None:
    (change,) = diff_values([URL], [changed])
    assert change.change is Change.CHANGED and change.parts == parts


def test_one_line_descriptions() -> None:
    new_url = replace(URL, data=b"https://example.com/b")
    (c,) = diff_values([URL], [new_url])
    assert describe(c) == '1 URL data: "https://example.com/roll/1" → "https://example.com/b"'
    (c,) = diff_values([URL], [replace(URL, ttl=60, permissions=0b1100)])
    assert describe(c) == "1 URL ttl: 86400 → 60; permissions: 1110 → 1100"
    (c,) = diff_values([], [EMAIL])
    assert describe(c) == '2 EMAIL "ops@example.com"'
    (c,) = diff_values([HandleValue(5, "BLOB", bytes(range(40)))], [])
    assert describe(c) == "5 BLOB <40 bytes>"


def test_long_data_is_cut_to_one_line() -> None:
    long = HandleValue(1000, "DESC", "绸".encode() * 500)
    assert len(brief(long)) <= 72 and brief(long).endswith("…")
    (c,) = diff_values([], [long])
    assert len(describe(c)) < 100 and "\n" not in describe(c)


def test_a_signature_is_described_never_shown() -> None:
    resigned = replace(SIG, data=b"eyJhbGciOiJFUzI1NiJ9." + b"y" * 600)
    (c,) = diff_values([SIG], [resigned])
    assert c.signature and describe(c) == "400 HS_SIGNATURE signature replaced"
    body = change_to_json(c)
    assert body["before"] is None and body["after"] is None and body["change"] == "changed"
    assert body["summary"] == "400 HS_SIGNATURE signature replaced"
    assert "yyyy" not in str(body)
    (added,) = diff_values([], [SIG])
    (removed,) = diff_values([SIG], [])
    assert brief(SIG) == "<signature, 621 bytes>"
    assert describe(added).endswith("signature added")
    assert describe(removed).endswith("signature removed")


def test_json_form_carries_values_in_the_rest_shape() -> None:
    new_url = replace(URL, data=b"https://example.com/b")
    (c,) = diff_values([URL], [new_url])
    body = change_to_json(c)
    assert body == {
        "index": 1,
        "type": "URL",
        "change": "changed",
        "parts": ["data"],
        "before": value_to_json(URL),
        "after": value_to_json(new_url),
        "hidden": False,
        "summary": describe(c),
    }
    assert [b["change"] for b in diff_to_json(diff_values([URL], [EMAIL]))] == [
        "removed",
        "added",
    ]


def public(v: HandleValue) -> bool:
    return v.public_read


def test_a_value_the_reader_may_not_see_shows_that_it_changed_not_what() -> None:
    resealed = replace(SECRET, data=b"\x00sealed-2")
    (c,) = diff_values([SECRET], [resealed])
    body = change_to_json(c, visible=public)
    assert body["hidden"] is True and body["type"] is None
    assert body["before"] is None and body["after"] is None
    assert body["change"] == "changed" and body["parts"] == ["data"]
    assert body["summary"] == "300 value changed (data), not readable"
    assert "sealed" not in str(body) and "SECKEY" not in str(body)
    (added,) = diff_values([], [SECRET])
    assert describe(added, visible=public) == "300 value added, not readable"


def test_a_value_made_private_shows_its_public_past_only() -> None:
    private = replace(EMAIL, data=b"new@example.com", permissions=0b1100)
    (c,) = diff_values([EMAIL], [private])
    body = change_to_json(c, visible=public)
    assert body["before"] == value_to_json(EMAIL) and body["after"] is None
    assert body["hidden"] is True and body["type"] == "EMAIL"
    assert "new@example.com" not in str(body)
    assert "the new value is not readable" in body["summary"]


def test_show_masks_data_on_both_sides_and_still_says_it_changed() -> None:
    def masked(v: HandleValue) -> HandleValue:
        return replace(v, data=b"(secret)") if v.type == "HS_SECKEY" else v

    (c,) = diff_values([SECRET], [replace(SECRET, data=b"\x00sealed-2")])
    assert describe(c, show=masked) == "300 HS_SECKEY data changed"
    body = change_to_json(c, show=masked)
    assert (
        body["before"]["data"]
        == body["after"]["data"]
        == {
            "format": "string",
            "value": "(secret)",
        }
    )


# --- RFC 3339 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-01T08:00:00Z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01t08:00:00z", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01 16:00:00+08:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
        ("2026-11-01T08:00:00.25Z", datetime(2026, 11, 1, 8, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-01T08:00:00.123456789Z", datetime(2026, 11, 1, 8, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-01T07:30:00-00:30", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ],
)
def test_rfc3339_times_parse_to_utc(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected and got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-01",  # a date alone
        "2026-11-01T08:00:00",  # no offset: which zone?
        "20261101T080000Z",  # ISO 8601 basic form
        "2026-13-01T08:00:00Z",  # month 13
        "2026-11-01T08:00Z",  # seconds are required
        "yesterday",
    ],
)
def test_other_forms_are_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|not a valid time"):
        parse_time(text)


def test_format_round_trips_and_keeps_fractions_only_when_present() -> None:
    whole = datetime(2026, 11, 1, 16, tzinfo=timezone(timedelta(hours=8)))
    assert format_time(whole) == "2026-11-01T08:00:00Z"
    fine = datetime(2026, 11, 1, 8, 0, 0, 120000, tzinfo=UTC)
    assert format_time(fine) == "2026-11-01T08:00:00.12Z"
    assert parse_time(format_time(fine)) == fine

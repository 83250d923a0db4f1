"""The Handle.Net REST value shape: parsing, rendering, errors, and the golden seed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from protocol.codes import TTLType
from protocol.errors import ValueFormatError
from protocol.jsonvalues import (
    MAX_VALUES_PER_HANDLE,
    site_from_json,
    site_to_json,
    value_from_json,
    value_to_json,
    values_from_json,
    values_to_json,
)
from protocol.keys import decode_public_key, public_key_to_jwk
from protocol.structured import AdminRef, ServerInfo, SiteInfo, encode_admin, encode_vlist
from protocol.valuecodec import encode_values
from protocol.values import HandleValue, Reference, type_problem
from tests.protocol.golden import GOLDEN_ADMIN, reply_body, reply_value_bytes, vectors_dir

SEED = vectors_dir() / "handle-golden-seed.json"


def _seed() -> dict[str, Any]:
    records: dict[str, Any] = json.loads(SEED.read_text(encoding="utf-8"))["handleRecords"]
    return records


# --- golden seed ----------------------------------------------------------------------


def test_seed_parses_completely() -> None:
    records = _seed()
    assert len(records) == 8
    for handle, record in records.items():
        values = values_from_json(record)
        assert [v.index for v in values] == [v["index"] for v in record["values"]], handle
        assert values_from_json(values_to_json(values)) == values


# (golden entry, seeded handle): replies carrying the whole record, in seed order
WHOLE_RECORD_REPLIES = [
    (11, "88.118.2/ABC123"),
    (8, "88.118.2/REFS"),
    (10, "88.118.2/布料-001"),
    (12, "88.118.2/ÉTÉ-X"),
    (16, "88.118.2/BIG40"),
]


@pytest.mark.parametrize(("entry", "handle"), WHOLE_RECORD_REPLIES)
def test_seeded_values_encode_to_golden_reply_bytes(entry: int, handle: str) -> None:
    values = values_from_json(_seed()[handle])
    assert all(v.timestamp == 0 and v.permissions == 0x0E for v in values)
    assert encode_values(values) == reply_value_bytes(entry)


def test_seed_defaults_and_explicit_fields() -> None:
    records = _seed()
    abc = values_from_json(records["88.118.2/ABC123"])
    assert abc[1] == HandleValue(2, "EMAIL", b"ops@example.com")  # bare-string data, defaults
    assert abc[2].data == GOLDEN_ADMIN
    refs = values_from_json(records["88.118.2/REFS"])
    assert refs[0].ttl == 3600
    assert refs[0].references == (Reference("88.118.2/ABC123", 1), Reference("88.118/ADMIN", 300))
    seckey = values_from_json(records["88.118/ADMIN"])[1]
    assert seckey.permissions == 0b1100


# --- each format in and out -----------------------------------------------------------


def _one(data: Any, **extra: Any) -> HandleValue:
    return value_from_json({"index": 5, "type": extra.pop("type", "X"), "data": data, **extra})


def test_string_base64_hex_in() -> None:
    assert _one("héllo").data == "héllo".encode()
    assert _one({"format": "string", "value": "a"}).data == b"a"
    assert _one({"format": "base64", "value": "AAEC/w=="}).data == b"\0\1\2\xff"
    assert _one({"format": "BASE64", "value": "AAEC_w"}).data == b"\0\1\2\xff"  # url-safe, no pad
    assert _one({"format": "hex", "value": "0001 02ff"}).data == b"\0\1\2\xff"


def test_plain_output_formats() -> None:
    def out(data: bytes) -> dict[str, Any]:
        return value_to_json(HandleValue(1, "X", data))["data"]  # type: ignore[no-any-return]

    assert out(b"https://x/\xc3\xa9") == {"format": "string", "value": "https://x/é"}
    assert out(b"line\r\n\ttab") == {"format": "string", "value": "line\r\n\ttab"}
    assert out(b"\x00\x01") == {"format": "base64", "value": "AAE="}
    assert out(b"\xff") == {"format": "base64", "value": "/w=="}
    assert out(b"bell\x07")["format"] == "base64"
    assert out(b"del\x7f")["format"] == "base64"
    assert out(b"\x12")["format"] == "string"  # reference whitespace range 0x09..0x13
    assert out(b"") == {"format": "string", "value": ""}


def test_admin_in_and_out() -> None:
    v = _one(
        {
            "format": "admin",
            "value": {"handle": "0.NA/88.118", "index": "200", "permissions": "011111111111"},
        },
        type="HS_ADMIN",
    )
    assert v.data == encode_admin(AdminRef("0.NA/88.118", 200, 0x7FF))
    assert value_to_json(v)["data"] == {
        "format": "admin",
        "value": {"handle": "0.NA/88.118", "index": 200, "permissions": "011111111111"},
    }
    star = _one({"format": "admin", "value": {"handle": "a/b", "index": 1, "permissions": "*"}})
    assert star.data == encode_admin(AdminRef("a/b", 1, 0xFFF))
    legacy = HandleValue(100, "HS_ADMIN", GOLDEN_ADMIN + b"\0\0")
    assert value_to_json(legacy)["data"]["value"]["legacyByteLength"] is True
    assert values_from_json(values_to_json([legacy])) == [legacy]


def test_vlist_in_and_out() -> None:
    body = [{"handle": "88.118/ADMIN", "index": 300}, {"handle": "88.118.2/ABC123", "index": "100"}]
    v = _one({"format": "vlist", "value": body}, type="HS_VLIST")
    assert v.data == encode_vlist(
        [Reference("88.118/ADMIN", 300), Reference("88.118.2/ABC123", 100)]
    )
    out = value_to_json(v)["data"]
    assert out["format"] == "vlist" and out["value"][1] == {
        "handle": "88.118.2/ABC123",
        "index": 100,
    }


def test_golden_site_in_and_out() -> None:
    raw = reply_body(13)
    v = HandleValue(1, "HS_SITE.PREFIX", raw)
    data = value_to_json(v)["data"]
    assert data["format"] == "site"
    site = data["value"]
    assert site["version"] == 1 and site["protocolVersion"] == "2.10"
    assert (
        site["serialNumber"] == 1 and site["primarySite"] is True and site["multiPrimary"] is False
    )
    assert "hashOption" not in site and "hashFilter" not in site and site["attributes"] == []
    (server,) = site["servers"]
    assert server["serverId"] == 1 and server["address"] == "127.0.0.1"
    assert server["publicKey"]["format"] == "key" and server["publicKey"]["value"]["kty"] == "RSA"
    assert server["interfaces"] == [
        {"query": True, "admin": True, "protocol": "TCP", "port": 2651},
        {"query": True, "admin": False, "protocol": "UDP", "port": 2651},
    ]
    assert _one(data, type="HS_SITE").data == raw  # JSON -> bytes is byte-identical
    assert site_from_json(json.loads(json.dumps(site))).to_wire() == raw


def test_site_json_input_variants_and_fallbacks() -> None:
    written = {
        "protocolVersion": "2.11",
        "serialNumber": "3",
        "primarySite": True,
        "hashOption": 0,
        "attributes": {"desc": "mapping form"},
        "servers": [
            {
                "serverId": 2,
                "address": "2001:db8::1",
                "publicKey": {"format": "hex", "value": "00"},
                "interfaces": [
                    {"query": True, "admin": False, "protocol": "HTTP", "port": 8000},
                    {"query": False, "admin": True, "protocol": 1, "port": 2641},
                ],
            },
        ],
    }
    site = site_from_json(written)
    assert (site.major, site.minor, site.serial, site.hash_option) == (2, 11, 3, 0)
    assert site.attributes == (("desc", "mapping form"),)
    (server,) = site.servers
    assert server.public_key == b"\0" and server.ip.version == 6
    assert [(i.type, i.protocol, i.port) for i in server.interfaces] == [(2, 2, 8000), (1, 1, 2641)]
    assert site_to_json(site) == {
        "version": 1,
        "protocolVersion": "2.11",
        "serialNumber": 3,
        "primarySite": True,
        "multiPrimary": False,
        "hashOption": 0,
        "attributes": [{"name": "desc", "value": "mapping form"}],
        "servers": [
            {
                "serverId": 2,
                "address": "2001:db8::1",
                "publicKey": {"format": "base64", "value": "AA=="},
                "interfaces": [
                    {"query": True, "admin": False, "protocol": "HTTP", "port": 8000},
                    {"query": False, "admin": True, "protocol": "TCP", "port": 2641},
                ],
            },
        ],
    }
    # an all-zero address and an empty key (not a key: base64 "")
    bare = site_to_json(SiteInfo(serial=1, servers=(ServerInfo(1, bytes(16), b"", ()),)))
    assert bare is not None
    assert bare["servers"][0]["address"] == "0.0.0.0"
    assert bare["servers"][0]["publicKey"] == {"format": "base64", "value": ""}
    # an interface type JSON cannot express: shown as base64, bytes kept
    raw = bytearray(reply_body(13))
    raw[-12] = 9  # first interface type byte
    v = HandleValue(1, "HS_SITE", bytes(raw))
    assert value_to_json(v)["data"]["format"] == "base64"
    assert values_from_json(values_to_json([v])) == [v]


def test_key_in_and_out() -> None:
    raw = SiteInfo.from_wire(reply_body(13)).servers[0].public_key
    v = HandleValue(300, "HS_PUBKEY", raw)
    data = value_to_json(v)["data"]
    assert data == {"format": "key", "value": public_key_to_jwk(decode_public_key(raw))}
    assert _one(data).data == raw
    assert _one({"format": "key", "value": base64.b64encode(raw).decode()}).data == raw
    # non-canonical key bytes (no trailing quirk) stay exact: base64, not a JWK
    short = HandleValue(300, "HS_PUBKEY", raw[:-4])
    assert value_to_json(short)["data"]["format"] == "base64"
    ec_jwk = public_key_to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(ValueFormatError, match="value 5: the Handle key format has no encoding"):
        _one({"format": "key", "value": ec_jwk})


def test_undecodable_structured_data_falls_back() -> None:
    for vtype in ("HS_ADMIN", "hs_vlist", "HS_SITE", "HS_PUBKEY"):
        v = HandleValue(1, vtype, b"\x00\x01garbage")
        assert value_to_json(v)["data"]["format"] == "base64"
        assert values_from_json(values_to_json([v])) == [v]
    text_admin = HandleValue(100, "HS_ADMIN", b"not an admin record")
    assert value_to_json(text_admin)["data"] == {"format": "string", "value": "not an admin record"}


# --- other fields ---------------------------------------------------------------------


def test_output_shape_and_omission_rules() -> None:
    v = HandleValue(1, "URL", b"https://e.x", ttl=60, timestamp=1767225600)
    assert value_to_json(v) == {
        "index": 1,
        "type": "URL",
        "data": {"format": "string", "value": "https://e.x"},
        "ttl": 60,
        "timestamp": "2026-01-01T00:00:00Z",
    }
    assert list(value_to_json(v)) == ["index", "type", "data", "ttl", "timestamp"]
    zero = value_to_json(HandleValue(1, "URL", b""))
    assert zero["timestamp"] == "1970-01-01T00:00:00Z"
    odd = value_to_json(
        HandleValue(1, "URL", b"", permissions=0b1100, references=(Reference("a/b", 1),))
    )
    assert odd["permissions"] == "1100" and odd["references"] == [{"handle": "a/b", "index": 1}]
    assert list(odd) == ["index", "type", "data", "permissions", "ttl", "timestamp", "references"]


def test_ttl_timestamp_permissions_in() -> None:
    v = _one(
        "x", ttl="2030-01-01T00:00:00Z", timestamp="2026-01-01T08:00:00+08:00", permissions="1111"
    )
    assert v.ttl_type == TTLType.ABSOLUTE and v.ttl == 1893456000
    assert value_to_json(v)["ttl"] == "2030-01-01T00:00:00Z"
    assert v.timestamp == 1767225600 and v.permissions == 0xF
    assert _one("x", ttl="600").ttl == 600 and _one("x", ttl="600").ttl_type == TTLType.RELATIVE
    assert _one("x", timestamp="2026-01-01T00:00:00.900Z").timestamp == 1767225600
    assert _one("x").timestamp == 0 and _one("x").ttl == 86400
    assert _one("x", extra={"anything": 1}, auth=True).index == 5  # unknown keys ignored


def test_values_from_json_shapes() -> None:
    one = {"index": 1, "type": "URL", "data": "u"}
    expected = [HandleValue(1, "URL", b"u")]
    assert values_from_json([one]) == expected
    assert values_from_json({"values": [one]}) == expected
    assert values_from_json(one) == expected
    assert values_from_json([]) == []


# --- errors ---------------------------------------------------------------------------

BAD_VALUES: list[tuple[Any, str]] = [
    ({"type": "URL", "data": "x"}, "value: index is missing"),
    ({"index": -1, "type": "URL", "data": "x"}, "value: index -1 is outside"),
    ({"index": True, "type": "URL", "data": "x"}, "not a boolean"),
    ({"index": "3x", "type": "URL", "data": "x"}, "value: index must be an integer, got '3x'"),
    ({"index": 3, "type": "", "data": "x"}, "value 3: type is missing or empty"),
    ({"index": 3, "data": "x"}, "value 3: type must be a string, got null"),
    ({"index": 3, "type": "URL"}, "value 3: data is missing"),
    (
        {"index": 3, "type": "URL", "data": 7},
        "value 3: data must be a string or a {format, value} object",
    ),
    (
        {"index": 3, "type": "URL", "data": {"format": "foo", "value": "x"}},
        "value 3: data.format 'foo' is not one of string, base64, hex, admin, vlist, site, key",
    ),
    ({"index": 3, "type": "URL", "data": {"format": "string"}}, "value 3: data.value is missing"),
    (
        {"index": 3, "type": "U", "data": {"format": "base64", "value": "@@"}},
        "value 3: data.value is not valid base64",
    ),
    (
        {"index": 3, "type": "U", "data": {"format": "hex", "value": "abc"}},
        "value 3: data.value is not valid hex",
    ),
    (
        {
            "index": 3,
            "type": "U",
            "data": {
                "format": "admin",
                "value": {"handle": "a/b", "index": 1, "permissions": "11"},
            },
        },
        "value 3: admin permissions must be 12 characters of 0/1, got '11'",
    ),
    (
        {
            "index": 3,
            "type": "U",
            "data": {"format": "admin", "value": {"index": 1, "permissions": "*"}},
        },
        "value 3: admin handle must be a string",
    ),
    (
        {"index": 3, "type": "U", "data": {"format": "vlist", "value": {}}},
        "value 3: vlist value must be an array",
    ),
    (
        {"index": 3, "type": "U", "data": {"format": "vlist", "value": [{"handle": "a/b"}]}},
        "value 3: vlist value[0].index must be an integer, got None",
    ),
    (
        {
            "index": 3,
            "type": "U",
            "data": {"format": "site", "value": {"servers": [{"serverId": 1, "address": "x"}]}},
        },
        "value 3: site servers[0].address 'x' is not an IP address",
    ),
    (
        {"index": 3, "type": "U", "data": {"format": "key", "value": {"kty": "RSA"}}},
        "value 3: JWK member 'e'",
    ),
    (
        {"index": 3, "type": "U", "data": {"format": "key", "value": "AAAA"}},
        "value 3: malformed public key",
    ),
    ({"index": 3, "type": "U", "data": "x", "ttl": -5}, "value 3: ttl -5 is outside"),
    (
        {"index": 3, "type": "U", "data": "x", "ttl": "soon"},
        "value 3: ttl 'soon' is not an ISO 8601",
    ),
    (
        {"index": 3, "type": "U", "data": "x", "permissions": "111"},
        "value 3: permissions must be 4 characters",
    ),
    (
        {"index": 3, "type": "U", "data": "x", "timestamp": "1969-01-01T00:00:00Z"},
        "outside 1970..2106",
    ),
    (
        {"index": 3, "type": "U", "data": "x", "references": [{"index": 1}]},
        "value 3: references[0].handle",
    ),
    ({"index": 3, "type": "U" * 300, "data": "x"}, "value 3 type is longer than 256 bytes"),
    ({"index": 3, "type": "U", "data": "x" * 70000}, "value 3 data is longer than 65536 bytes"),
    ({"index": 3, "type": "U", "data": "\ud800"}, "value 3: data is not valid Unicode"),
    ("just a string", "value: value must be an object, got string"),
]


@pytest.mark.parametrize(("obj", "message"), BAD_VALUES)
def test_bad_value_messages(obj: Any, message: str) -> None:
    with pytest.raises(ValueFormatError) as info:
        value_from_json(obj)
    assert message in info.value.message
    assert info.value.response_code == 202


def test_bad_value_lists() -> None:
    with pytest.raises(ValueFormatError, match=r"value 7: index 7 appears more than once"):
        values_from_json(
            [{"index": 7, "type": "A", "data": ""}, {"index": "7", "type": "B", "data": ""}]
        )
    with pytest.raises(ValueFormatError, match=r"values\[1\]: index is missing"):
        values_from_json([{"index": 1, "type": "A", "data": ""}, {"type": "B"}])
    too_many = [{"index": i, "type": "A", "data": ""} for i in range(MAX_VALUES_PER_HANDLE + 1)]
    with pytest.raises(ValueFormatError, match="exceed the limit of 1000"):
        values_from_json(too_many)
    with pytest.raises(ValueFormatError, match="expected a list"):
        values_from_json("nope")


# --- round-trip property --------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=20)
_u32 = st.integers(0, 0xFFFFFFFF)
_special_data = st.sampled_from(
    [
        GOLDEN_ADMIN,
        GOLDEN_ADMIN + b"\0\0",
        encode_vlist([Reference("a/b", 1)]),
        b"\0\0\0\x0bRSA_PUB_KEY",
    ]
)
_values = st.builds(
    HandleValue,
    index=_u32,
    type=st.one_of(
        st.sampled_from(["URL", "HS_ADMIN", "HS_VLIST", "HS_SITE", "HS_SITE.PREFIX", "HS_PUBKEY"]),
        _text.filter(lambda t: type_problem(t) is None),  # types a write may carry
    ),
    data=st.one_of(st.binary(max_size=64), _text.map(str.encode), _special_data),
    ttl=_u32,
    ttl_type=st.sampled_from(list(TTLType)),
    timestamp=_u32,
    permissions=st.integers(0, 0xF),
    references=st.lists(st.builds(Reference, _text, _u32), max_size=3).map(tuple),
)


@given(values=st.lists(_values, max_size=6, unique_by=lambda v: v.index))
def test_json_round_trip(values: list[HandleValue]) -> None:
    rendered = json.loads(json.dumps(values_to_json(values)))
    assert values_from_json(rendered) == values


@given(site_bytes=st.just(reply_body(13)), attrs=st.lists(st.tuples(_text, _text), max_size=3))
def test_site_json_round_trip(site_bytes: bytes, attrs: list[tuple[str, str]]) -> None:
    base = SiteInfo.from_wire(site_bytes)
    site = SiteInfo(
        serial=7, servers=base.servers, hash_option=0, hash_filter="f", attributes=tuple(attrs)
    )
    rendered = site_to_json(site)
    assert rendered is not None
    assert site_from_json(json.loads(json.dumps(rendered))) == site

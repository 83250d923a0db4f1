"""protocol.wirejson: the JSON of values read in place equals ``values_to_json`` of the
same values decoded, filtered and redacted (the REST API's anonymous GET)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import TTLType
from protocol.jsonvalues import values_to_json
from protocol.structured import AdminRef, encode_admin
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue, Reference, select_values
from protocol.wirejson import values_json
from protocol.wirescan import scan, select

SECRET_TYPE = "HS_SECKEY"
REDACTED = b"\x00\x00secret set, not shown"
ADMIN = encode_admin(AdminRef("0.NA/88.118", 200, 0x0FF2))

value = st.builds(
    HandleValue,
    index=st.integers(0, 0xFFFFFFFF),
    type=st.sampled_from(["URL", "EMAIL", "HS_ADMIN", "HS_SECKEY", "hs_seckey", "缸号", "DESC"]),
    data=st.one_of(
        st.binary(max_size=30),
        st.text(max_size=20).map(str.encode),
        st.just(ADMIN),
    ),
    ttl=st.integers(0, 0xFFFFFFFF),
    ttl_type=st.sampled_from(list(TTLType)),
    timestamp=st.one_of(st.integers(0, 0xFFFFFFFF), st.just(1_795_500_000)),
    permissions=st.integers(0, 15),
    references=st.lists(
        st.builds(Reference, st.sampled_from(["88.118.2/A", "名/字"]), st.integers(0, 9)),
        max_size=2,
    ).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(value, max_size=10),
    indexes=st.lists(st.integers(0, 4), max_size=2),
    types=st.lists(st.sampled_from(["URL", "hs_seckey", "HS_ADMIN", "X"]), max_size=2),
    public_only=st.booleans(),
)
def test_json_from_the_wire_equals_json_of_the_decoded_values(
    values: list[HandleValue], indexes: list[int], types: list[str], public_only: bool
) -> None:
    values = [dataclasses.replace(v, index=i) for i, v in enumerate(values)]
    wire = encode_values(values)
    spans = scan(wire)
    assert spans is not None
    kept = select(
        wire,
        spans,
        indexes,
        types,
        public_only=public_only,
        redact_type=SECRET_TYPE,
        redacted=REDACTED,
    )
    slow = select_values(decode_values(wire), indexes, types)
    if public_only:
        slow = [v for v in slow if v.public_read]
    slow = [
        dataclasses.replace(v, data=REDACTED) if v.type.upper() == SECRET_TYPE else v for v in slow
    ]
    got = values_json(kept.source, kept.spans, redact_type=SECRET_TYPE, redacted=REDACTED)
    assert got == values_to_json(slow)

"""protocol.values: which value types may be stored (``type_problem``, applied by
``valuecodec.check_value`` to new values only), and ``select_values`` matching exactly
as ``HandleValue.type_matches`` does, at the cost of one set lookup per value."""

from __future__ import annotations

import random

import pytest

from protocol.errors import LocalProtocolError
from protocol.valuecodec import check_value, decode_values, encode_values
from protocol.values import MAX_TYPE_BYTES, HandleValue, select_values, type_problem

GOOD_TYPES = [
    "URL",
    "EMAIL",
    "HS_ADMIN",
    "HS_SITE.PREFIX",
    "10320/loc",
    "0.TYPE/URL",
    "21.T11148/076759916209e5d62bd5",
    "dyeLot",
    "URL.ALT",
    "x-custom_type-2",
    "缸号",  # letters of any script
    "A B",  # an inner space
    "T" * MAX_TYPE_BYTES,
    "\ue000",  # private use: printable as far as anyone knows
]
BAD_TYPES = {
    "": "is empty",
    "A\x00B": "U+0000 at position 1",
    "URL\n": "U+000A at position 3",
    "\tURL": "U+0009 at position 0",
    "UR\x7fL": "U+007F",
    "URL\u200b": "U+200B",  # zero-width space (Cf)
    "\u202eLRU": "U+202E",  # right-to-left override (Cf)
    "\ufeffURL": "U+FEFF",
    "URL\u2028": "U+2028",
    "URL\u00a0": "U+00A0",  # no-break space: looks like a space, is not one
    "A\u3000B": "U+3000",
    " URL": "starts or ends with a space",
    "URL ": "starts or ends with a space",
    "T" * (MAX_TYPE_BYTES + 1): f"longer than {MAX_TYPE_BYTES} bytes",
    "缸" * 86: f"longer than {MAX_TYPE_BYTES} bytes",  # 258 bytes in UTF-8
}


@pytest.mark.parametrize("vtype", GOOD_TYPES)
def test_printable_types_are_accepted(vtype: str) -> None:
    assert type_problem(vtype) is None
    check_value(HandleValue(1, vtype, b"x"))


@pytest.mark.parametrize("vtype, why", list(BAD_TYPES.items()))
def test_control_and_invisible_characters_are_refused(vtype: str, why: str) -> None:
    problem = type_problem(vtype)
    assert problem is not None and why in problem
    with pytest.raises(LocalProtocolError) as err:
        check_value(HandleValue(7, vtype, b"x"))
    assert err.value.message.startswith("value 7 type ") and why in err.value.message


def test_stored_odd_types_still_decode() -> None:
    """The rule is for new values: a record written before it still reads back."""
    odd = (HandleValue(1, "A\x00B", b"x"), HandleValue(2, " URL\u200b", b"y"))
    assert decode_values(encode_values(odd)) == odd


def test_select_values_matches_type_matches() -> None:
    rng = random.Random(14)
    pool = ["URL", "URL.ALT", "url.alt.x", "EMAIL", "HS_ADMIN", "HS_SITE.PREFIX", "URLX", "缸号"]
    values = [HandleValue(i, rng.choice(pool), b"") for i in range(1, 60)]
    wanted_pool = [*pool, "URL.", "hs_site.", "url", "NONE", "URL.ALT.", ""]
    for _ in range(300):
        types = tuple(rng.sample(wanted_pool, rng.randint(0, 4)))
        indexes = tuple(rng.sample(range(70), rng.randint(0, 3)))
        expected = (
            values
            if not types and not indexes
            else [v for v in values if v.index in indexes or any(v.type_matches(t) for t in types)]
        )
        assert select_values(values, indexes, types) == expected, (types, indexes)

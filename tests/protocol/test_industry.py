"""protocol.industry: the structure checks of the industry codes template fields carry
(docs/industry-data.md). Valid codes come from the demo dataset and the code builders
of node.demo.templates; each kind of damage (length, characters, check digit, one
structure part) must be refused with a reason naming what is wrong."""

from __future__ import annotations

import pytest

from node.demo.dataset import CREPE, ENTERPRISES, GTIN, LIFTS, PONGEE, WUJIANG
from node.demo.templates import (
    credit_code,
    device_code,
    fabric_code,
    gtin_check_digit,
    registration_code,
)
from protocol.creditcode import ALPHABET, check_character, credit_code_problem
from protocol.industry import (
    CHECKS,
    device_code_problem,
    fabric_code_problem,
    gtin_problem,
    registration_code_problem,
)

# Published outside this project: the worked example of GB 32100-2015, and the GS1
# mod-10 example of an EAN-13 (4006381333931) written as a GTIN-14.
PUBLISHED_CREDIT_CODE = "91350100M000100Y43"
PUBLISHED_GTIN = "04006381333931"


def registration_of(lift_index: int) -> str:
    """The registration code the demo writes for a lift (its ``registrationCode`` value)."""
    values = LIFTS[lift_index].to_handle().values
    return next(str(v["data"]["value"]) for v in values if v["type"] == "registrationCode")


def with_digit(code: str, position: int, digit: str) -> str:
    return code[:position] + digit + code[position + 1 :]


FABRIC = fabric_code("301", "2100", "075072", "1010")
REGISTRATION = registration_code("3110", WUJIANG, "202405", "0012")
DEVICE = device_code("3110", "03217", "2024", "00158")


def test_the_table_names_every_check() -> None:
    # The names templates give in their ``check`` metadata (docs/industry-data.md).
    assert dict(CHECKS) == {
        "gbt22970": fabric_code_problem,
        "elevator-registration": registration_code_problem,
        "elevator-device": device_code_problem,
        "gtin": gtin_problem,
        "credit-code": credit_code_problem,
    }


VALID = [
    ("gbt22970", FABRIC),
    ("gbt22970", CREPE["fabricCode"]),
    ("gbt22970", PONGEE["fabricCode"]),
    ("gbt22970", "00100010000010001"),  # a 1 in each part: nothing all zeros
    *[("elevator-registration", registration_of(n)) for n in range(len(LIFTS))],
    ("elevator-registration", REGISTRATION),
    ("elevator-registration", registration_code("3310", "110101", "195001", "0000")),
    ("elevator-registration", registration_code("3000", "820000", "209912", "9999")),
    *[("elevator-device", lift.device_code) for lift in LIFTS],
    ("elevator-device", DEVICE),
    ("elevator-device", device_code("3999", "00000", "1950", "00000")),
    ("elevator-device", device_code("3000", "99999", "2099", "99999")),
    ("gtin", GTIN),
    ("gtin", PUBLISHED_GTIN),
    ("gtin", "0690123456789" + gtin_check_digit("0690123456789")),
    ("gtin", "00000000000000"),
    *[("credit-code", e.credit_code) for e in ENTERPRISES],
    ("credit-code", PUBLISHED_CREDIT_CODE),
    ("credit-code", credit_code("110105", "MA01ABCD")),
]


@pytest.mark.parametrize(("check", "code"), VALID)
def test_well_formed_codes_pass(check: str, code: str) -> None:
    assert CHECKS[check](code) is None


def test_the_demo_builders_and_the_checks_agree_on_check_characters() -> None:
    # The credit code's own helper builds the same 18th character the demo's builder does.
    for e in ENTERPRISES:
        assert check_character(e.credit_code[:17]) == e.credit_code[17]
    assert GTIN == "06901234567892"


INVALID = [
    # GB/T 22970 fabric code: length, characters, each part all zeros
    ("gbt22970", FABRIC[:-1], "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", FABRIC + "0", "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", "", "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", "301-2100-075072-1010", "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", with_digit(FABRIC, 5, "O"), "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", with_digit(FABRIC, 0, "３"), "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", " " + FABRIC[1:], "a GB/T 22970 fabric code must be 17 digits"),
    ("gbt22970", fabric_code("000", "2100", "075072", "1010"), "its name part (000) is all zeros"),
    (
        "gbt22970",
        fabric_code("301", "0000", "075072", "1010"),
        "its raw material part (0000) is all zeros",
    ),
    (
        "gbt22970",
        fabric_code("301", "2100", "000000", "1010"),
        "its yarn structure part (000000) is all zeros",
    ),
    (
        "gbt22970",
        fabric_code("301", "2100", "075072", "0000"),
        "its weave part (0000) is all zeros",
    ),
    # elevator registration code: length, characters, class, province, year, month
    ("elevator-registration", REGISTRATION[:-1], "an elevator registration code must be 20 digits"),
    (
        "elevator-registration",
        REGISTRATION + "1",
        "an elevator registration code must be 20 digits",
    ),
    (
        "elevator-registration",
        with_digit(REGISTRATION, 19, "X"),
        "an elevator registration code must be 20 digits",
    ),
    (
        "elevator-registration",
        with_digit(REGISTRATION, 3, "٣"),  # an Arabic-Indic digit is a digit, not ASCII
        "an elevator registration code must be 20 digits",
    ),
    (
        "elevator-registration",
        registration_code("2110", WUJIANG, "202405", "0012"),
        "its equipment class 2110 is not a lift class (3xxx)",
    ),
    (
        "elevator-registration",
        registration_code("4110", WUJIANG, "202405", "0012"),
        "its equipment class 4110 is not a lift class (3xxx)",
    ),
    (
        "elevator-registration",
        registration_code("3110", "990509", "202405", "0012"),
        "its area code 990509 names no province",
    ),
    (
        "elevator-registration",
        registration_code("3110", "000000", "202405", "0012"),
        "its area code 000000 names no province",
    ),
    (
        "elevator-registration",
        registration_code("3110", "100101", "202405", "0012"),
        "its area code 100101 names no province",
    ),
    (
        "elevator-registration",
        registration_code("3110", WUJIANG, "194912", "0012"),
        "its registration year 1949 is not between 1950 and 2099",
    ),
    (
        "elevator-registration",
        registration_code("3110", WUJIANG, "210001", "0012"),
        "its registration year 2100 is not between 1950 and 2099",
    ),
    (
        "elevator-registration",
        registration_code("3110", WUJIANG, "202400", "0012"),
        "its registration month 00 is not 01-12",
    ),
    (
        "elevator-registration",
        registration_code("3110", WUJIANG, "202413", "0012"),
        "its registration month 13 is not 01-12",
    ),
    # elevator device code: length, characters, variety, year
    ("elevator-device", DEVICE[:-1], "an elevator device code must be 18 digits"),
    ("elevator-device", REGISTRATION, "an elevator device code must be 18 digits"),
    ("elevator-device", with_digit(DEVICE, 8, "A"), "an elevator device code must be 18 digits"),
    (
        "elevator-device",
        device_code("2110", "03217", "2024", "00158"),
        "its variety 2110 is not a lift variety (3xxx)",
    ),
    (
        "elevator-device",
        device_code("3110", "03217", "1949", "00158"),
        "its manufacture year 1949 is not between 1950 and 2099",
    ),
    (
        "elevator-device",
        device_code("3110", "03217", "0000", "00158"),
        "its manufacture year 0000 is not between 1950 and 2099",
    ),
    # GTIN-14: length, characters, check digit
    ("gtin", GTIN[1:], "a GTIN-14 must be 14 digits"),  # a GTIN-13 is not padded for you
    ("gtin", "0" + GTIN, "a GTIN-14 must be 14 digits"),
    ("gtin", with_digit(GTIN, 4, "x"), "a GTIN-14 must be 14 digits"),
    ("gtin", with_digit(GTIN, 13, "3"), "its check digit is wrong"),
    ("gtin", with_digit(PUBLISHED_GTIN, 13, "0"), "its check digit is wrong"),
    # unified social credit code: length, characters, check character
    (
        "credit-code",
        PUBLISHED_CREDIT_CODE[:-1],
        "credit code '91350100M000100Y4' must be 18 characters, not 17",
    ),
    (
        "credit-code",
        with_digit(PUBLISHED_CREDIT_CODE, 8, "O"),  # O is left out of the alphabet (0)
        "credit code '91350100O000100Y43' has 'O' at position 9 "
        f"(allowed: digits and {ALPHABET[10:]})",
    ),
    (
        "credit-code",
        PUBLISHED_CREDIT_CODE.lower(),
        "credit code '91350100m000100y43' has 'm' at position 9 "
        f"(allowed: digits and {ALPHABET[10:]})",
    ),
    (
        "credit-code",
        with_digit(PUBLISHED_CREDIT_CODE, 17, "4"),
        "credit code '91350100M000100Y44' has check character '4', expected '3'",
    ),
]


@pytest.mark.parametrize(("check", "code", "reason"), INVALID)
def test_malformed_codes_are_refused_naming_what_is_wrong(
    check: str, code: str, reason: str
) -> None:
    assert CHECKS[check](code) == reason


@pytest.mark.parametrize("position", range(14))
def test_a_gtin_with_any_one_digit_changed_is_refused(position: int) -> None:
    # GS1 mod 10 catches every single-digit error, whatever its position.
    for digit in "0123456789":
        changed = with_digit(GTIN, position, digit)
        expected = None if changed == GTIN else "its check digit is wrong"
        assert gtin_problem(changed) == expected, changed


def test_a_gtin_with_two_neighbours_swapped_is_refused() -> None:
    # Weights 3 and 1 alternate, so swapping neighbours that differ (by anything but 5)
    # changes the sum.
    for n in range(13):
        a, b = GTIN[n], GTIN[n + 1]
        if a == b or abs(int(a) - int(b)) == 5:
            continue
        swapped = GTIN[:n] + b + a + GTIN[n + 2 :]
        assert gtin_problem(swapped) == "its check digit is wrong", swapped


@pytest.mark.parametrize("position", range(17))
def test_a_credit_code_with_any_one_character_changed_is_refused(position: int) -> None:
    # Mod 31 with weights prime to 31: every single substitution changes the check.
    code = ENTERPRISES[0].credit_code
    for c in ALPHABET:
        changed = with_digit(code, position, c)
        if changed != code:
            problem = CHECKS["credit-code"](changed)
            assert problem is not None and "check character" in problem, changed


def test_every_part_of_a_fabric_code_is_checked_on_its_own() -> None:
    # Zeros that straddle two parts are fine; only a part that is wholly zero is not.
    assert fabric_code_problem("30000000000001010") == "its raw material part (0000) is all zeros"
    assert fabric_code_problem(fabric_code("300", "0010", "000001", "1000")) is None
    assert (
        fabric_code_problem("30121000000000001") == "its yarn structure part (000000) is all zeros"
    )


def test_the_first_problem_found_is_the_one_reported() -> None:
    # Length before structure: a short code with a bad class is "must be 20 digits".
    assert registration_code_problem("2" * 19) == "an elevator registration code must be 20 digits"
    # Class before area before date.
    bad_everywhere = registration_code("2110", "990000", "194913", "0000")
    assert registration_code_problem(bad_everywhere) == (
        "its equipment class 2110 is not a lift class (3xxx)"
    )
    assert registration_code_problem("3" + bad_everywhere[1:]) == (
        "its area code 990000 names no province"
    )

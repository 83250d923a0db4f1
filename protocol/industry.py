"""Structure checks of the industry codes the templates carry (docs/industry-data.md):
pure functions returning None when a code is well formed, else the reason.

- GB/T 22970 fabric code: 17 digits, name (3) + raw material (4) + yarn structure (6)
  + weave (4). The standard's code tables are not public, so the parts are checked
  for shape (digits, no all-zero part), not looked up.
- Elevator registration code (注册代码, legacy): 20 digits, 4-digit equipment class
  (3xxx: lifts and escalators, TSG 08) + 6-digit administrative area (a province code
  11-82 first) + YYYYMM of registration + 4-digit sequence.
- Elevator device code (设备代码, lifetime): 18 digits, 4-digit variety (3xxx) +
  5-digit manufacturer + 4-digit year + 5-digit sequence.
- GTIN-14 (GS1 mod 10) and the unified social credit code (GB 32100-2015).
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.creditcode import credit_code_problem

# GB/T 2260 province-level codes (the first two digits of an area code).
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82}
)
_FIRST_YEAR, _LAST_YEAR = 1950, 2099


def _digits(code: str, n: int, what: str) -> str | None:
    if len(code) != n or not code.isascii() or not code.isdigit():
        return f"{what} must be {n} digits"
    return None


def fabric_code_problem(code: str) -> str | None:
    problem = _digits(code, 17, "a GB/T 22970 fabric code")
    if problem:
        return problem
    parts = {"name": code[0:3], "raw material": code[3:7], "yarn structure": code[7:13]}
    parts["weave"] = code[13:17]
    for part, digits in parts.items():
        if not digits.strip("0"):
            return f"its {part} part ({digits}) is all zeros"
    return None


def _year_month(year: str, month: str | None, what: str) -> str | None:
    if not _FIRST_YEAR <= int(year) <= _LAST_YEAR:
        return f"its {what} year {year} is not between {_FIRST_YEAR} and {_LAST_YEAR}"
    if month is not None and not 1 <= int(month) <= 12:
        return f"its {what} month {month} is not 01-12"
    return None


def registration_code_problem(code: str) -> str | None:
    problem = _digits(code, 20, "an elevator registration code")
    if problem:
        return problem
    if code[0] != "3":
        return f"its equipment class {code[0:4]} is not a lift class (3xxx)"
    if int(code[4:6]) not in _PROVINCES:
        return f"its area code {code[4:10]} names no province"
    return _year_month(code[10:14], code[14:16], "registration")


def device_code_problem(code: str) -> str | None:
    problem = _digits(code, 18, "an elevator device code")
    if problem:
        return problem
    if code[0] != "3":
        return f"its variety {code[0:4]} is not a lift variety (3xxx)"
    return _year_month(code[9:13], None, "manufacture")


def gtin_problem(code: str) -> str | None:
    problem = _digits(code, 14, "a GTIN-14")
    if problem:
        return problem
    body, check = code[:13], int(code[13])
    total = sum(int(d) * (3 if n % 2 == 0 else 1) for n, d in enumerate(reversed(body)))
    if (10 - total % 10) % 10 != check:
        return "its check digit is wrong"
    return None


CHECKS: dict[str, Callable[[str], str | None]] = {
    "gbt22970": fabric_code_problem,
    "elevator-registration": registration_code_problem,
    "elevator-device": device_code_problem,
    "gtin": gtin_problem,
    "credit-code": credit_code_problem,
}

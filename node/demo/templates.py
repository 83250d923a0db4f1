"""Data templates of the demo node (docs/idis.md "Templates") and the code schemes
their fields hold (docs/industry-data.md): pure data and pure functions, no I/O.

A template names the fields a record of one kind carries: each item has a Chinese
name (what the top-level's template service shows), an English key that is also the
handle value ``type`` the field is stored under, and an index at 2000 or above. The
record builders in ``node.demo.dataset`` place values by these items, so a record can never
drift from the template it cites at index 1001.
"""

from __future__ import annotations

from node.templates.shipped import (
    DYELOT,
    ELEVATOR_NODE,
    EVENT,
    LIFT,
    MAINTENANCE,
    ROLL,
    SHIPPED,
    TEXTILE_NODE,
    YARN,
)

__all__ = ["DYELOT", "ELEVATOR_NODE", "EVENT", "MAINTENANCE", "ROLL", "TEXTILE_NODE", "YARN"]


# The templates are the product's (node.templates.shipped); the demo's records follow them.
ELEVATOR = LIFT
TEMPLATES = SHIPPED


# --- code schemes -----------------------------------------------------------------

# GB 32100-2015 unified social credit code: 1 registration authority + 1 kind + 6 area
# + 9 GB 11714 organisation code (its own check last) + 1 check character.
CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # digits and letters but I, O, S, V, Z
CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def credit_check_char(first17: str) -> str:
    """The 18th character: (31 - Σ value×weight mod 31) mod 31, in the code alphabet."""
    total = sum(CREDIT_ALPHABET.index(c) * w for c, w in zip(first17, CREDIT_WEIGHTS, strict=True))
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def _org_check_char(body8: str) -> str:
    """GB 11714: 11 - Σ value×weight mod 11 (A=10 ... Z=35); 10 is written X, 11 is 0."""
    check = 11 - sum(int(c, 36) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def credit_code(area: str, org_body: str, authority: str = "9", kind: str = "1") -> str:
    """Authority 9 (market regulation) + kind 1 (enterprise) + area + organisation code
    (8 characters + its check) + the overall check character."""
    first17 = authority + kind + area + org_body + _org_check_char(org_body)
    return first17 + credit_check_char(first17)


def fabric_code(category: str, material: str, yarn: str, weave: str) -> str:
    """A 17-digit GB/T 22970 fabric code: name (3) + raw material (4) + yarn structure
    (6) + weave (4). The layout follows the standard's four parts, but the digits here
    are illustrative, not looked up in its code tables."""
    return _digits(category + material + yarn + weave, 17, "fabric code")


def gtin_check_digit(body: str) -> str:
    """GS1 mod-10: weights 3,1,3,... from the rightmost digit of the body."""
    total = sum(int(d) * (3 if n % 2 == 0 else 1) for n, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def device_code(variety: str, maker: str, year: str, sequence: str) -> str:
    """设备代码: 4-digit variety + 5-digit manufacturer + 4-digit year + 5-digit sequence."""
    return _digits(variety + maker + year + sequence, 18, "device code")


def registration_code(variety: str, area: str, yyyymm: str, sequence: str) -> str:
    """Legacy 注册代码: 4-digit class + 6-digit area + YYYYMM + 4-digit sequence."""
    return _digits(variety + area + yyyymm + sequence, 20, "registration code")


def _digits(code: str, length: int, what: str) -> str:
    if len(code) != length or not code.isdigit():
        raise ValueError(f"{what} {code!r} is not {length} digits")
    return code

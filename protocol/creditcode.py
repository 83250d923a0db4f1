"""Unified social credit code (统一社会信用代码, GB 32100-2015) validation."""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_character(first17: str) -> str:
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=False))
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """None when valid, else a reason a user can act on."""
    if len(code) != 18:
        return f"credit code {code!r} must be 18 characters, not {len(code)}"
    for pos, ch in enumerate(code):
        if ch not in ALPHABET:
            return f"credit code {code!r} has {ch!r} at position {pos + 1} (allowed: digits and {ALPHABET[10:]})"
    expected = check_character(code[:17])
    if code[17] != expected:
        return f"credit code {code!r} has check character {code[17]!r}, expected {expected!r}"
    return None

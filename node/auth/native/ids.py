"""Session and challenge ids: random, non-zero, unique among the live ones.

The reference numbers both from one counter starting at 1 (admin capture), which lets
anyone guess the next id; ids here are drawn at random from the u32 space and never
reuse a live one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable


def new_id(taken: Callable[[int], bool]) -> int:
    while True:
        candidate = secrets.randbits(32)
        if candidate and not taken(candidate):
            return candidate

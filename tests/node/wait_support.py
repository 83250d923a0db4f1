"""Waiting for a condition another task brings about: bounded, and never a sleep standing
in for an event (a test that must wait a time moves a clock instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    condition: Callable[[], object], timeout_s: float = 15.0, *, poll_s: float = 0.0
) -> None:
    """Yield to the loop (every ``poll_s``) until ``condition()`` holds."""

    async def spin() -> None:
        while not condition():
            await asyncio.sleep(poll_s)

    await asyncio.wait_for(spin(), timeout_s)

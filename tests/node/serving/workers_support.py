"""Shared pieces of the ``idnode serve --workers N`` tests: the workers the supervisor
says are up, and a bounded wait on a condition."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from tests.node.process_support import NodeProcess

WORKER_UP = re.compile(
    r"idnode\.workers: worker (?P<index>\d+) up: pid (?P<pid>\d+), admin port (?P<admin>\d+)"
)
DEADLINE_S = 30.0


def workers_up(node: NodeProcess) -> dict[int, tuple[int, int]]:
    """pid -> (index, admin port), from the supervisor's "worker i up" lines so far."""
    return {
        int(m["pid"]): (int(m["index"]), int(m["admin"]))
        for m in (WORKER_UP.search(line) for line in list(node.lines))
        if m
    }


async def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S
) -> None:
    """Poll ``condition`` until it holds or the deadline passes (a bounded wait on a
    condition, not a sleep standing in for one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)

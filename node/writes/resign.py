"""``idnode resign``: re-sign stored records with the current key, in batches, resumably.

Handles are walked in key order, ``batch`` at a time; each record is written through
``WriteService.resign`` (its own short transaction with ``expected_version``: a
concurrent write wins and is signed on its own), so no lock is held across records or
batches and resolution is never blocked. After each batch the last handle key done is
saved in the registry (``resign_progress``, migration 0002); a run that stops resumes after it, a run
that completes removes its row.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from node.writes.service import WriteService
from protocol.handle import normalise, parse_handle
from registry.rows import ResignProgress
from registry.store import Registry

ALL = "*"


def progress_printer(
    out: TextIO = sys.stderr, width: int = 30
) -> Callable[[int, int, Counter[str]], None]:
    """A one-line progress bar, rewritten in place (``\\r``), newline at the end."""

    def show(done: int, total: int, counts: Counter[str]) -> None:
        filled = width * done // total if total else width
        tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        end = "\n" if done >= total else ""
        out.write(f"\rresign [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {tally}{end}")
        out.flush()

    return show


async def resign_all(
    registry: Registry,
    writes: WriteService,
    *,
    prefix: str | None = None,
    batch: int = 500,
    actor: str = "idnode resign",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Callable[[int, int, Counter[str]], None] | None = None,
    restart: bool = False,
) -> Counter[str]:
    """Re-sign every record (under ``prefix``); returns the outcome counts of this run."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    job = normalise(prefix) if prefix else ALL
    saved = None if restart else await registry.resign_progress(job)
    last_key, done = (saved.last_key, saved.done) if saved is not None else ("", 0)
    total = done + await registry.resign_remaining(last_key, prefix)
    counts: Counter[str] = Counter()
    if progress is not None:
        progress(done, total, counts)
    while True:
        rows = await registry.resign_batch(last_key, prefix, batch)
        if not rows:
            break
        for handle, _key in rows:
            counts[await writes.resign(parse_handle(handle), actor=actor, now=clock())] += 1
        last_key, done = rows[-1][1], done + len(rows)
        await registry.save_resign_progress(job, ResignProgress(last_key, done), clock())
        if progress is not None:
            progress(done, max(total, done), counts)
    await registry.clear_resign_progress(job)
    if progress is not None and done < total:  # records deleted meanwhile: finish the line
        progress(total, total, counts)
    return counts

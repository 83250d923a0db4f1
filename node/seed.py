"""Seeding a registry: the demo dataset for ``idnode serve --demo``, and record files in
the Handle REST value shape (used for the protocol vectors and imports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from protocol.handle import parse_handle
from protocol.jsonvalues import values_from_json
from registry.errors import Conflict
from registry.store import Registry

from .demo import demo_dataset
from .writes import WriteService

DEMO_ACTOR = "idnode:demo"


async def seed_records(
    registry: Registry,
    records: Iterable[tuple[str, Any]],
    *,
    actor: str,
    now: datetime,
    keep_timestamps: bool = False,
    writes: WriteService | None = None,
) -> int:
    """Put each (handle, values-in-REST-shape) record; return how many changed. Writes
    go through the write service, so HS_SECKEY secrets are stored hashed."""
    writes = writes or WriteService(registry)
    changed = 0
    for text, values_json in records:
        handle = parse_handle(text)
        result = await writes.put(
            handle, values_from_json(values_json), actor=actor, now=now, source="seed",
            keep_timestamps=keep_timestamps,
        )
        changed += result.changed
    return changed


async def seed_demo(
    registry: Registry, now: datetime, *, writes: WriteService | None = None
) -> Mapping[str, int]:
    """Load the demo textile and elevator data; running it again changes nothing (a
    demo secret already stored as a hash of the same secret keeps that hash)."""
    data = demo_dataset()
    known = {e["credit_code"] for e in await registry.list_enterprises()}
    added_enterprises = 0
    for ent in data.enterprises:
        if ent.credit_code not in known:
            await registry.add_enterprise(ent.name, ent.credit_code, ent.contact, now)
            added_enterprises += 1
    added_prefixes = 0
    for p in data.prefixes:
        try:
            await registry.add_prefix(p.prefix, p.credit_code, now, p.status)
            added_prefixes += 1
        except Conflict:
            pass
    changed = await seed_records(
        registry, ((h.handle, h.values) for h in data.handles), actor=DEMO_ACTOR, now=now,
        writes=writes,
    )
    return {"enterprises": added_enterprises, "prefixes": added_prefixes, "handles": changed}

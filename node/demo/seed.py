"""Seeding a registry: the demo dataset for ``idnode serve --demo``, and record files in
the Handle REST value shape (the protocol vectors, imports)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from node.demo.dataset import demo_dataset
from node.templates.catalog import registry_catalog
from node.writes.service import WriteService
from protocol.handle import normalise, parse_handle
from protocol.jsonvalues import values_from_json
from registry.store import Registry

DEMO_ACTOR = "idnode:demo"


async def seed_records(
    registry: Registry,
    records: Iterable[tuple[str, Any]],
    *,
    actor: str,
    now: datetime,
    keep_timestamps: bool = False,
    writes: WriteService | None = None,
    missing_only: bool = False,
) -> int:
    """Put each (handle, values-in-REST-shape) record; return how many changed. Writes
    go through the write service (HS_SECKEY rules, signing, history). ``missing_only``:
    leave a handle that exists as it is, whatever it holds."""
    writes = writes or WriteService(registry, templates=registry_catalog(registry))
    changed = 0
    for text, values_json in records:
        handle = parse_handle(text)
        if missing_only and await registry.get_handle(handle.key) is not None:
            continue
        result = await writes.put(
            handle,
            values_from_json(values_json),
            actor=actor,
            now=now,
            source="seed",
            keep_timestamps=keep_timestamps,
        )
        changed += result.changed
    return changed


async def seed_demo(
    registry: Registry,
    now: datetime,
    *,
    writes: WriteService | None = None,
    only_under: Sequence[str] = (),
    top_level: bool = False,
) -> Mapping[str, int]:
    """Add whatever of the demo textile and elevator data is missing: enterprises,
    prefixes and records that already exist are left as they are, so an operator's edit
    of a demo record (``88.118/ADMIN``'s secret, say) survives every restart."""
    data = demo_dataset(only_under, top_level=top_level)
    known = {e.credit_code for e in await registry.list_enterprises()}
    added_enterprises = 0
    for ent in data.enterprises:
        if ent.credit_code not in known:
            await registry.add_enterprise(ent.name, ent.credit_code, ent.contact, now)
            added_enterprises += 1
    registered = {p.prefix_key for p in await registry.list_prefixes()}
    added_prefixes = 0
    for p in data.prefixes:
        if normalise(p.prefix) not in registered:
            await registry.add_prefix(p.prefix, p.credit_code, now, p.status)
            added_prefixes += 1
    added = await seed_records(
        registry,
        ((h.handle, h.values) for h in data.handles),
        actor=DEMO_ACTOR,
        now=now,
        writes=writes,
        missing_only=True,
    )
    return {
        "enterprises added": added_enterprises,
        "prefixes added": added_prefixes,
        "records added": added,
    }

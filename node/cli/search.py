"""``idnode search``: the operator's search by field (GET /api/search without the
HTTP front), reading the registry's field index directly: "every roll of dye lot X"
over every prefix, or the ones named with ``--prefix``. The operator holds the
database, so no per-admin isolation applies here (docs/rest-api.md "Search by field").
"""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.common import AddCommand, UserError, print_json
from node.runtime.database import cli_database
from node.settings import Settings
from node.templates.catalog import registry_catalog
from protocol.templates import Field, Template
from registry.store import MAX_PAGE_SIZE, SEARCH_COUNT_BOUND


def _field(template: Template, name: str) -> Field:
    field = template.field(name)
    if field is not None and field.searchable:
        return field
    usable = ", ".join(f.key for f in template.fields if f.searchable) or "none"
    what = "has no field" if field is None else "does not index the field"
    raise UserError(
        f"template {template.handle} {what} {name}; searchable fields (indexed or unique): {usable}"
    )


async def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_PAGE_SIZE:
        raise UserError(f"--limit must be 1..{MAX_PAGE_SIZE}, not {args.limit}")
    async with cli_database(settings) as db:
        template = await registry_catalog(db.registry).get(args.template)
        if template is None:
            raise UserError(
                f"no template {args.template} in this registry (a record holding an "
                "IDIS_TEMPLATE value at index 1000)"
            )
        field = _field(template, args.field)
        handles: list[str] = []
        after = args.after
        while True:
            total, page, after = await db.registry.search_fields(
                args.prefix or None,
                template.handle,
                field.key,
                args.value,
                after=after,
                limit=args.limit,
                unique=not field.indexed,
            )
            handles += page
            if not args.all or after is None:
                break
    reply: dict[str, Any] = {
        "template": template.handle,
        "field": field.key,
        "value": args.value,
        "handles": handles,
        "next": after,
        "total": total if total <= SEARCH_COUNT_BOUND else f"more than {SEARCH_COUNT_BOUND}",
    }
    print_json(reply)
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    p = command(
        "search",
        cmd_search,
        "find records by a template field's value (e.g. every roll of one dye lot)",
        sub,
    )
    p.add_argument("--template", required=True, help="e.g. 88.118/TPL.TEXTILE.ROLL.V1")
    p.add_argument("--field", required=True, help="an indexed or unique field, e.g. dyeLot")
    p.add_argument("--value", required=True, help="the exact value")
    p.add_argument(
        "--prefix", action="append", help="only under this prefix (repeatable; default: all)"
    )
    p.add_argument("--limit", type=int, default=100, help="page size (default 100)")
    p.add_argument("--after", default="", help="the previous page's next (a handle key)")
    p.add_argument("--all", action="store_true", help="every page, not just one")

"""``idnode prefix``: who holds which prefix, in what state (``idnode enterprise``:
``node.cli.enterprise``). An operator's registration and status changes are recorded
in the prefix's review trail as ``operator`` steps (docs/enterprises.md)."""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.common import AddCommand, actor, now, print_json
from node.runtime.database import Database, cli_database
from node.settings import Settings
from registry.reviews import PrefixReviews
from registry.rows import PrefixStatus


def _status(value: str) -> PrefixStatus:
    try:
        return PrefixStatus.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reviews(db: Database) -> PrefixReviews:
    return PrefixReviews(db.registry.pool, target=db.registry.target)


async def cmd_prefix_add(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        await _reviews(db).register(
            args.prefix, args.enterprise, args.status, actor=actor(), reason="", now=now()
        )
    print(f"prefix {args.prefix} added ({args.status.label})")
    return 0


async def cmd_prefix_list(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        rows = await db.registry.list_prefixes()
    print_json([{**_fields(r), "status_name": r.status_name} for r in rows])
    return 0


def _fields(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}


async def cmd_prefix_set_status(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        await _reviews(db).set_status(
            args.prefix, args.status, actor=actor(), reason=args.reason, now=now()
        )
    print(f"prefix {args.prefix} is now {args.status.label}")
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    pre = sub.add_parser("prefix", help="prefixes").add_subparsers(dest="sub", required=True)
    p = command("add", cmd_prefix_add, "register a prefix for an enterprise", pre)
    p.add_argument("prefix")
    p.add_argument("--enterprise", required=True, metavar="CREDIT_CODE")
    p.add_argument(
        "--status",
        type=_status,
        default=PrefixStatus.ENABLED,
        help="0-5 or a name (default 1 enabled)",
    )
    command("list", cmd_prefix_list, "list prefixes", pre)
    p = command("set-status", cmd_prefix_set_status, "change a prefix's lifecycle status", pre)
    p.add_argument("prefix")
    p.add_argument(
        "status",
        type=_status,
        help="0 disabled, 1 enabled, 2 pending deletion, 3 rejected, 4 awaiting review, 5 under review",
    )
    p.add_argument("--reason", default="", help="recorded in the prefix's review trail")

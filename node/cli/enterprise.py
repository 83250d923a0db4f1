"""``idnode enterprise``: enterprises and their prefix applications (docs/enterprises.md).

The operator at the command line may take every step an enterprise admin or an auditor
takes over HTTP (``/api/manage``), each recorded with ``cli:<os user>`` as its actor:
``onboard`` takes them all at once. Enabling a prefix creates its ``<prefix>/ADMIN``
through the node's write service (secret sealed, record signed) and prints the secret
this once; nothing prints or logs it again.
"""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.common import AddCommand, actor, now, print_json, write_service
from node.runtime.database import Database, cli_database
from node.settings import Settings
from node.writes.onboarding import Credentials, Onboarding
from registry.rows import Prefix, PrefixReview, PrefixStatus

ONCE = (
    "the secret is shown this once: hand it to the enterprise over a safe channel; "
    "idnode keeps it sealed and never shows it again"
)


def _status(value: str) -> PrefixStatus:
    try:
        return PrefixStatus.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _onboarding(settings: Settings, db: Database, *, writes: bool) -> Onboarding:
    return Onboarding(
        db.registry,
        write_service(settings, db) if writes else None,
        configured=settings.prefixes,
        source="cli",
    )


def prefix_json(p: Prefix) -> dict[str, Any]:
    return {
        "prefix": p.prefix,
        "status": int(p.status),
        "status_name": p.status.label,
        "credit_code": p.credit_code,
        "enterprise_name": p.enterprise_name,
    }


def review_json(r: PrefixReview) -> dict[str, Any]:
    return {
        "id": r.id,
        "prefix": r.prefix,
        "action": r.action,
        "from_status": None if r.from_status is None else int(r.from_status),
        "to_status": int(r.to_status),
        "to_status_name": r.to_status.label,
        "actor": r.actor,
        "reason": r.reason,
        "at": r.at,
    }


def credentials_json(c: Credentials | None, prefix: str) -> dict[str, Any]:
    if c is None:
        return {
            "admin": f"300:{prefix}/ADMIN",
            "secret": None,
            "note": "the admin identity already existed; its secret is not shown again",
        }
    return {"admin": c.admin, "secret": c.secret, "note": ONCE}


async def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        ent = await db.registry.add_enterprise(args.name, args.credit_code, args.contact, now())
    print(f"enterprise {ent.id} added: {ent.name} ({ent.credit_code})")
    return 0


async def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    """Every enterprise, each with its prefixes and their status."""
    async with cli_database(settings) as db:
        enterprises = await db.registry.list_enterprises()
        prefixes = await db.registry.list_prefixes()
    out = []
    for e in enterprises:
        held = [prefix_json(p) for p in prefixes if p.credit_code == e.credit_code]
        out.append({name: getattr(e, name) for name in e.__dataclass_fields__} | {"prefixes": held})
    print_json(out)
    return 0


async def cmd_onboard(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        row, credentials = await _onboarding(settings, db, writes=True).onboard(
            name=args.name,
            credit_code=args.credit_code,
            contact=args.contact,
            prefix=args.prefix,
            actor=actor(),
            reason=args.reason,
            now=now(),
        )
    print_json(prefix_json(row) | credentials_json(credentials, row.prefix))
    return 0


async def cmd_apply(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        step = await _onboarding(settings, db, writes=False).apply(
            args.prefix, args.credit_code, actor=actor(), reason=args.reason, now=now()
        )
    print_json(prefix_json(step.prefix) | {"review": review_json(step.review)})
    return 0


async def cmd_review(settings: Settings, args: argparse.Namespace) -> int:
    enabling = args.to == PrefixStatus.ENABLED
    async with cli_database(settings) as db:
        step = await _onboarding(settings, db, writes=enabling).review(
            args.prefix, args.to, actor=actor(), reason=args.reason, now=now()
        )
    out = prefix_json(step.prefix) | {"review": review_json(step.review)}
    if enabling:
        out |= credentials_json(step.credentials, step.prefix.prefix)
    print_json(out)
    return 0


async def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        steps = await _onboarding(settings, db, writes=False).reviews.history(args.prefix)
    print_json([review_json(r) for r in steps])
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    ent = sub.add_parser("enterprise", help="enterprises and their prefix applications")
    cmds = ent.add_subparsers(dest="sub", required=True)
    p = command("add", cmd_add, "register an enterprise", cmds)
    p.add_argument("--name", required=True)
    p.add_argument("--credit-code", required=True, help="18-character unified social credit code")
    p.add_argument("--contact", default="")
    command("list", cmd_list, "list enterprises with their prefixes", cmds)

    p = command(
        "onboard",
        cmd_onboard,
        "add the enterprise if missing, apply for its prefix, review it to enabled and "
        "create its admin identity (prints the admin's secret, once)",
        cmds,
    )
    p.add_argument("--name", required=True)
    p.add_argument("--credit-code", required=True, help="18-character unified social credit code")
    p.add_argument("--prefix", required=True, help="e.g. 88.118.7, under a prefix of this node")
    p.add_argument("--contact", default="")
    p.add_argument("--reason", default="", help="recorded with every step")

    p = command("apply", cmd_apply, "apply for a prefix for an enterprise", cmds)
    p.add_argument("prefix")
    p.add_argument("--credit-code", required=True, help="the applying enterprise")
    p.add_argument("--reason", default="")

    p = command(
        "review",
        cmd_review,
        "decide on a prefix: 4 awaiting review -> 5 under review -> 1 enabled, or 3 rejected; "
        "later 0 disabled, 1 enabled again, 2 pending deletion (docs/enterprises.md)",
        cmds,
    )
    p.add_argument("prefix")
    p.add_argument("--to", required=True, type=_status, help="0-5 or a status name")
    p.add_argument("--reason", default="", help="required to reject, disable or delete")

    p = command("history", cmd_history, "the recorded steps of a prefix", cmds)
    p.add_argument("prefix")

"""``idnode upstream``: docking with the top-level node (README "Docking").

On a secondary: ``identity`` prints the public key it authenticates with upstream (its
site key), ``status`` what the docking outbox holds. On the top-level: ``admit PREFIX
--pubkey FILE`` creates ``0.NA/PREFIX`` owned by that key, ``revoke PREFIX`` deletes it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from node.cli.common import AddCommand, UserError, actor, now, print_json, write_service
from node.docking.admission import admission_values
from node.resolution.site import load_or_create_site_key
from node.runtime.database import cli_database
from node.settings import Settings
from node.signing.trust import load_public_pem
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_handle, parse_prefix
from registry.docking import DockingOutbox
from registry.errors import NotFound, UnknownPrefix


def _prefix(text: str) -> str:
    bare = text[5:] if text.upper().startswith("0.NA/") else text
    try:
        return parse_prefix(bare)
    except HandleSyntaxError as exc:
        raise UserError(str(exc)) from None


async def cmd_identity(settings: Settings, args: argparse.Namespace) -> int:
    key = await asyncio.to_thread(load_or_create_site_key, settings.site_key_path)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    print(pem.decode("ascii"), end="")
    return 0


async def cmd_admit(settings: Settings, args: argparse.Namespace) -> int:
    prefix = _prefix(args.prefix)
    key = load_public_pem(args.pubkey)
    handle = parse_handle(f"0.NA/{prefix}")
    values = admission_values(prefix, key)
    async with cli_database(settings) as db:
        writes = write_service(settings, db)
        try:
            try:
                # Admitted before: a new key and admin, keeping what the secondary
                # published there (its HS_SITE, certificates).
                result = await writes.put(
                    handle,
                    values,
                    actor=actor(),
                    now=now(),
                    source="cli",
                    only_indexes=frozenset(v.index for v in values),
                )
            except NotFound:
                result = await writes.put(handle, values, actor=actor(), now=now(), source="cli")
        except UnknownPrefix:
            raise UserError(
                f"no prefix above {prefix} is registered on this node: register the top-level's "
                "own prefix first (idnode enterprise add; idnode prefix add 88 --enterprise ...)"
            ) from None
    state = "admitted" if result.created else "admitted again (key and admin updated)"
    print(f"{handle.text} {state}: its holder authenticates as 300:{handle.text}")
    return 0


async def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    prefix = _prefix(args.prefix)
    handle = parse_handle(f"0.NA/{prefix}")
    async with cli_database(settings) as db:
        try:
            await write_service(settings, db).delete(handle, actor=actor(), now=now(), source="cli")
        except NotFound:
            raise UserError(f"{handle.text} is not admitted here") from None
    print(f"{handle.text} revoked")
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        rows = await DockingOutbox(db.registry.pool, target=db.registry.target).rows()
    pending = [r for r in rows if r.state in ("pending", "failed")]
    print_json(
        {
            "upstream": list(settings.upstream),
            "outbox depth": len(pending),
            "prefixes": [
                {
                    "prefix": r.prefix,
                    "state": "docked" if r.state == "docked" else r.state,
                    "action": r.action,
                    "derived from": r.derived_from,
                    "attempts": r.attempts,
                    "last attempt": r.last_attempt_at.isoformat() if r.last_attempt_at else None,
                    "next attempt": r.next_attempt_at.isoformat() if r in pending else None,
                    "last error": r.last_error or None,
                }
                for r in rows
            ],
        }
    )
    return 0


def add_commands(sub: object, command: AddCommand) -> None:
    group = sub.add_parser(  # type: ignore[attr-defined]
        "upstream", help="docking with the top-level node"
    ).add_subparsers(dest="sub", required=True)
    command("identity", cmd_identity, "print the public key this node docks with (PEM)", group)
    p = command(
        "admit",
        cmd_admit,
        "on a top-level node: admit a secondary's prefix, owned by its identity key",
        group,
    )
    p.add_argument("prefix", help="the secondary's prefix, e.g. 88.118")
    p.add_argument(
        "--pubkey", required=True, type=Path, help="its identity (idnode upstream identity there)"
    )
    p = command("revoke", cmd_revoke, "on a top-level node: remove an admitted prefix", group)
    p.add_argument("prefix")
    command(
        "status", cmd_status, "docking state of each prefix and the outbox depth, as JSON", group
    )

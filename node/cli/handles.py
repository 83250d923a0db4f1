"""``idnode handle``: read and write records directly in the registry, through the
node's own write service (HS_SECKEY rules, signing, history)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from node.cli.common import AddCommand, UserError, actor, now, print_json, read_json, write_service
from node.cli.history import add_history_arguments, cmd_handle_history
from node.runtime.database import cli_database
from node.secrets.vault import SECKEY_TYPE, shown
from node.settings import Settings
from protocol.codes import Permission
from protocol.handle import parse_handle
from protocol.jsonvalues import values_from_json, values_to_json
from protocol.values import HandleValue

# HS_SECKEY values are admin read/write only ("1100"), as the reference's tools write them.
ADMIN_ONLY = Permission.ADMIN_READ | Permission.ADMIN_WRITE


async def cmd_handle_get(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    async with cli_database(settings) as db:
        record = await db.registry.get_handle(handle.key)
    if record is None:
        raise UserError(f"handle {handle.text} not found")
    print_json(values_to_json([shown(v) for v in record.values]))  # secrets never shown
    return 0


async def cmd_handle_put(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    values = values_from_json(read_json(args.file))
    async with cli_database(settings) as db:
        result = await write_service(settings, db).put(
            handle, values, actor=actor(), now=now(), source="cli", overwrite=not args.no_overwrite
        )
    what = "created" if result.created else ("updated" if result.changed else "unchanged")
    print(
        f"{result.record.handle} {what} (version {result.record.version}, {len(result.record.values)} values)"
    )
    return 0


async def cmd_handle_delete(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    indexes = frozenset(args.index) if args.index else None
    async with cli_database(settings) as db:
        await write_service(settings, db).delete(
            handle, actor=actor(), now=now(), source="cli", indexes=indexes
        )
    print(f"{handle.text} {'values removed' if indexes else 'deleted'}")
    return 0


async def cmd_handle_list(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        total, handles = await db.registry.list_handles(args.prefix, args.page, args.page_size)
    print_json({"prefix": args.prefix, "totalCount": total, "handles": handles})
    return 0


async def cmd_handle_set_secret(settings: Settings, args: argparse.Namespace) -> int:
    """Set (or replace) the HS_SECKEY at INDEX, read from a prompt or from stdin, never
    from the command line (it would sit in the shell history and in ``ps``)."""
    handle = parse_handle(args.handle)
    secret = _read_secret()
    value = HandleValue(args.index, SECKEY_TYPE, secret, permissions=int(ADMIN_ONLY))
    async with cli_database(settings) as db:
        result = await write_service(settings, db).put(
            handle,
            [value],
            actor=actor(),
            now=now(),
            source="cli",
            only_indexes=frozenset({args.index}),
        )
    what = "set" if result.changed else "unchanged (the same secret)"
    print(f"{result.record.handle}: secret at index {args.index} {what}")
    return 0


def _read_secret() -> bytes:
    if sys.stdin.isatty():
        first = getpass.getpass("new secret: ")
        if first != getpass.getpass("again: "):
            raise UserError("the two secrets differ; nothing changed")
        secret = first.encode()
    else:
        secret = sys.stdin.buffer.read().rstrip(b"\r\n")
    if not secret:
        raise UserError("the secret is empty; nothing changed")
    return secret


def add_commands(sub: Any, command: AddCommand) -> None:
    hdl = sub.add_parser("handle", help="handle records").add_subparsers(dest="sub", required=True)
    p = command("get", cmd_handle_get, "print a record as a JSON array of values", hdl)
    p.add_argument("handle")
    p = command(
        "put", cmd_handle_put, "create or replace a record from a JSON array of values", hdl
    )
    p.add_argument("handle")
    p.add_argument("--file", "-f", required=True, help="JSON file, or - for stdin")
    p.add_argument(
        "--no-overwrite", action="store_true", help="fail if the handle exists with other values"
    )
    p = command("delete", cmd_handle_delete, "delete a record, or some of its values", hdl)
    p.add_argument("handle")
    p.add_argument(
        "--index", type=int, action="append", help="delete only this value index (repeatable)"
    )
    p = command("list", cmd_handle_list, "list handles under a prefix", hdl)
    p.add_argument("--prefix", required=True)
    p.add_argument("--page", type=int, default=0)
    p.add_argument("--page-size", type=int, default=1000)
    p = command(
        "history",
        cmd_handle_history,
        "show a record's versions and what changed (--at: the record as it was then)",
        hdl,
    )
    add_history_arguments(p)
    p = command(
        "set-secret",
        cmd_handle_set_secret,
        "set the HS_SECKEY at INDEX of an existing handle (prompted, or read from stdin)",
        hdl,
    )
    p.add_argument("handle")
    p.add_argument("index", type=int, help="value index of the secret (300 by convention)")

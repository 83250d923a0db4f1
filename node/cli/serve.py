"""``idnode serve``, ``idnode settings`` and ``idnode db``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from node.cli.common import AddCommand, print_json
from node.runtime.database import cli_database
from node.settings import Settings, settings_markdown


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.workers > 1:
        from node.serving.supervisor import supervise

        await supervise(settings)
        return 0
    from node.app import serve

    await serve(settings)
    return 0


async def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    if args.markdown:
        from node.cli.entry import setting_flags

        sys.stdout.write(settings_markdown(setting_flags()))
    else:
        print_json({k: getattr(settings, k) for k in settings.__dataclass_fields__})
    return 0


async def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings, apply_migrations=False) as db:
        applied = await db.registry.migrate()
        versions = await db.registry.schema_versions()
    for mig in applied:
        print(f"applied {mig.version:04d}_{mig.name}")
    print(f"schema at version {max(versions) if versions else 0}")
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    p = command("serve", cmd_serve, "run the node", sub)
    p.add_argument("--bind", default=argparse.SUPPRESS, help="listen address (default 127.0.0.1)")
    p.add_argument(
        "--handle-port", type=int, default=argparse.SUPPRESS, help="native Handle port (UDP+TCP)"
    )
    p.add_argument("--http-port", type=int, default=argparse.SUPPRESS, help="HTTP API port")
    p.add_argument(
        "--admin-port", type=int, default=argparse.SUPPRESS, help="health and metrics port"
    )
    p.add_argument("--role", default=argparse.SUPPRESS, help="node role (default secondary)")
    p.add_argument("--prefixes", default=argparse.SUPPRESS, help="comma-separated prefixes served")
    p.add_argument(
        "--workers",
        type=int,
        default=argparse.SUPPRESS,
        help="serving processes sharing the ports (default 1); worker i's admin port is admin-port + i",
    )
    p.add_argument(
        "--demo", action="store_true", default=None, help="seed demo textile and elevator data"
    )

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    command("migrate", cmd_db_migrate, "apply pending schema migrations", db)

    p = command("settings", cmd_settings, "print the effective settings", sub)
    p.add_argument("--markdown", action="store_true", help="print the settings reference table")

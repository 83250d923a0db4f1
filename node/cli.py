"""The ``idnode`` command: run the node and operate on the registry directly.

User mistakes print one line on stderr and exit non-zero; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson

from protocol.errors import ProtocolError
from protocol.handle import parse_handle
from protocol.jsonvalues import values_from_json, values_to_json
from registry.errors import RegistryError
from registry.migrate import applied_versions, migrate
from registry.store import PREFIX_STATUS

from . import __version__
from .database import Database, cli_database
from .keys import KeyStoreError
from .logs import setup_logging
from .loop import install_fast_loop
from .settings import Settings, SettingsError, load_settings, settings_markdown
from .signing import build_signer
from .writes import WriteService

EXIT_ERROR = 1
EXIT_USAGE = 2

# Options that map one-to-one onto settings; given on the command line they win.
_GLOBAL_SETTINGS = ("database_url", "data_dir", "embedded_user", "log_format", "log_level")
_SERVE_SETTINGS = ("bind", "handle_port", "http_port", "admin_port", "role", "prefixes", "workers")


class UserError(Exception):
    """A mistake the user can fix; printed as one line."""


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _writes(settings: Settings, db: Database) -> WriteService:
    # CLI writes are signed like the node's own (same key store, node.signing).
    signer = build_signer(settings, int(_now().timestamp())) if settings.sign_records else None
    return WriteService(db.registry, secret_iterations=settings.secret_hash_iterations, signer=signer)


def _print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _read_values(path: str) -> Any:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{'stdin' if path == '-' else path} is not valid JSON: {exc}") from None


def _settings_flags(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in names}


# -- commands ----------------------------------------------------------------------


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.workers > 1:
        from .workers import SupervisorError, supervise

        try:
            await supervise(settings)
        except SupervisorError as exc:  # e.g. workers failing to start: a setting to fix
            raise UserError(str(exc)) from None
        return 0
    from .app import serve

    await serve(settings)
    return 0


async def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings, apply_migrations=False) as db, db.pool.acquire() as conn:
        applied = await migrate(conn)
        versions = await applied_versions(conn)
    for mig in applied:
        print(f"applied {mig.version:04d}_{mig.name}")
    print(f"schema at version {max(versions) if versions else 0}")
    return 0


async def cmd_enterprise_add(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        row = await db.registry.add_enterprise(args.name, args.credit_code, args.contact, _now())
    print(f"enterprise {row['id']} added: {row['name']} ({row['credit_code']})")
    return 0


async def cmd_enterprise_list(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        rows = await db.registry.list_enterprises()
    _print_json(rows)
    return 0


async def cmd_prefix_add(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        await db.registry.add_prefix(args.prefix, args.enterprise, _now(), args.status)
    print(f"prefix {args.prefix} added ({PREFIX_STATUS[args.status]})")
    return 0


async def cmd_prefix_list(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        rows = await db.registry.list_prefixes()
    for r in rows:
        r["status_name"] = PREFIX_STATUS.get(r["status"], "?")
    _print_json(rows)
    return 0


async def cmd_prefix_set_status(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        await db.registry.set_prefix_status(args.prefix, args.status, _now())
    print(f"prefix {args.prefix} is now {PREFIX_STATUS[args.status]}")
    return 0


async def cmd_handle_get(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    async with cli_database(settings) as db:
        record = await db.registry.get_handle(handle.key)
    if record is None:
        raise UserError(f"handle {handle.text} not found")
    _print_json(values_to_json(record.values))
    return 0


async def cmd_handle_put(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    values = values_from_json(_read_values(args.file))
    async with cli_database(settings) as db:
        # The same write service as the HTTP API: HS_SECKEY secrets are stored hashed.
        result = await _writes(settings, db).put(
            handle, values, actor=_actor(), now=_now(), source="cli", overwrite=not args.no_overwrite
        )
    what = "created" if result.created else ("updated" if result.changed else "unchanged")
    print(f"{result.record.handle} {what} (version {result.record.version}, {len(result.record.values)} values)")
    return 0


async def cmd_handle_delete(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    indexes = frozenset(args.index) if args.index else None
    async with cli_database(settings) as db:
        await _writes(settings, db).delete(handle, actor=_actor(), now=_now(), source="cli", indexes=indexes)
    print(f"{handle.text} {'values removed' if indexes else 'deleted'}")
    return 0


async def cmd_handle_list(settings: Settings, args: argparse.Namespace) -> int:
    async with cli_database(settings) as db:
        total, handles = await db.registry.list_handles(args.prefix, args.page, args.page_size)
    _print_json({"prefix": args.prefix, "totalCount": total, "handles": handles})
    return 0


async def cmd_handle_history(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    async with cli_database(settings) as db:
        entries = await db.registry.history(handle)
    _print_json(
        [
            {
                "action": e.action, "actor": e.actor, "at": e.at.isoformat(), "version": e.version,
                "old": values_to_json(e.old_values) if e.old_values is not None else None,
                "new": values_to_json(e.new_values) if e.new_values is not None else None,
            }
            for e in entries
        ]
    )
    return 0


async def cmd_siteinfo(settings: Settings, args: argparse.Namespace) -> int:
    from protocol.jsonvalues import site_to_json

    from .site import Site, SiteKeyError

    try:
        site = Site.create(settings, handle_port=settings.handle_port, http_port=None)
    except (SiteKeyError, OSError) as exc:
        raise UserError(str(exc)) from None
    if args.out:
        try:
            Path(args.out).write_bytes(site.info.to_wire())
        except OSError as exc:
            raise UserError(f"cannot write {args.out}: {exc.strerror}") from None
    _print_json(site_to_json(site.info))
    return 0


async def cmd_resolve(settings: Settings, args: argparse.Namespace) -> int:
    from protocol.bodies import ErrorReply, ReferralReply, ResolutionReply
    from protocol.codes import ResponseCode

    from .client import ClientError, NativeClient

    host, port = args.server or (settings.advertised_address, settings.handle_port)
    client = NativeClient(host, port, timeout_s=args.timeout, udp=not args.tcp)
    try:
        reply = await client.resolve(args.handle, args.index or (), args.type or ())
    except ClientError as exc:
        raise UserError(str(exc)) from None
    rc = reply.header.response_code
    out: dict[str, Any] = {"responseCode": int(rc), "handle": args.handle}
    if isinstance(reply.body, (ResolutionReply, ReferralReply)) and reply.body.values is not None:
        out["values"] = values_to_json(reply.body.values)
    if isinstance(reply.body, ErrorReply) and reply.body.message:
        out["message"] = reply.body.message
    _print_json(out)
    return 0 if rc == ResponseCode.SUCCESS else EXIT_ERROR


def _server(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_markdown())
    else:
        _print_json({k: getattr(settings, k) for k in settings.__dataclass_fields__})
    return 0


# -- argument parsing --------------------------------------------------------------


def _status(value: str) -> int:
    try:
        status = int(value)
    except ValueError:
        names = {v: k for k, v in PREFIX_STATUS.items()}
        if value.replace("-", " ") in names:
            return names[value.replace("-", " ")]
        raise argparse.ArgumentTypeError(f"{value!r} is not a prefix status") from None
    if status not in PREFIX_STATUS:
        raise argparse.ArgumentTypeError(f"status {status} is not one of 0-5")
    return status


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("settings (flag > IDNODE_* env > config file > default)")
    # SUPPRESS: an option given only before the subcommand must not be reset after it.
    g.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file")
    g.add_argument("--database-url", default=argparse.SUPPRESS, help="PostgreSQL URL (default: embedded)")
    g.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory of the embedded server")
    g.add_argument("--embedded-user", default=argparse.SUPPRESS, help="OS user for the embedded server when root")
    g.add_argument("--log-format", default=argparse.SUPPRESS, choices=("text", "json"))
    g.add_argument("--log-level", default=argparse.SUPPRESS, choices=("debug", "info", "warning", "error"))

    parser = argparse.ArgumentParser(
        prog="idnode", parents=[common],
        description="Industrial-internet identifier-resolution secondary node.",
    )
    parser.add_argument("--version", action="version", version=f"idnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[..., Awaitable[int]], help: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=fn)
        return p

    p = command("serve", cmd_serve, "run the node")
    p.add_argument("--bind", default=argparse.SUPPRESS, help="listen address (default 127.0.0.1)")
    p.add_argument("--handle-port", type=int, default=argparse.SUPPRESS, help="native Handle port (UDP+TCP)")
    p.add_argument("--http-port", type=int, default=argparse.SUPPRESS, help="HTTP API port")
    p.add_argument("--admin-port", type=int, default=argparse.SUPPRESS, help="health and metrics port")
    p.add_argument("--role", default=argparse.SUPPRESS, help="node role (default secondary)")
    p.add_argument("--prefixes", default=argparse.SUPPRESS, help="comma-separated prefixes served")
    p.add_argument(
        "--workers", type=int, default=argparse.SUPPRESS,
        help="serving processes sharing the ports (default 1); worker i's admin port is admin-port + i",
    )
    p.add_argument("--demo", action="store_true", default=None, help="seed demo textile and elevator data")

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    command("migrate", cmd_db_migrate, "apply pending schema migrations", db)

    ent = sub.add_parser("enterprise", help="enterprises").add_subparsers(dest="sub", required=True)
    p = command("add", cmd_enterprise_add, "register an enterprise", ent)
    p.add_argument("--name", required=True)
    p.add_argument("--credit-code", required=True, help="18-character unified social credit code")
    p.add_argument("--contact", default="")
    command("list", cmd_enterprise_list, "list enterprises", ent)

    pre = sub.add_parser("prefix", help="prefixes").add_subparsers(dest="sub", required=True)
    p = command("add", cmd_prefix_add, "register a prefix for an enterprise", pre)
    p.add_argument("prefix")
    p.add_argument("--enterprise", required=True, metavar="CREDIT_CODE")
    p.add_argument("--status", type=_status, default=1, help="0-5 (default 1 enabled)")
    command("list", cmd_prefix_list, "list prefixes", pre)
    p = command("set-status", cmd_prefix_set_status, "change a prefix's lifecycle status", pre)
    p.add_argument("prefix")
    p.add_argument("status", type=_status, help="0 disabled, 1 enabled, 2 pending deletion, 3 rejected, 4 awaiting review, 5 under review")

    hdl = sub.add_parser("handle", help="handle records").add_subparsers(dest="sub", required=True)
    p = command("get", cmd_handle_get, "print a record as a JSON array of values", hdl)
    p.add_argument("handle")
    p = command("put", cmd_handle_put, "create or replace a record from a JSON array of values", hdl)
    p.add_argument("handle")
    p.add_argument("--file", "-f", required=True, help="JSON file, or - for stdin")
    p.add_argument("--no-overwrite", action="store_true", help="fail if the handle exists with other values")
    p = command("delete", cmd_handle_delete, "delete a record, or some of its values", hdl)
    p.add_argument("handle")
    p.add_argument("--index", type=int, action="append", help="delete only this value index (repeatable)")
    p = command("list", cmd_handle_list, "list handles under a prefix", hdl)
    p.add_argument("--prefix", required=True)
    p.add_argument("--page", type=int, default=0)
    p.add_argument("--page-size", type=int, default=1000)
    p = command("history", cmd_handle_history, "show a record's change history", hdl)
    p.add_argument("handle")

    p = command("siteinfo", cmd_siteinfo, "print this node's HS_SITE as JSON; --out writes the binary siteinfo file", sub)
    p.add_argument("--out", metavar="FILE", help="write the binary site info (what Handle clients load)")
    p.add_argument("--handle-port", type=int, default=argparse.SUPPRESS, help="native port advertised")

    p = command("resolve", cmd_resolve, "resolve a handle against a node", sub)
    p.add_argument("handle")
    p.add_argument("--native", action="store_true", default=True, help="use the native Handle protocol (default)")
    p.add_argument("--server", type=_server, metavar="HOST:PORT", help="node to ask (default: this node's settings)")
    p.add_argument("--tcp", action="store_true", help="TCP only (no UDP first)")
    p.add_argument("--index", type=int, action="append", help="value index to ask for (repeatable)")
    p.add_argument("--type", action="append", help="value type to ask for (repeatable; 'URL.' matches subtypes)")
    p.add_argument("--timeout", type=float, default=5.0, help="overall deadline in seconds")

    from .cli_sign import add_commands

    add_commands(sub, command, _server)
    p = command("settings", cmd_settings, "print the effective settings", sub)
    p.add_argument("--markdown", action="store_true", help="print the settings reference table")
    return parser


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    sys.stderr.write(f"idnode: error: {message}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        flags = _settings_flags(args, _GLOBAL_SETTINGS + _SERVE_SETTINGS)
        if getattr(args, "demo", None):
            flags["demo"] = True
        settings = load_settings(config_file=getattr(args, "config", None), flags=flags)
    except SettingsError as exc:
        _fail(str(exc), EXIT_USAGE)
    setup_logging(settings.log_format, settings.log_level if args.command == "serve" else "warning")
    install_fast_loop()  # before asyncio.run creates the loop
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:  # found at start, e.g. unreadable TLS files (node.tls)
        _fail(str(exc), EXIT_USAGE)
    except (UserError, RegistryError, ProtocolError, KeyStoreError) as exc:
        _fail(str(exc))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    result: int = await args.func(settings, args)
    return result


if __name__ == "__main__":
    sys.exit(main())

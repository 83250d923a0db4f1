"""The ``idnode`` command: parse, load settings, run one command module's function.

This is the one place that turns what a user can fix (``node.errors.USER_ERRORS``)
into one line on stderr and an exit status; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from node import __version__
from node.cli import (
    admin,
    db,
    enterprise,
    handles,
    imports,
    network,
    registration,
    search,
    serve,
    signing,
    upstream,
)
from node.cli.common import Command
from node.errors import USER_ERRORS, exit_status
from node.runtime.logs import setup_logging
from node.runtime.loop import install_fast_loop
from node.settings import SettingsError, load_settings, setting_names


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("settings (flag > IDNODE_* env > config file > default)")
    # SUPPRESS: an option given only before the subcommand must not be reset after it.
    g.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file")
    g.add_argument(
        "--database-url", default=argparse.SUPPRESS, help="PostgreSQL URL (default: embedded)"
    )
    g.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help="data directory of the embedded server"
    )
    g.add_argument(
        "--embedded-user",
        default=argparse.SUPPRESS,
        help="OS user for the embedded server when root",
    )
    g.add_argument("--log-format", default=argparse.SUPPRESS, choices=("text", "json"))
    g.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=("debug", "info", "warning", "error")
    )

    parser = argparse.ArgumentParser(
        prog="idnode",
        parents=[common],
        description="Industrial-internet identifier-resolution secondary node.",
    )
    parser.add_argument("--version", action="version", version=f"idnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, fn: Command, help: str, parent: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, parents=[common], help=help, description=help
        )
        p.set_defaults(func=fn)
        return p

    for module in (
        serve,
        enterprise,
        registration,
        handles,
        imports,
        search,
        admin,
        network,
        signing,
        upstream,
    ):
        module.add_commands(sub, command)
    # backup, restore and shell (node.cli.db) join the db group that serve opens.
    db_actions = sub.choices["db"]._actions
    db.add_commands(
        next(a for a in db_actions if isinstance(a, argparse._SubParsersAction)), command
    )
    return parser


def setting_flags(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Each setting that has a command-line flag: ``--handle-port`` (serve, siteinfo), or
    ``--data-dir`` (any command). Read off the parser itself, so the settings reference
    (``idnode settings --markdown``) cannot claim a flag that does not exist."""
    known = set(setting_names())
    found: dict[str, tuple[str, set[str]]] = {}
    leaves: set[str] = set()

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            leaves.add(path)
        for action in p._actions:
            if action.dest in known and action.option_strings:
                _flag, commands = found.setdefault(action.dest, (action.option_strings[-1], set()))
                commands.add(path)
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, f"{path} {name}".strip())

    walk(parser or build_parser(), "")
    return {
        name: f"`{flag}` ({'any command' if commands >= leaves else ', '.join(sorted(commands))})"
        for name, (flag, commands) in found.items()
    }


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"idnode: error: {message}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # An option whose name is a setting's is that setting, given on the command line.
        flags = {name: getattr(args, name, None) for name in setting_names()}
        settings = load_settings(config_file=getattr(args, "config", None), flags=flags)
    except SettingsError as exc:
        _fail(str(exc), exc.exit_status)
    setup_logging(settings.log_format, settings.log_level if args.command == "serve" else "warning")
    install_fast_loop()  # before asyncio.run creates the loop
    try:
        result: int = asyncio.run(args.func(settings, args))
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as exc:
        _fail(str(exc), exit_status(exc))
    return result

"""What the command modules share: the error they raise, output, input and the clock."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from node.errors import NodeError
from node.runtime.database import Database
from node.secrets.vault import open_vault
from node.settings import Settings
from node.signing.signer import build_signer
from node.templates.catalog import registry_catalog
from node.writes.service import WriteService

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


class AddCommand(Protocol):
    """``command(name, fn, help, parent)``: a subcommand parser with the global options."""

    def __call__(
        self, name: str, fn: Command, help: str, parent: Any
    ) -> argparse.ArgumentParser: ...


class UserError(NodeError):
    """A mistake in a command the user can fix; printed as one line."""


def now() -> datetime:
    return datetime.now(UTC)


def actor() -> str:
    """How history rows name an operator at the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def write_service(settings: Settings, db: Database) -> WriteService:
    """The node's own write service: CLI writes are signed, secrets sealed and records
    checked against their templates, as a running node's are."""
    signer = build_signer(settings, int(now().timestamp())) if settings.sign_records else None
    return WriteService(
        db.registry,
        vault=open_vault(settings),
        signer=signer,
        templates=registry_catalog(db.registry),
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def read_json(path: str) -> Any:
    """JSON from a file, or from stdin for ``-``."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{'stdin' if path == '-' else path} is not valid JSON: {exc}") from None


def server_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:2641`` for IPv6) as an argparse type."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)

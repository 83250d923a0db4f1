"""``idnode handle history HANDLE [--at T] [--json] [--limit N]``: a record's past, read
from the registry's append-only history (docs/rest-api.md "History" serves the same
over HTTP).

Without ``--at``: the newest ``--limit`` versions, oldest first (the latest is printed
last, next to the prompt), each as one header line and one line per value that changed
since the version before (``protocol.recorddiff``). With ``--at``: the record as it
stood at that time. Each signed version is verified as ``idnode verify`` does, against
this node's trust roots (``trust_root_file``, else the embedded root key), with the
certificates this node publishes in ``0.NA/<prefix>`` (from its key store: the CLI has
no running resolver to ask).

The operator sees every value (this is the registry's own console), secrets masked.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime

from node.cli.common import UserError, now, print_json
from node.fronts.http.history import DELETED, Verdict, signature_verdict, version_json
from node.runtime.database import cli_database
from node.secrets.vault import shown
from node.settings import Settings
from node.signing.keystore import open_key_store
from node.signing.signer import RecordSigner, build_signer
from node.signing.trust import Fetch, trust_roots
from protocol.errors import HandleSyntaxError
from protocol.handle import Handle, parse_handle
from protocol.jsonvalues import values_to_json
from protocol.keys import PublicKey
from protocol.recorddiff import SYMBOL, brief, describe, diff_values
from protocol.rfc3339 import format_time, parse_time
from protocol.values import HandleValue
from registry.rows import LoggedEntry
from registry.store import HISTORY_PAGE, MAX_HISTORY_PAGE, Registry


def time_argument(text: str) -> datetime:
    """``--at``: an RFC 3339 time, as the history prints them."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def limit_argument(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY_PAGE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of versions (1..{MAX_HISTORY_PAGE})"
        )
    return int(text)


def _verifier(settings: Settings, now_s: int) -> tuple[list[PublicKey], RecordSigner | None]:
    """Trust roots, and the signer whose certificates ``0.NA/<prefix>`` carries (None
    when this data dir holds no signing key: verifying never creates one)."""
    roots = trust_roots(settings)
    if not roots or not (settings.data_dir / "keys").is_dir():
        return roots, None
    if not open_key_store(settings).keys():
        return roots, None
    return roots, build_signer(settings, now_s)


def _cert_fetcher(registry: Registry, signer: RecordSigner | None, now_s: int) -> Fetch:
    """What resolving a certificate record would answer on the running node: the stored
    record's public values plus, for ``0.NA/<node prefix>``, the node's HS_CERTs."""

    async def fetch(name: str) -> tuple[HandleValue, ...] | None:
        try:
            handle = parse_handle(name)
        except HandleSyntaxError:
            return None
        record = await registry.get_handle(handle.key)
        values = tuple(v for v in record.values if v.public_read) if record else ()
        if signer is not None and handle.is_prefix_record:
            values += signer.cert_values(handle.owning_prefix, now_s)
        return values or None

    return fetch


async def cmd_handle_history(settings: Settings, args: argparse.Namespace) -> int:
    handle = parse_handle(args.handle)
    now_s = int(now().timestamp())
    roots, signer = _verifier(settings, now_s)
    async with cli_database(settings) as db:
        fetch = _cert_fetcher(db.registry, signer, now_s)
        if args.at is not None:
            return await _show_record_at(db.registry, handle, args.at, fetch, roots, now_s, args)
        page = await db.registry.history_page(handle, limit=args.limit)
        if not page.entries:
            raise UserError(f"handle {handle.text} has no history in this registry")
        versions = []
        for logged in reversed(page.entries):  # oldest first
            e = logged.entry
            verdict = (
                DELETED
                if e.new_values is None
                else await signature_verdict(e.handle, e.new_values, fetch, roots, now_s)
            )
            versions.append((logged, verdict))
    if args.json:
        print_json([version_json(logged, verdict) for logged, verdict in versions])
        return 0
    more = f"; older ones not shown (--limit N, up to {MAX_HISTORY_PAGE})" if page.older else ""
    print(f"{handle.text}: {len(versions)} versions, oldest first{more}")
    for logged, verdict in versions:
        print("\n".join(_version_lines(logged, verdict)))
    return 0


def _version_lines(logged: LoggedEntry, verdict: Verdict) -> list[str]:
    e = logged.entry
    head = f"v{e.version}  {format_time(e.at)}  {e.action} by {e.actor}  signature {verdict.detail}"
    changes = diff_values(e.old_values or (), e.new_values or ())
    return [head] + [f"  {SYMBOL[c.change]} {describe(c, show=shown)}" for c in changes]


async def _show_record_at(
    registry: Registry,
    handle: Handle,
    at: datetime,
    fetch: Fetch,
    roots: Sequence[PublicKey],
    now_s: int,
    args: argparse.Namespace,
) -> int:
    record = await registry.record_at(handle, at)
    if record is None:
        raise UserError(f"handle {handle.text} did not exist at {format_time(at)}")
    verdict = await signature_verdict(record.handle, record.values, fetch, roots, now_s)
    values = [shown(v) for v in record.values]  # secrets never shown
    if args.json:
        print_json(
            {
                "handle": record.handle,
                "at": format_time(at),
                "version": record.version,
                "writtenAt": format_time(record.written_at),
                "actor": record.actor,
                **verdict.to_json(),
                "values": values_to_json(values),
            }
        )
        return 0
    print(
        f"{record.handle} at {format_time(at)}: version {record.version}, written "
        f"{format_time(record.written_at)} by {record.actor}"
    )
    print(f"signature {verdict.detail}")
    for v in values:
        print(f"  {v.index} {v.type} {brief(v)}")
    return 0


def add_history_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("handle")
    p.add_argument(
        "--at",
        type=time_argument,
        metavar="TIME",
        help="the record as it was at this RFC 3339 time (2026-11-01T08:00:00Z)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (the HTTP API's shape)")
    p.add_argument(
        "--limit",
        type=limit_argument,
        default=HISTORY_PAGE,
        metavar="N",
        help=f"the newest N versions (default {HISTORY_PAGE})",
    )

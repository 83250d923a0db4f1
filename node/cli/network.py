"""``idnode resolve`` and ``idnode siteinfo``: this node as Handle clients see it."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from node.cli.common import AddCommand, UserError, print_json, server_address
from node.client.native import ClientError, NativeClient
from node.client.tree import TreeResolver, UpstreamUnavailable
from node.client.upstream import Address
from node.errors import EXIT_ERROR
from node.resolution.site import Site
from node.settings import Settings
from protocol.bodies import ErrorReply, ReferralReply, ResolutionReply
from protocol.codes import ResponseCode
from protocol.jsonvalues import site_to_json, values_to_json
from protocol.values import select_values


async def cmd_siteinfo(settings: Settings, args: argparse.Namespace) -> int:
    site = Site.create(settings, handle_port=settings.handle_port, http_port=None)
    if args.out:
        try:
            await asyncio.to_thread(Path(args.out).write_bytes, site.info.to_wire())
        except OSError as exc:
            raise UserError(f"cannot write {args.out}: {exc.strerror}") from None
    print_json(site_to_json(site.info))
    return 0


async def cmd_resolve(settings: Settings, args: argparse.Namespace) -> int:
    if args.root is not None:
        return await _resolve_from_root(args)
    host, port = args.server or (settings.local_address, settings.handle_port)
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
    print_json(out)
    return 0 if rc == ResponseCode.SUCCESS else EXIT_ERROR


async def _resolve_from_root(args: argparse.Namespace) -> int:
    """From the top-level down: the prefix's servers from the root, then the handle."""
    host, port = args.root
    resolver = TreeResolver([Address(host, port, udp=not args.tcp)], timeout_s=args.timeout)
    try:
        answer = await resolver.resolve(args.handle, args.type or ())
    except (UpstreamUnavailable, ClientError) as exc:
        raise UserError(str(exc)) from None
    values = select_values(answer.values, args.index or (), args.type or ())
    out: dict[str, Any] = {"responseCode": answer.response_code, "handle": args.handle}
    if answer.response_code == ResponseCode.SUCCESS:
        out["values"] = values_to_json(values)
        out["server"] = str(answer.server)
    print_json(out)
    return 0 if answer.response_code == ResponseCode.SUCCESS else EXIT_ERROR


def add_commands(sub: Any, command: AddCommand) -> None:
    p = command(
        "siteinfo",
        cmd_siteinfo,
        "print this node's HS_SITE as JSON; --out writes the binary siteinfo file",
        sub,
    )
    p.add_argument(
        "--out", metavar="FILE", help="write the binary site info (what Handle clients load)"
    )
    p.add_argument(
        "--handle-port", type=int, default=argparse.SUPPRESS, help="native port advertised"
    )

    p = command("resolve", cmd_resolve, "resolve a handle against a node", sub)
    p.add_argument("handle")
    p.add_argument(
        "--native",
        action="store_true",
        default=True,
        help="use the native Handle protocol (default)",
    )
    p.add_argument(
        "--server",
        type=server_address,
        metavar="HOST:PORT",
        help="node to ask (default: this node's settings)",
    )
    p.add_argument(
        "--root",
        type=server_address,
        metavar="HOST:PORT",
        help="start at this root (a top-level node) and follow the tree to the handle's server",
    )
    p.add_argument("--tcp", action="store_true", help="TCP only (no UDP first)")
    p.add_argument("--index", type=int, action="append", help="value index to ask for (repeatable)")
    p.add_argument(
        "--type",
        action="append",
        help="value type to ask for (repeatable; 'URL.' matches subtypes)",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="overall deadline in seconds")

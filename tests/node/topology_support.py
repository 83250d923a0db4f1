"""A national tree on loopback: one top-level node (prefix 88), the textile secondary
(88.118) and the elevator secondary (88.119), each a real node with its own database,
key directory and ports, as deploy/ runs them. The secondaries' identities are admitted
at the top as its operator would (``idnode upstream admit``), and both trust each
other's signing roots (the bundle an operator hands out: ``idnode keys export-public
--root``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization

from node.app import Node
from node.docking.admission import admission_values
from node.resolution.site import load_or_create_site_key
from node.settings import Settings, load_settings
from node.signing.signer import build_signer
from protocol.handle import parse_handle
from tests.conftest import scratch_database
from tests.node.http_support import SteppedClock

TOP, TEXTILE, ELEVATOR = "top", "textile", "elevator"
PREFIX = {TOP: "88", TEXTILE: "88.118", ELEVATOR: "88.119"}
# A node starts or stops in seconds here. Past this, the step fails saying which one,
# with every asyncio task's stack on stderr, rather than running into pytest's timeout
# with only the threads' stacks (which show an idle event loop and nothing more).
STEP_BOUND_S = 45.0
T = TypeVar("T")


async def bounded(what: str, step: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(step, STEP_BOUND_S)
    except TimeoutError:
        print(f"{what}: not done after {STEP_BOUND_S:g} s; the tasks:", file=sys.stderr)
        for task in asyncio.all_tasks():
            task.print_stack(file=sys.stderr)
        raise AssertionError(
            f"{what} took over {STEP_BOUND_S:g} s (task stacks on stderr)"
        ) from None


class WallClock:
    """The wall clock, movable forward (docking backoffs are wall-clock times)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Member:
    name: str
    settings: Settings
    clock: WallClock = field(default_factory=WallClock)
    monotonic: SteppedClock = field(default_factory=SteppedClock)
    node: Node | None = None

    @property
    def up(self) -> Node:
        assert self.node is not None, f"{self.name} is not running"
        return self.node

    async def start(self) -> Node:
        self.node = Node(self.settings, clock=self.clock, monotonic=self.monotonic)
        await bounded(f"{self.name} start", self.node.start())
        # A restarted node keeps its ports, as a deployed one does: its HS_SITE, and the
        # secondaries' upstream setting, stay true.
        self.settings = dataclasses.replace(
            self.settings, handle_port=self.node.handle_port, http_port=self.node.http_port
        )
        return self.node

    async def stop(self) -> None:
        if self.node is not None:
            node, self.node = self.node, None
            await bounded(f"{self.name} stop", node.stop())


@dataclass
class Topology:
    members: dict[str, Member]

    def __getitem__(self, name: str) -> Node:
        return self.members[name].up

    def member(self, name: str) -> Member:
        return self.members[name]

    async def admit(self, name: str) -> None:
        """The top's operator admits a secondary's prefix, owned by its site key."""
        top = self[TOP]
        key = load_or_create_site_key(self.members[name].settings.site_key_path)
        assert top.writes is not None
        await top.writes.put(
            parse_handle(f"0.NA/{PREFIX[name]}"),
            admission_values(PREFIX[name], key.public_key()),
            actor="test:operator",
            now=top.now(),
            source="cli",
        )

    async def docked(self, name: str, prefixes: set[str], timeout_s: float = STEP_BOUND_S) -> None:
        """Until the secondary's outbox says these prefixes are docked."""
        docking = self[name].docking
        assert docking is not None

        async def states() -> dict[str, str]:
            return {r.prefix: r.state for r in await docking.outbox.rows()}

        async def wait() -> None:
            while True:
                now = await states()
                if all(now.get(p) == "docked" for p in prefixes):
                    return
                docking.wake()
                async with docking.changed:
                    await docking.changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"{name} did not dock {prefixes}: {await states()}") from None


def member_settings(name: str, url: str, data: Path, upstream: str = "", **flags: Any) -> Settings:
    return load_settings(
        env={},
        flags={
            "database_url": url,
            "data_dir": str(data / name),
            "bind": "127.0.0.1",
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            "demo": True,
            "role": "top-level" if name == TOP else "secondary",
            "prefixes": PREFIX[name],
            "upstream": upstream,
            **({} if name == TOP else {"trust_root_file": str(data / "roots.pem")}),
            **flags,
        },
    )


def _roots_bundle(settings: list[Settings], path: Path) -> None:
    """The signing roots of the secondaries, made before they start (build_signer makes
    the key store), in one PEM bundle each node trusts."""
    pems = []
    for s in settings:
        signer = build_signer(s, int(time.time()))
        assert signer.root_public is not None
        pems.append(
            signer.root_public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    path.write_bytes(b"".join(pems))


@contextlib.asynccontextmanager
async def topology(
    pg_server: str,
    data: Path,
    *,
    before_start: Callable[[int], None] | None = None,
    **flags: Callable[[str], dict[str, Any]],
) -> AsyncIterator[Topology]:
    """The three nodes started (their docking under way: ``Topology.docked`` waits).
    ``flags[name](url)``: extra settings; ``before_start(top_port)`` runs once the top
    listens, before the secondaries start."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {n: await stack.enter_async_context(scratch_database(pg_server)) for n in PREFIX}
        extra = {n: flags[n](urls[n]) if n in flags else {} for n in PREFIX}
        top = Member(TOP, member_settings(TOP, urls[TOP], data, **extra[TOP]))
        tree = Topology({TOP: top})
        stack.push_async_callback(_stop_all, tree)
        await top.start()
        if before_start is not None:
            assert top.up.handle_port
            before_start(top.up.handle_port)
        upstream = f"127.0.0.1:{top.up.handle_port}"
        for name in (TEXTILE, ELEVATOR):
            options = {"upstream": upstream, **extra[name]}
            tree.members[name] = Member(name, member_settings(name, urls[name], data, **options))
        await asyncio.to_thread(
            _roots_bundle,
            [tree.members[n].settings for n in (TEXTILE, ELEVATOR)],
            data / "roots.pem",
        )
        for name in (TEXTILE, ELEVATOR):
            await tree.admit(name)
            await tree.members[name].start()
        yield tree


async def _stop_all(tree: Topology) -> None:
    for member in reversed(list(tree.members.values())):
        await member.stop()

"""What the abuse benchmark (loadtest/abuse.py) and tests (tests/e2e/test_abuse.py) set
up on a node started with ``--demo``, and the attacks they run against it.

- ``ROLLS`` bulk-loaded textile rolls (loadtest/bulkload.py, ``FIELDS`` fields: a ~650-byte
  reply, two datagrams): the first ``len(CACHED)`` are the polite client's cached
  records, the rest its uncached ones, each asked for once (``Stage.fresh``);
- ``LARGEST``: the largest record an enterprise admin can write and the node can still
  send in one message (MAX_MESSAGE_BYTES, 256 KiB): ``LARGEST_VALUES`` values of
  ``LARGEST_VALUE_BYTES``, written as the silk mill's admin over HTTP;
- ``guards`` admin identities ``300:88.118.2/ABUSE-ADMIN-<n>`` whose HS_SECKEY is in the
  older hashed form (PBKDF2, node/secrets/legacy.py) at ``GUARD_ITERATIONS``, ~0.3 s a
  check here: the password guesser aims at number 0; the polite client logs in as the
  others, each once, so every login is a real check (a success is cached by the node).

The node runs with ``NODE_ENV``: no network exempt from the per-source limits (loopback
is by default), and ``http_sessions_max`` scaled down (200), so a session flood this
attacker can make (hundreds a second) fills the table within the polite client's
``session_age_s``, as a larger one would fill the default 10,000.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import asyncpg

from loadtest.attacks import (
    Attack,
    CertFlood,
    ConnectionHog,
    FragmentFlood,
    MissFlood,
    PasswordGuess,
    SessionFlood,
    Target,
    basic,
)
from loadtest.bulkload import load_rolls
from loadtest.polite import KINDS, PoliteClient
from loadtest.rolls import PREFIX, roll_handle
from node.demo.dataset import SILK_MILL
from node.secrets.legacy import hash_secret
from protocol.handle import normalise
from protocol.valuecodec import decode_values, encode_values

FIELDS = 8
ROLLS = 20_000
CACHED = tuple(roll_handle(n) for n in range(8))
DEMO_ROLL = "88.118.2/ROLL-2026-000123"  # node.demo.dataset: a greige roll, 3 KB over UDP
LARGEST = f"{PREFIX}/ABUSE-LARGEST"
LARGEST_VALUES, LARGEST_VALUE_BYTES = 60, 4000  # a 258 KB reply
MISSING = f"{PREFIX}/ABUSE-NO-SUCH-HANDLE"
SILK_ADMIN = f"300:{PREFIX}/ADMIN"
GUARD_SECRET = "abuse-guard-secret-5d1c"
GUARD_ITERATIONS = 200_000  # ~0.3 s of a core here, what the issue measured for one guess
NODE_ENV = {
    "IDNODE_RATE_LIMIT_EXEMPT_NETWORKS": "",
    "IDNODE_HTTP_SESSIONS_MAX": "200",
}
ATTACKS = ("misses", "cert", "fragments", "sessions", "connections", "passwords")
_GUARD_INDEX = 300
# Benchmark SQL on our own rows: the hashed form can only be written behind the node.
_READ = 'SELECT "values" FROM handles WHERE handle_key = $1'
_WRITE = 'UPDATE handles SET "values" = $2 WHERE handle_key = $1'


def guard_handle(n: int) -> str:
    return f"{PREFIX}/ABUSE-ADMIN-{n}"


def guard_admin(n: int) -> str:
    return f"{_GUARD_INDEX}:{guard_handle(n)}"


@dataclass
class Stage:
    """A node with the stage set: what the polite client and the attacks aim at."""

    target: Target
    guards: int
    _fresh: Iterator[int] = field(default_factory=lambda: itertools.count(len(CACHED)))
    _logins: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh(self) -> Iterator[str]:
        """Rolls never asked for before (shared by every client made here)."""
        for n in self._fresh:
            if n >= ROLLS:
                raise RuntimeError(f"all {ROLLS} rolls have been asked for: load more")
            yield roll_handle(n)

    def logins(self) -> Iterator[tuple[str, str]]:
        for n in self._logins:
            if n >= self.guards:
                raise RuntimeError(f"all {self.guards - 1} guard admins have logged in")
            yield guard_admin(n), GUARD_SECRET

    def polite(self, kinds: tuple[str, ...] = KINDS, **kw: Any) -> PoliteClient:
        return PoliteClient(
            self.target.host,
            self.target.handle_port,
            self.target.http_port,
            cached=CACHED,
            fresh=self.fresh(),
            kinds=kinds,
            logins=self.logins(),
            **kw,
        )

    def attack(self, name: str, **kw: Any) -> Attack:
        """One of ``ATTACKS`` with its defaults (attacks.py), ``kw`` overriding them."""
        t = self.target
        if name == "misses":
            return MissFlood(t, prefix=PREFIX, **kw)
        if name == "cert":
            return CertFlood(t, handles=(DEMO_ROLL, *CACHED), prefix=PREFIX, **kw)
        if name == "fragments":
            return FragmentFlood(t, **kw)
        if name == "sessions":
            return SessionFlood(t, **kw)
        if name == "connections":
            return ConnectionHog(t, record=LARGEST, **kw)
        if name == "passwords":
            return PasswordGuess(t, admin=guard_admin(0), **kw)
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


def largest_record() -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "type": "NOTE",
            "data": {"format": "string", "value": chr(ord("a") + i % 26) * LARGEST_VALUE_BYTES},
        }
        for i in range(1, LARGEST_VALUES + 1)
    ]


def guard_record(n: int) -> list[dict[str, Any]]:
    admin = {"handle": guard_handle(n), "index": _GUARD_INDEX, "permissions": "111111111111"}
    return [
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}},
        {"index": _GUARD_INDEX, "type": "HS_SECKEY", "data": GUARD_SECRET, "permissions": "1100"},
    ]


async def set_stage(dsn: str, target: Target, *, rolls: int = ROLLS, guards: int = 24) -> Stage:
    """Load the rolls, write the largest record and the guard admins (see the module)."""
    await load_rolls(dsn, rolls, FIELDS)
    base = f"http://{target.host}:{target.http_port}/api/handles/"
    auth = {"Authorization": basic(SILK_ADMIN, SILK_MILL.admin_secret)}
    writes = [(LARGEST, largest_record())] + [
        (guard_handle(n), guard_record(n)) for n in range(guards)
    ]
    async with aiohttp.ClientSession() as http:
        for handle, values in writes:
            async with http.put(base + handle, json=values, headers=auth) as r:
                if r.status not in (200, 201):
                    raise RuntimeError(f"writing {handle}: HTTP {r.status} {await r.text()}")
    hashed = hash_secret(GUARD_SECRET.encode(), GUARD_ITERATIONS)
    conn = await asyncpg.connect(dsn)
    try:
        for n in range(guards):
            key = normalise(guard_handle(n))
            stored = decode_values(await conn.fetchval(_READ, key))
            old = tuple(replace(v, data=hashed) if v.index == _GUARD_INDEX else v for v in stored)
            await conn.execute(_WRITE, key, encode_values(old))
    finally:
        await conn.close()
    return Stage(target, guards)

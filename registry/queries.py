"""Named SQL blocks loaded once from registry/sql/queries/*.sql (procrastinate style).

A block starts with ``-- name: <name>`` and runs to the next one. Python never composes
SQL from user data: every query here takes its inputs as $n parameters.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        if name in blocks:
            raise ValueError(f"query {name!r} defined twice")
        blocks[name] = body.strip()
    return blocks


@cache
def queries() -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in sorted(resources.files("registry").joinpath("sql", "queries").iterdir(), key=str):
        if entry.name.endswith(".sql"):
            for name, sql in parse_blocks(entry.read_text(encoding="utf-8")).items():
                if name in out:
                    raise ValueError(f"query {name!r} defined in two files")
                out[name] = sql
    return out


def q(name: str) -> str:
    return queries()[name]


@cache
def _names() -> dict[str, str]:
    return {sql: name for name, sql in queries().items()}


def query_name(sql: str) -> str | None:
    """The name of a query ``q`` returned, for timing it by name (registry.instrument);
    None for SQL that is no named query (a ping, a migration). ``q`` hands out the same
    string objects every time, so the lookup hashes nothing new."""
    return _names().get(sql)

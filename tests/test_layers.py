"""Imports flow one way (README "Layout"): cli -> serving -> app -> fronts -> core services
-> runtime -> settings -> registry, protocol. A module may import from its own component
or from a lower rank, never upward and never sideways (two fronts, or two core services
of one rank, do not import each other). Parsed with ``ast``, so imports inside functions
and under ``TYPE_CHECKING`` count too. The driver stays in ``registry/`` and SQL with it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Lower rank = lower layer. A component is a top-level package of node/ (node.auth),
# or a front (node.fronts.http); modules directly in node/ are components of their own.
RANKS: dict[str, int] = {
    "protocol": 0,
    "registry": 1,
    "node.errors": 2,
    "node.settings": 3,
    "node": 3,  # node/__init__.py: the version
    "node.runtime": 4,
    "node.client": 5,
    "node.signing": 5,
    "node.secrets": 6,
    "node.templates": 6,
    "node.resolution": 7,
    "node.auth": 8,
    "node.writes": 9,
    "node.docking": 9,
    "node.demo": 10,
    "node.fronts.health": 11,
    "node.fronts.native": 11,
    "node.fronts.http": 11,
    "node.app": 12,
    "node.serving": 13,
    "node.cli": 14,
}
DRIVER = {"asyncpg"}
SQL = re.compile(r"\b(SELECT \S+ FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")


def component(module: str) -> str | None:
    parts = module.split(".")
    for size in (3, 2, 1):
        name = ".".join(parts[:size])
        if name in RANKS:
            return name
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # ``from node.fronts import http`` imports the submodule node.fronts.http
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


SOURCES = sorted(p for d in ("node", "registry", "protocol") for p in (REPO / d).rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    missing = [module_name(p) for p in SOURCES if component(module_name(p)) is None]
    assert not missing, f"add these to RANKS: {missing}"


def violations(module: str, names: set[str]) -> list[str]:
    """The imports of ``module`` that go upward or sideways."""
    here = component(module)
    assert here is not None, module
    wrong = []
    for name in names:
        there = component(name)
        if there is None or there == here:
            continue  # a third-party module, or the same component
        if RANKS[there] >= RANKS[here]:
            way = "sideways" if RANKS[there] == RANKS[here] else "upward"
            wrong.append(f"{name} ({way}: {there} is rank {RANKS[there]}, {here} is {RANKS[here]})")
    return sorted(wrong)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_flow_downward(path: Path) -> None:
    wrong = violations(module_name(path), imports(path))
    assert not wrong, f"{module_name(path)} imports " + "; ".join(wrong)


def test_upward_and_sideways_imports_are_reported() -> None:
    assert violations("node.fronts.http.services", {"node.cli.common"})  # upward
    assert violations("node.fronts.native.handler", {"node.fronts.http.app"})  # sideways
    assert violations("node.signing.signer", {"node.client.native"})  # sideways, one rank
    assert violations("registry.store", {"node.settings"})
    assert not violations(
        "node.fronts.http.page.routes", {"node.fronts.http.reply", "node.writes.service"}
    )


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if not p.is_relative_to(REPO / "registry")],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_driver_and_sql_stay_in_the_registry(path: Path) -> None:
    names = {n.split(".")[0] for n in imports(path)}
    assert not names & DRIVER, f"{module_name(path)} imports the driver: only registry/ may"
    found = [m.group(0) for m in SQL.finditer(path.read_text(encoding="utf-8"))]
    assert not found, f"{module_name(path)} holds SQL ({found[:3]}): SQL lives in registry/sql"

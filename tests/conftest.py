"""Session-wide PostgreSQL for the tests: one server, a fresh empty database per test.

`pg_server` yields the URL of a maintenance database on a real server: an EmbeddedPostgres
started for the session, or the server named by IDNODE_TEST_DATABASE_URL. `database_url`
yields the URL of a new, empty database on it and drops it afterwards. Package conftests
build on `database_url` (e.g. to apply migrations) rather than on the server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from registry.embedded import EmbeddedPostgres


def traversable_temp_dir(prefix: str) -> Path:
    """A fresh temp dir that the embedded server's OS user can pass through.

    mkdtemp (and pytest's tmp_path base, /tmp/pytest-of-root) is 0700: when the tests run as
    root, PostgreSQL runs as another user and could not reach a data dir inside it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def with_database(url: str, database: str) -> str:
    """`url` with its database replaced; keeps host=/port= query parameters (socket URLs)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url = os.environ.get("IDNODE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    base = traversable_temp_dir("idnode-test-pg-")
    server = EmbeddedPostgres(base / "data")
    try:
        server.initialise()
        server.start()
        yield server.dsn
    finally:
        try:
            if server.is_initialised():
                # immediate: nothing to keep, and leftover connections must not delay exit.
                server.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def idnode_data_dir() -> Iterator[Path]:
    """An empty idnode data dir (not yet created) in a fresh traversable temp dir.

    Any embedded server a test left running in it is stopped before the dir is removed.
    """
    base = traversable_temp_dir("idnode-test-data-")
    data_dir = base / "data"
    try:
        yield data_dir
    finally:
        try:
            leftover = EmbeddedPostgres(data_dir)
            if leftover.is_initialised():
                leftover.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@asynccontextmanager
async def scratch_database(pg_server: str) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards (for fixtures of any
    scope; ``database_url`` is the per-test one)."""
    name = f"idnode_test_{secrets.token_hex(6)}"  # ours, never user data: safe in DDL
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(pg_server, name)
    finally:
        conn = await asyncpg.connect(pg_server)
        try:
            # FORCE (PostgreSQL >= 13) ends connections a test failed to close.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def database_url(pg_server: str) -> AsyncIterator[str]:
    async with scratch_database(pg_server) as url:
        yield url

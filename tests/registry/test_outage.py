"""registry.outage: a registry that cannot be reached is described in words, from the
driver's real failures (a closed port, a stopped server, a missing socket)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from registry.connect import open_registry
from registry.embedded import EmbeddedPostgres
from registry.errors import DatabaseUnavailable
from registry.outage import in_words, unreachable


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_closed_port_is_connection_refused() -> None:
    port = _closed_port()
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_registry(
            f"postgresql://idnode@127.0.0.1:{port}/idnode", min_size=1, max_size=1, timeout_s=5
        )
    assert in_words(caught.value) == "connection refused"
    assert unreachable(f"127.0.0.1:{port}/idnode", caught.value) == (
        f"registry unreachable at 127.0.0.1:{port}/idnode: connection refused"
    )


async def test_a_server_stopped_under_a_pool(idnode_data_dir: Path) -> None:
    """What /readyz sees after the postmaster went away: no exception names, no errno."""
    pg = EmbeddedPostgres(idnode_data_dir)
    pg.initialise()
    pg.start()
    registry = await open_registry(pg.dsn, min_size=1, max_size=1, timeout_s=5)
    try:
        await registry.ping()
        pg.stop(mode="immediate")
        reasons = set()
        for _ in range(2):  # the pooled connection is found dead, then a new one refused
            with pytest.raises(DatabaseUnavailable) as caught:
                await registry.ping()
            reasons.add(in_words(caught.value))
    finally:
        await registry.close()
    assert reasons <= {
        "the connection was lost",
        "connection refused (no server socket: PostgreSQL is not running)",
        "connection refused",
        "connection was closed in the middle of operation",
    }, reasons
    for reason in reasons:
        assert "Error" not in reason and "Errno" not in reason


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory"),
            "connection refused (no server socket: PostgreSQL is not running)",
        ),
        (TimeoutError(), "no answer in time"),
        (OSError(errno.EIO, "Input/output error"), "input/output error"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "cannot resolve"),
    ],
)
def test_operating_system_errors_in_words(exc: BaseException, words: str) -> None:
    assert in_words(exc).startswith(words)

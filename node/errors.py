"""One exception root for what a user of ``node/`` can fix: a setting, a port in use, a
key file with the wrong mode, a mistaken command. Each entry point (the ``idnode``
command, a worker process) turns these, and the registry's and the protocol's own
errors, into one line on stderr and an exit status; a traceback means a bug.
"""

from __future__ import annotations

from protocol.errors import ProtocolError
from registry.errors import RegistryError

EXIT_ERROR = 1
EXIT_USAGE = 2


class NodeError(Exception):
    """Something the user can fix; the message says what and how."""

    exit_status = EXIT_ERROR

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class PortUnavailable(NodeError):
    """A port the node listens on cannot be bound (in use, or not permitted)."""


# What an entry point reports as one line: ours, and the packages' own roots.
USER_ERRORS: tuple[type[Exception], ...] = (NodeError, RegistryError, ProtocolError)


def exit_status(exc: BaseException) -> int:
    return exc.exit_status if isinstance(exc, NodeError) else EXIT_ERROR

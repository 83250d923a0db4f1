"""One exception root for registry/; the CLI and fronts turn these into one clear line
or a Handle response code."""

from __future__ import annotations


class RegistryError(Exception):
    """Registry error."""

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class EmbeddedServerError(RegistryError):
    """The embedded PostgreSQL server could not be started or stopped."""


class DataDirLocked(EmbeddedServerError):
    """Another idnode process is already serving this data directory."""


class NotFound(RegistryError):
    """No such object."""


class Conflict(RegistryError):
    """The object already exists or was changed concurrently."""


class UnknownPrefix(RegistryError):
    """The prefix is not registered on this node, or not enabled."""


class DatabaseUnavailable(RegistryError):
    """The registry database cannot be reached."""


class QueryFailed(RegistryError):
    """A registry query failed for a reason other than reachability (a bug or a
    constraint the caller did not expect); the message names the SQLSTATE."""

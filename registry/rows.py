"""What the registry hands out: typed rows, never driver records.

Callers outside ``registry/`` see these dataclasses (and the exceptions of
``registry.errors``) only, so nothing above the registry depends on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from protocol.valuecodec import decode_values
from protocol.values import HandleValue


class PrefixStatus(IntEnum):
    """A prefix's lifecycle state, numbered as the top-level node's management system
    numbers it (docs/idis.md)."""

    DISABLED = 0
    ENABLED = 1
    PENDING_DELETION = 2
    REJECTED = 3
    AWAITING_REVIEW = 4
    UNDER_REVIEW = 5

    @property
    def label(self) -> str:
        """``awaiting review``: how messages and listings name it."""
        return self.name.lower().replace("_", " ")

    @classmethod
    def parse(cls, text: str) -> PrefixStatus:
        """A number (``4``) or a name (``awaiting-review``, ``awaiting review``)."""
        text = text.strip()
        try:
            return (
                cls(int(text))
                if text.isdigit()
                else cls[text.upper().replace("-", "_").replace(" ", "_")]
            )
        except (KeyError, ValueError):
            choices = ", ".join(f"{s.value} {s.label}" for s in cls)
            raise ValueError(f"{text!r} is not a prefix status ({choices})") from None


@dataclass(frozen=True, slots=True)
class Enterprise:
    id: int
    name: str
    credit_code: str
    contact: str
    status: int  # 0 suspended, 1 active
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Prefix:
    prefix: str  # as registered
    prefix_key: str  # the lookup key (ASCII upper case)
    status: PrefixStatus
    credit_code: str  # of the owning enterprise
    enterprise_name: str
    created_at: datetime
    updated_at: datetime

    @property
    def status_name(self) -> str:
        return self.status.label


@dataclass(frozen=True, slots=True)
class PrefixReview:
    """One step of a prefix's lifecycle (migration 0008), append-only: what moved it
    (``apply``, ``review``, ``operator``), from which status to which, who (``index:handle``
    or ``cli:<os user>``) and why."""

    id: int
    prefix: str
    credit_code: str  # of the enterprise holding the prefix
    action: str
    from_status: PrefixStatus | None  # None: this step registered the prefix
    to_status: PrefixStatus
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Record:
    handle: str  # the spelling it was registered with
    values: tuple[HandleValue, ...]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A handle row as stored: the values still in wire form (the cache keeps these,
    about a third of the memory of decoded values)."""

    handle: str
    wire: bytes
    version: int

    def decoded(self) -> tuple[HandleValue, ...]:
        return decode_values(self.wire)


@dataclass(frozen=True, slots=True)
class PutResult:
    record: Record
    created: bool
    changed: bool


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    handle: str
    action: str
    actor: str
    at: datetime
    version: int
    old_values: tuple[HandleValue, ...] | None
    new_values: tuple[HandleValue, ...] | None


@dataclass(frozen=True, slots=True)
class ResignProgress:
    """Where an interrupted ``idnode resign`` job resumes."""

    last_key: str
    done: int


# (template handle, field key, value) of a record's searchable / unique fields.
FieldEntry = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class FieldRows:
    """What the field index (migration 0007) holds for one record."""

    indexed: tuple[FieldEntry, ...] = ()
    unique: tuple[FieldEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """A history entry with its place in the append-only log."""

    seq: int  # increasing in the order the handle's writes happened; a paging cursor
    entry: HistoryEntry


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Part of a handle's history, newest first (``Registry.history_page``)."""

    entries: tuple[LoggedEntry, ...]
    older: int | None  # pass as ``before`` for the next page; None: this page reaches the start


@dataclass(frozen=True, slots=True)
class RecordAt:
    """A record as it stood at some time: the values of the last write before it."""

    handle: str
    values: tuple[HandleValue, ...]
    version: int
    written_at: datetime  # when this version was written
    actor: str

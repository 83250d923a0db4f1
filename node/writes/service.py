"""The write service: every handle write (CLI, HTTP, native admin, demo seed) goes
through here.

It validates what the registry does not know about (HS_SECKEY rules, record size after
a partial update), seals clear HS_SECKEY secrets (``node.secrets.vault``), lets the
caller authorize against exactly the record that would be stored, and then calls
``Registry.put_handle`` / ``delete_handle``, which commit the change and its history
row in one transaction before returning.

HS_SECKEY rules (README "Secrets"): a secret value is never publicly readable or
writable: the public bits are cleared on write (the reference's own tools write
"1100"); an empty secret is refused; a re-sent secret equal to the stored one keeps the
stored value, so retrying a write is idempotent; a record written back as it was read
(``SHOWN`` in place of the secret) keeps the secret it had.

Writes to one handle are serialized inside this process, and the registry refuses a
write whose handle changed since it was authorized (``expected_version``), so the
record a caller authorizes against is the record the write replaces, across processes.

Signing (docs/signing.md, ``node.signing.signer``): with a signer, the service computes the whole
record to be stored, adds a fresh HS_SIGNATURE (``protocol.recordsig.with_signature``)
and hands the full signed record to the registry, so values and signature commit in one
transaction. Signing before the registry stamps timestamps is sound: digests skip the
index and timestamp. A re-sent record whose values (timestamps aside) equal the stored
ones keeps the stored signature, so it stays "unchanged" rather than counting as a change
because the new signature's ``iat`` differs. Removing values re-signs what remains.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from node.auth import Denied
from node.auth.pubkey import check_key_value
from node.errors import NodeError
from node.runtime.metrics import NodeMetrics
from node.secrets.legacy import looks_hashed
from node.secrets.vault import SHOWN, SealedElsewhere, SecretVault, is_seckey, looks_sealed
from node.templates.catalog import TemplateCatalog, guard_template_record
from node.writes.group import GroupCommitter
from protocol.certs import parse_claims
from protocol.codes import Permission
from protocol.errors import LocalProtocolError, ValueFormatError
from protocol.handle import Handle
from protocol.jose import SignatureError, jws_parse
from protocol.jsonvalues import MAX_VALUES_PER_HANDLE
from protocol.recordsig import is_signature, needs_cover
from protocol.values import HandleValue
from registry.batch import BatchRefused, Change
from registry.errors import Conflict, DatabaseUnavailable, NotFound, RegistryError
from registry.recordrules import check_incoming, storage_prefixes, unusable_prefix
from registry.rows import FieldRows, PutResult, Record
from registry.store import Registry

if TYPE_CHECKING:
    from node.signing.signer import RecordSigner

log = logging.getLogger("idnode.writes")

PutCheck = Callable[[Record | None, tuple[HandleValue, ...]], Awaitable[None]]
DeleteCheck = Callable[[Record], Awaitable[None]]


class ValuesMissing(NotFound):
    """The handle exists but lacks a value index the request names (RC 200)."""


_PUBLIC_BITS = Permission.PUBLIC_READ | Permission.PUBLIC_WRITE


def protect_secret(value: HandleValue) -> HandleValue:
    """Apply the HS_SECKEY rules to one incoming value (others pass unchanged): never
    empty, never publicly readable or writable. An HS_PUBKEY whose key would cost more
    to verify with than the node's bounds is refused (``check_key_value``): it is work
    an anonymous challenge answer could make the node do."""
    check_key_value(value)
    if not is_seckey(value):
        return value
    if not value.data:
        raise ValueFormatError(f"value {value.index}: HS_SECKEY secret is empty")
    return replace(value, permissions=value.permissions & ~_PUBLIC_BITS)


def merged_record(
    existing: Record | None, values: Sequence[HandleValue], only_indexes: frozenset[int] | None
) -> tuple[HandleValue, ...]:
    """The record as ``Registry.put_handle`` will store it (timestamps aside)."""
    if existing is None or only_indexes is None:
        out = list(values)
    else:
        out = [v for v in existing.values if v.index not in only_indexes]
        out += [v for v in values if v.index in only_indexes]
    return tuple(sorted(out, key=lambda v: v.index))


def check_free(existing: Record, incoming: Sequence[HandleValue], indexes: frozenset[int]) -> None:
    """Conflict unless every index in ``indexes`` is free in ``existing`` or already holds
    the same value (timestamps aside)."""
    held = {v.index: v for v in existing.values}
    for value in incoming:
        old = held.get(value.index)
        if (
            value.index in indexes
            and old is not None
            and replace(old, timestamp=0) != replace(value, timestamp=0)
        ):
            raise Conflict(f"handle {existing.handle} already has a value at index {value.index}")


def _same_values(a: Sequence[HandleValue], b: Sequence[HandleValue]) -> bool:
    """Equal apart from timestamps (which the registry sets)."""
    key = sorted((replace(v, timestamp=0) for v in a), key=lambda v: v.index)
    return key == sorted((replace(v, timestamp=0) for v in b), key=lambda v: v.index)


def _incoming(values: Sequence[HandleValue]) -> list[HandleValue]:
    # Every write path (CLI, demo seed, onboarding too) meets the same record rules.
    check_incoming(values)
    incoming = [protect_secret(v) for v in values]
    seen: set[int] = set()
    for v in incoming:
        if v.index in seen:
            raise ValueFormatError(f"value {v.index}: index {v.index} appears more than once")
        seen.add(v.index)
    return incoming


@dataclass(frozen=True, slots=True)
class PutItem:
    """One create or change of a batch (``WriteService.write_batch``), as ``put`` takes it."""

    handle: Handle
    values: tuple[HandleValue, ...]
    overwrite: bool = True
    only_indexes: frozenset[int] | None = None
    authorize: PutCheck | None = None
    create_missing: bool = False  # only_indexes applies to an existing record only


@dataclass(frozen=True, slots=True)
class DeleteItem:
    handle: Handle
    indexes: frozenset[int] | None = None
    authorize: DeleteCheck | None = None


BatchItem = PutItem | DeleteItem


class NotApplied(RegistryError):
    """Not written: another item of the atomic batch failed."""


BatchOutcome = PutResult | None | Exception


class _KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _issuer_of(signature: HandleValue) -> str | None:
    try:
        return parse_claims(jws_parse(signature.data).payload).iss
    except SignatureError:
        return None


class WriteService:
    def __init__(
        self,
        registry: Registry,
        metrics: NodeMetrics | None = None,
        *,
        vault: SecretVault | None = None,
        signer: RecordSigner | None = None,
        templates: TemplateCatalog | None = None,
        group_max: int = 1,
    ):
        self.registry = registry
        # Records citing a template are checked against it on every write
        # (node.templates.catalog); None only where no template can be read.
        self.templates = templates
        self.signer = signer
        self.metrics = metrics
        self.vault = vault  # seals HS_SECKEY values; a write carrying a secret needs one
        self._locks = _KeyedLocks()
        # Concurrent single writes share commits (node.writes.group); 1: each its own.
        self._group = (
            GroupCommitter(
                lambda changes, now: registry.apply_changes(changes, now, atomic=False),
                group_max,
            )
            if group_max > 1
            else None
        )
        # Called with the handle key once a change is committed: this node's own cache
        # forgets it before the write is acknowledged (others hear it via NOTIFY).
        self.on_commit: Callable[[str], None] = lambda key: None

    async def put(
        self,
        handle: Handle,
        values: Sequence[HandleValue],
        *,
        actor: str,
        now: datetime,
        source: str,
        overwrite: bool = True,
        only_indexes: frozenset[int] | None = None,
        keep_timestamps: bool = False,
        authorize: PutCheck | None = None,
        create_missing: bool = False,
    ) -> PutResult:
        """Create or change a handle. ``only_indexes``: add/replace just these indexes
        of an existing handle (NotFound when it does not exist, as the reference's
        ADD_VALUE) unless ``create_missing`` (a write by field names: a new record holds
        just these values). ``overwrite=False`` without ``only_indexes``: create only; the same
        content again is success (a retried create), other content a Conflict.
        ``authorize`` sees the current record and the whole record to be stored, and
        raises to refuse."""
        incoming = _incoming(values)
        async with self._locks.hold(handle.key):
            await self._check_prefix(handle)
            existing = await self.registry.get_handle(handle.key)
            if keep_timestamps:
                result = await self._put_as_given(handle, incoming, existing, actor, now, authorize)
            else:
                if create_missing and existing is None:
                    only_indexes = None
                prepared = await self._prepare_put(
                    handle, incoming, existing, actor, now, overwrite, only_indexes, authorize
                )
                if isinstance(prepared, PutResult):
                    return prepared  # nothing changes
                record = await self._commit(prepared, now)
                assert record is not None
                result = PutResult(record, created=existing is None, changed=True)
        if result.changed:
            self._committed(handle, result.record, source, actor, created=result.created)
        return result

    async def delete(
        self,
        handle: Handle,
        *,
        actor: str,
        now: datetime,
        source: str,
        indexes: frozenset[int] | None = None,
        authorize: DeleteCheck | None = None,
    ) -> Record | None:
        """Delete the handle, or only the given indexes (returns the new record then)."""
        async with self._locks.hold(handle.key):
            await self._check_prefix(handle)
            existing = await self.registry.get_handle(handle.key)
            change = await self._prepare_delete(handle, existing, indexes, actor, now, authorize)
            record = await self._commit(change, now)
        self._committed(handle, record, source, actor, created=False)
        return record

    async def write_batch(
        self, items: Sequence[BatchItem], *, actor: str, now: datetime, source: str, atomic: bool
    ) -> list[BatchOutcome]:
        """Many writes, each checked as a single one would be, committed together in one
        transaction (``Registry.apply_changes``). Per item: its PutResult, None after a
        delete, or the exception that refused it. ``atomic``: all or nothing; when one
        fails, the others are ``NotApplied``."""
        out: list[BatchOutcome] = [NotApplied()] * len(items)
        seen: dict[str, int] = {}
        for n, item in enumerate(items):
            first = seen.setdefault(item.handle.key, n)
            if first != n:
                out[n] = ValueFormatError(
                    f"handle {item.handle.text} appears twice in the batch (items {first} and {n})"
                )
        checked: dict[str, Exception | None] = {}
        existing = await self.registry.get_handles(
            [i.handle.key for n, i in enumerate(items) if not isinstance(out[n], ValueFormatError)]
        )
        changes: list[Change] = []
        where: list[int] = []
        for n, item in enumerate(items):
            if isinstance(out[n], ValueFormatError):
                continue
            try:
                await self._check_prefix(item.handle, checked)
                old = existing.get(item.handle.key)
                prepared: Change | PutResult
                if isinstance(item, DeleteItem):
                    prepared = await self._prepare_delete(
                        item.handle, old, item.indexes, actor, now, item.authorize
                    )
                else:
                    only = item.only_indexes
                    if item.create_missing and old is None:
                        only = None
                    prepared = await self._prepare_put(
                        item.handle,
                        _incoming(item.values),
                        old,
                        actor,
                        now,
                        item.overwrite,
                        only,
                        item.authorize,
                    )
            except DatabaseUnavailable:
                raise  # not this item's fault: the whole call is retried (503)
            except (RegistryError, ValueFormatError, NodeError, Denied) as exc:
                out[n] = exc
                continue
            if isinstance(prepared, PutResult):
                out[n] = prepared
            else:
                changes.append(prepared)
                where.append(n)
        if atomic and any(isinstance(o, Exception) and not isinstance(o, NotApplied) for o in out):
            return [o if not isinstance(o, PutResult) else NotApplied() for o in out]
        try:
            outcomes = await self.registry.apply_changes(changes, now, atomic=atomic)
        except BatchRefused as refused:
            for pos, why in refused.failed.items():
                out[where[pos]] = why
            if not refused.failed:
                return [Conflict(refused.message)] * len(items)
            return [o if isinstance(o, Exception) else NotApplied() for o in out]
        for n, change, outcome in zip(where, changes, outcomes, strict=True):
            if isinstance(outcome, RegistryError):
                out[n] = outcome
                continue
            created = change.expected_version == 0
            self._committed(change.handle, outcome, source, actor, created=created)
            out[n] = None if outcome is None else PutResult(outcome, created=created, changed=True)
        return out

    async def _prepare_put(
        self,
        handle: Handle,
        incoming: list[HandleValue],
        existing: Record | None,
        actor: str,
        now: datetime,
        overwrite: bool,
        only_indexes: frozenset[int] | None,
        authorize: PutCheck | None,
    ) -> Change | PutResult:
        """The change to commit (the whole record, signed), or the unchanged record."""
        if only_indexes is not None and existing is None:
            raise NotFound(
                f"handle {handle.text} does not exist (index= only changes existing handles)"
            )
        incoming = self._seal_secrets(incoming, existing)
        merged = merged_record(existing, incoming, only_indexes)
        if len(merged) > MAX_VALUES_PER_HANDLE:
            raise ValueFormatError(
                f"the record would hold {len(merged)} values, over the limit of {MAX_VALUES_PER_HANDLE}"
            )
        if authorize is not None:
            await authorize(existing, merged)
        fields = await self._check_template(handle, existing, merged)
        if existing is not None and only_indexes is not None and not overwrite:
            # Adding values: only an index already holding something else conflicts
            # (RC 201, as the reference's ADD_VALUE); the same value again is a retry.
            check_free(existing, incoming, only_indexes)
        record = self._signed(handle, merged, existing, now)
        if record is None:
            record = merged
        if existing is not None:
            if _same_values(record, existing.values):
                return PutResult(existing, created=False, changed=False)
            if not overwrite and only_indexes is None:
                raise Conflict(f"handle {existing.handle} already exists with different values")
        version = existing.version if existing is not None else 0
        return Change(handle, tuple(record), version, actor, fields)

    async def _prepare_delete(
        self,
        handle: Handle,
        existing: Record | None,
        indexes: frozenset[int] | None,
        actor: str,
        now: datetime,
        authorize: DeleteCheck | None,
    ) -> Change:
        if existing is None:
            raise NotFound(f"handle {handle.text} does not exist")
        if authorize is not None:
            await authorize(existing)
        if indexes is None:
            return Change(handle, None, existing.version, actor)
        missing = indexes - {v.index for v in existing.values}
        if missing:
            raise ValuesMissing(f"handle {existing.handle} has no value at index {min(missing)}")
        remaining = tuple(v for v in existing.values if v.index not in indexes)
        # What is left must still follow its template, and is re-signed without the
        # removed values, in the same transaction.
        fields = await self._check_template(handle, existing, remaining)
        signed = self._signed(handle, remaining, existing, now)
        record = signed if signed is not None else remaining
        return Change(handle, tuple(record), existing.version, actor, fields)

    async def _commit(self, change: Change, now: datetime) -> Record | None:
        if self._group is not None:
            outcome = await self._group.commit(change, now)
        else:
            outcome = (await self.registry.apply_changes([change], now, atomic=False))[0]
        if isinstance(outcome, RegistryError):
            raise outcome
        return outcome

    def _committed(
        self, handle: Handle, record: Record | None, source: str, actor: str, *, created: bool
    ) -> None:
        self.on_commit(handle.key)
        action = "delete" if record is None else "create" if created else "modify"
        if self.metrics is not None:
            self.metrics.writes.labels(action, source).inc()
        if record is None:
            log.info("delete %s by %s", handle.text, actor)
        else:
            log.info("%s %s by %s (version %d)", action, record.handle, actor, record.version)

    async def _put_as_given(
        self,
        handle: Handle,
        incoming: list[HandleValue],
        existing: Record | None,
        actor: str,
        now: datetime,
        authorize: PutCheck | None,
    ) -> PutResult:
        """A record stored with the timestamps it carries (the demo seed's golden
        records), replacing the handle's."""
        incoming = self._seal_secrets(incoming, existing)
        merged = merged_record(existing, incoming, None)
        if authorize is not None:
            await authorize(existing, merged)
        fields = await self._check_template(handle, existing, merged)
        signed = self._signed(handle, merged, existing, now)
        return await self.registry.put_handle(
            handle,
            signed if signed is not None else merged,
            actor=actor,
            now=now,
            keep_timestamps=True,
            expected_version=existing.version if existing is not None else 0,
            fields=fields,
        )

    async def resign(self, handle: Handle, *, actor: str, now: datetime) -> str:
        """Re-sign the stored record with the current key (``idnode resign``): one write
        with ``expected_version``, so a concurrent write wins (and signs on its own).
        Returns "resigned", "current" (already signed by the current key), "skipped"
        (nothing this node signs), "conflict" or "gone"."""
        ts = int(now.timestamp())
        found = self.signer.issuer_for(handle.text, ts) if self.signer is not None else None
        if self.signer is None or found is None:
            return "skipped"
        async with self._locks.hold(handle.key):
            existing = await self.registry.get_handle(handle.key)
            if existing is None:
                return "gone"
            if not any(needs_cover(v) for v in existing.values if not is_signature(v)):
                return "skipped"
            if any(is_signature(v) and _issuer_of(v) == found[0] for v in existing.values):
                return "current"
            signed = self.signer.sign(handle.text, existing.values, ts)
            if signed is None:
                return "skipped"
            try:
                await self.registry.put_handle(
                    handle,
                    tuple(sorted(signed, key=lambda v: v.index)),
                    actor=actor,
                    now=now,
                    keep_timestamps=True,
                    expected_version=existing.version,
                )
            except Conflict:
                return "conflict"
            self.on_commit(handle.key)
        return "resigned"

    async def _check_template(
        self, handle: Handle, existing: Record | None, merged: Sequence[HandleValue]
    ) -> FieldRows:
        """TemplateViolation unless the record follows the template it cites; its field
        index entries (none without a template). A template record itself must hold a
        valid template and, once published, keep it."""
        own = guard_template_record(handle.text, existing.values if existing else None, merged)
        if self.templates is None:
            return own or FieldRows()
        return await self.templates.check_record(merged) or own or FieldRows()

    async def _check_prefix(
        self, handle: Handle, checked: dict[str, Exception | None] | None = None
    ) -> None:
        """Refuse a write under a prefix that is not registered or not enabled, naming
        its status, before anyone is asked for permission on it (whose answer would
        only be "not an admin of prefix ..."). The registry checks again, in the
        write's transaction. ``checked``: what earlier items of a batch found, by
        the handle's owning prefix."""
        key = handle.owning_prefix.upper()
        if checked is not None and key in checked:
            found = checked[key]
            if found is not None:
                raise found
            return
        for name in storage_prefixes(handle):
            prefix = await self.registry.get_prefix(name)
            if prefix is not None:
                break
        problem = unusable_prefix(name, prefix.status if prefix is not None else None)
        if checked is not None:
            checked[key] = problem
        if problem is not None:
            raise problem

    def _signed(
        self, handle: Handle, values: Sequence[HandleValue], existing: Record | None, now: datetime
    ) -> tuple[HandleValue, ...] | None:
        """``values`` signed, or None when there is no signer or it does not sign ``handle``."""
        if self.signer is None or self.signer.issuer_for(handle.text, int(now.timestamp())) is None:
            return None
        body = tuple(v for v in values if not is_signature(v))
        if not any(needs_cover(v) for v in body):
            return body  # nothing public to vouch for (and a public signature would be noise)
        if existing is not None:
            old_signatures = tuple(v for v in existing.values if is_signature(v))
            old_body = tuple(v for v in existing.values if not is_signature(v))
            if old_signatures and _same_values(body, old_body):
                return tuple(sorted(body + old_signatures, key=lambda v: v.index))
        try:
            signed = self.signer.sign(handle.text, values, int(now.timestamp()))
        except LocalProtocolError as exc:  # too many values for one HS_SIGNATURE
            raise ValueFormatError(f"the record cannot be signed: {exc}") from None
        if signed is None:
            return None
        if len(signed) > MAX_VALUES_PER_HANDLE:
            raise ValueFormatError(
                f"the record would hold {len(signed)} values with its HS_SIGNATURE, over the limit of {MAX_VALUES_PER_HANDLE}"
            )
        return tuple(sorted(signed, key=lambda v: v.index))

    def _seal_secrets(
        self, values: Sequence[HandleValue], existing: Record | None
    ) -> list[HandleValue]:
        """HS_SECKEY values in their stored form (``node.secrets.vault``): a clear secret
        sealed, or the stored value kept when it holds that very secret (a retried write
        stays unchanged); ``SHOWN`` (a record written back as it was read) keeps the
        stored secret. Sealed or hashed data is accepted only as the value already stored
        at that index: copying another record's protected secret is refused, and so is a
        pre-hashed secret of a client's choosing (its iterations are a cost bomb)."""
        stored = {v.index: v for v in existing.values} if existing is not None else {}
        out = []
        for value in values:
            if is_seckey(value):
                value = self._sealed(value, stored.get(value.index))
            out.append(value)
        return out

    def _sealed(self, value: HandleValue, old: HandleValue | None) -> HandleValue:
        data = value.data
        kept = old.data if old is not None and is_seckey(old) else None
        if data == SHOWN or looks_sealed(data) or looks_hashed(data):
            if kept is not None and data in (SHOWN, kept):
                return replace(value, data=kept)
            raise ValueFormatError(
                f"value {value.index}: HS_SECKEY holds a protected form, not a secret; send the "
                "secret itself (secrets are never shown, so a record read elsewhere cannot carry one)"
            )
        if self.vault is None:
            raise ValueFormatError(
                f"value {value.index}: this writer cannot store HS_SECKEY secrets"
            )
        if kept is not None and looks_sealed(kept):
            try:
                if self.vault.open(kept) == data:
                    return replace(value, data=kept)
            except SealedElsewhere:
                pass
        return replace(value, data=self.vault.seal(data))

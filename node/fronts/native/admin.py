"""Native administration: opcodes 100-105 and 300-302 (docs/authentication.md,
"Admin operations"), through the same write service and authorizer as the REST API, so
a handle created natively is signed, recorded in its history, isolated between
enterprises and gone from every cache exactly as one written over HTTP.

Checks run in the reference's order: the prefix is served here (else RC 301), a CREATE
of an existing handle is RC 101 (unless OVRW), value indexes are positive (RC 202) and
unique (RC 201) — all before anyone is challenged; then, as the authenticated identity,
the permissions (RC 400 not an admin, 401 a bit missing) and the operation itself
(RC 100 no such handle, 200 no such value, 201 the index is taken).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from node.auth import Authorizer, Denied, Identity
from node.resolution.prefixes import ServedPrefixes
from node.writes.service import ValuesMissing, WriteService
from protocol.admin import (
    EmptyReply,
    HandleListReply,
    HandleReply,
    HandleRequest,
    RemoveValuesRequest,
    ValuesRequest,
    chunk_handles,
)
from protocol.bodies import Body
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import HandleSyntaxError, ValueFormatError
from protocol.handle import NA_PREFIX, Handle, parse_handle, parse_prefix
from protocol.message import Message
from protocol.values import HandleValue
from registry.errors import Conflict, NotFound, RegistryError, UnknownPrefix
from registry.recordrules import check_incoming
from registry.rows import Record
from registry.store import Registry

ADMIN_OPCODES = frozenset(
    {
        OpCode.CREATE_HANDLE,
        OpCode.DELETE_HANDLE,
        OpCode.ADD_VALUE,
        OpCode.REMOVE_VALUE,
        OpCode.MODIFY_VALUE,
        OpCode.LIST_HANDLES,
        OpCode.HOME_NA,
        OpCode.UNHOME_NA,
        OpCode.LIST_HOMED_NAS,
    }
)
# Handles one LIST_HANDLES may name: each reply holds 50, and the node builds them all.
MAX_LISTED = 100_000
_LIST_PAGE = 1_000


class Refused(Exception):
    """Answer the request with this response code and message."""

    def __init__(self, response_code: ResponseCode, message: str = ""):
        super().__init__(message)
        self.response_code = response_code

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Part:
    """One reply message of an operation (LIST_HANDLES sends several, CONT on all but
    the last)."""

    body: Body
    more: bool = False


class NativeAdmin:
    def __init__(
        self,
        registry: Registry,
        served: ServedPrefixes,
        writes: WriteService,
        authorizer: Authorizer,
        clock: Callable[[], datetime],
    ):
        self.registry = registry
        self.served = served
        self.writes = writes
        self.authorizer = authorizer
        self.clock = clock

    # -- before the challenge ----------------------------------------------------------

    async def precheck(self, request: Message) -> None:
        """What the reference refuses before it challenges anyone; raises Refused."""
        body = request.body
        op = request.header.opcode
        if op in (OpCode.HOME_NA, OpCode.UNHOME_NA, OpCode.LIST_HOMED_NAS):
            if op != OpCode.LIST_HOMED_NAS:
                assert isinstance(body, HandleRequest)
                _prefix_of(body.handle)  # RC 102 for nonsense, before the challenge
            return
        if op == OpCode.LIST_HANDLES:
            assert isinstance(body, HandleRequest)
            self._served(_prefix_of(body.handle))
            return
        assert isinstance(body, (ValuesRequest, HandleRequest, RemoveValuesRequest))
        handle = _parse(body.handle)
        self._served(_home_prefix(handle))
        if isinstance(body, ValuesRequest):
            _check_indexes(body.values)
            try:
                check_incoming(body.values)  # as every write path (registry.recordrules)
            except ValueFormatError as exc:
                raise Refused(ResponseCode.INVALID_VALUE, exc.message) from None
        fresh = OpFlag.OVRW not in request.header.flags and OpFlag.MINT not in request.header.flags
        if op == OpCode.CREATE_HANDLE and fresh and await self.registry.get_handle(handle.key):
            raise Refused(
                ResponseCode.HANDLE_ALREADY_EXISTS, f"handle {handle.text} already exists"
            )

    def _served(self, prefix: str) -> None:
        if not self.served.serves(prefix):
            raise Refused(ResponseCode.SERVER_NOT_RESP, self.served.why_not_served(prefix))

    # -- as the authenticated identity ---------------------------------------------------

    async def run(self, request: Message, identity: Identity) -> list[Part]:
        try:
            return await self._run(request, identity)
        except Denied as exc:
            raise Refused(exc.response_code, exc.message) from None
        except ValuesMissing as exc:
            raise Refused(ResponseCode.VALUES_NOT_FOUND, exc.message) from None
        except NotFound as exc:
            raise Refused(ResponseCode.HANDLE_NOT_FOUND, exc.message) from None
        except UnknownPrefix as exc:
            raise Refused(ResponseCode.SERVER_NOT_RESP, exc.message) from None
        except ValueFormatError as exc:
            raise Refused(ResponseCode.INVALID_VALUE, exc.message) from None

    async def _run(self, request: Message, identity: Identity) -> list[Part]:
        op = request.header.opcode
        body = request.body
        if op == OpCode.LIST_HANDLES:
            assert isinstance(body, HandleRequest)
            return await self._list(identity, _prefix_of(body.handle))
        if op in (OpCode.HOME_NA, OpCode.UNHOME_NA, OpCode.LIST_HOMED_NAS):
            assert isinstance(body, HandleRequest)
            return await self._home(op, identity, body.handle)
        assert isinstance(body, (ValuesRequest, HandleRequest, RemoveValuesRequest))
        handle = _parse(body.handle)
        if op == OpCode.CREATE_HANDLE:
            assert isinstance(body, ValuesRequest)
            return [Part(HandleReply(await self._create(request, identity, handle, body.values)))]
        if op in (OpCode.ADD_VALUE, OpCode.MODIFY_VALUE):
            assert isinstance(body, ValuesRequest)
            await self._change(identity, handle, body.values, add=op == OpCode.ADD_VALUE)
        elif op == OpCode.REMOVE_VALUE:
            assert isinstance(body, RemoveValuesRequest)
            await self._delete(identity, handle, frozenset(body.indexes))
        else:  # DELETE_HANDLE
            await self._delete(identity, handle, None)
        return [Part(EmptyReply())]

    async def _create(
        self, request: Message, identity: Identity, handle: Handle, values: tuple[HandleValue, ...]
    ) -> str:
        overwrite = OpFlag.OVRW in request.header.flags
        if OpFlag.MINT in request.header.flags:
            # As the reference's HandleSuffixMinter: what was sent, then a random UUID.
            text = handle.text if handle.text.endswith("/") else handle.text + "/"
            handle, overwrite = _parse(text + str(uuid.uuid4())), False

        async def authorize(existing: Record | None, merged: tuple[HandleValue, ...]) -> None:
            await self.authorizer.authorize_put(
                identity, handle, existing, merged, overwrite=overwrite, partial=False
            )

        try:
            await self.writes.put(
                handle,
                values,
                actor=identity.actor,
                now=self.clock(),
                source="native",
                overwrite=overwrite,
                authorize=authorize,
            )
        except Conflict as exc:
            raise Refused(ResponseCode.HANDLE_ALREADY_EXISTS, exc.message) from None
        return handle.text

    async def _change(
        self, identity: Identity, handle: Handle, values: tuple[HandleValue, ...], *, add: bool
    ) -> None:
        indexes = frozenset(v.index for v in values)

        async def authorize(existing: Record | None, merged: tuple[HandleValue, ...]) -> None:
            assert existing is not None
            if not add:
                missing = indexes - {v.index for v in existing.values}
                if missing:  # MODIFY changes what is there (RC 200 otherwise)
                    raise ValuesMissing(
                        f"handle {existing.handle} has no value at index {min(missing)}"
                    )
            await self.authorizer.authorize_put(
                identity, handle, existing, merged, overwrite=not add, partial=True
            )

        try:
            await self.writes.put(
                handle,
                values,
                actor=identity.actor,
                now=self.clock(),
                source="native",
                overwrite=not add,
                only_indexes=indexes,
                authorize=authorize,
            )
        except Conflict as exc:
            raise Refused(ResponseCode.VALUE_ALREADY_EXISTS, exc.message) from None

    async def _delete(
        self, identity: Identity, handle: Handle, indexes: frozenset[int] | None
    ) -> None:
        async def authorize(existing: Record) -> None:
            await self.authorizer.authorize_delete(identity, handle, existing, indexes)

        self.authorizer.refuse_node_records(handle)
        await self.writes.delete(
            handle,
            actor=identity.actor,
            now=self.clock(),
            source="native",
            indexes=indexes,
            authorize=authorize,
        )

    async def _list(self, identity: Identity, prefix: str) -> list[Part]:
        await self.authorizer.authorize_list(identity, prefix)
        handles: list[str] = []
        page = 0
        while len(handles) < MAX_LISTED:
            total, chunk = await self.registry.list_handles(prefix, page, _LIST_PAGE)
            handles += chunk
            if len(chunk) < _LIST_PAGE or len(handles) >= total:
                break
            page += 1
        if len(handles) > MAX_LISTED:
            del handles[MAX_LISTED:]
        return _parts(handles)

    async def _home(self, op: int, identity: Identity, named: str) -> list[Part]:
        if not await self.authorizer.is_server_admin(identity):
            raise Refused(
                ResponseCode.INVALID_ADMIN,
                f"{identity.actor} is not a server administrator of this node",
            )
        if op == OpCode.LIST_HOMED_NAS:
            return _parts([f"{NA_PREFIX}/{p}" for p in self.served.homed()])
        prefix = _prefix_of(named)
        try:
            if op == OpCode.HOME_NA:
                await self.registry.home_prefix(prefix, identity.actor, self.clock())
            else:
                await self.registry.unhome_prefix(prefix)
        except RegistryError as exc:
            raise Refused(ResponseCode.INVALID_HANDLE, exc.message) from None
        return [Part(EmptyReply())]


def _parts(handles: list[str]) -> list[Part]:
    chunks = chunk_handles(handles)
    return [Part(HandleListReply(c), more=i < len(chunks) - 1) for i, c in enumerate(chunks)]


def _parse(text: str) -> Handle:
    try:
        return parse_handle(text)
    except HandleSyntaxError as exc:
        raise Refused(ResponseCode.INVALID_HANDLE, exc.message) from None


def _prefix_of(named: str) -> str:
    """``0.NA/88.118.2`` or ``88.118.2`` (HOME_NA takes both) -> ``88.118.2``."""
    bare = named.split("/", 1)[1] if named.upper().startswith(NA_PREFIX.upper() + "/") else named
    try:
        return parse_prefix(bare)
    except HandleSyntaxError as exc:
        raise Refused(ResponseCode.INVALID_HANDLE, exc.message) from None


def _home_prefix(handle: Handle) -> str:
    """The prefix whose home answers for ``handle``: a derived prefix record 0.NA/X.Y
    lives with its parent X (docs/idis.md, "Registering a derived prefix")."""
    if handle.is_prefix_record and "." in handle.owning_prefix:
        return handle.owning_prefix.rsplit(".", 1)[0]
    return handle.owning_prefix


def _check_indexes(values: tuple[HandleValue, ...]) -> None:
    seen: set[int] = set()
    for v in values:
        if v.index <= 0:
            raise Refused(ResponseCode.INVALID_VALUE, f"value index {v.index} is not positive")
        if v.index in seen:
            raise Refused(ResponseCode.VALUE_ALREADY_EXISTS, f"value index {v.index} appears twice")
        seen.add(v.index)

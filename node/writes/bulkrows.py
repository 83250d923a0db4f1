"""One input record of a bulk import (docs/import.md) becomes a registry ``ImportRow`` —
checked against its template, signed as the write service signs, encoded as the
registry stores it — or a ``Rejected`` naming every problem. Pure computation on
picklable batches, so ``node.writes.bulkimport`` runs it in worker processes.

Input records: a CSV row (the header names ``handle`` and template fields; an empty cell
is an absent field), or an NDJSON object ``{"handle", "template"?, "fields"?,
"values"?}`` (fields by name, values in Handle.Net JSON, or both).

What single writes allow and a bulk import does not: HS_SECKEY secrets (set them one by
one: ``idnode handle set-secret``; also when a template names an HS_SECKEY field, since
a row's cell is stored as it is, neither sealed nor checked for a pre-hashed form),
template records (publish them one at a time), prefix records (0.NA/...) and
overwriting (an existing handle is compared, never changed: ``registry.bulk``).
HS_PUBKEY values are held to the write service's key bounds (``check_key_value``).

The rows of an import repeat most of their values (one mill, one fabric code, a few
colours): each distinct value is encoded, digested and checked once (``Piece``, the
memo dicts), which is most of what makes a million rows affordable.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import ctypes
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from node.auth.pubkey import check_key_value
from node.settings import Settings
from node.signing.bulk import BulkSigner, Piece
from node.signing.signer import RecordSigner, build_signer
from node.templates.catalog import TemplateCatalog
from protocol.errors import HandleSyntaxError, LocalProtocolError, ValueFormatError
from protocol.handle import Handle, normalise, parse_handle
from protocol.jsonvalues import MAX_VALUES_PER_HANDLE, values_from_json
from protocol.recordsig import FIRST_SIGNATURE_INDEX
from protocol.templates import (
    BODY_TYPE,
    CITE_INDEX,
    CITE_TYPE,
    Field,
    Problem,
    Template,
    TemplateViolation,
    cited,
)
from protocol.valuecodec import value_to_wire
from protocol.values import HandleValue
from registry.bulk import ImportRow, Rejected
from registry.recordrules import EMPTY_RECORD, MAX_FIELD_CHARS

SECKEY_TYPE = "HS_SECKEY"
NDJSON_KEYS = frozenset({"handle", "template", "fields", "values"})
_PR_SET_PDEATHSIG = 1
MEMO_LIMIT = 200_000  # distinct values kept per memo before it starts afresh
_UNCHECKED = object()


@dataclass(frozen=True)
class Batch:
    """Records of one format, with what preparing them needs (crosses processes)."""

    format: str  # "csv" | "ndjson"
    lines: Sequence[int]  # the line each record starts on
    records: Sequence[bytes]
    now_s: int  # value timestamps and the signature's iat
    header: tuple[str, ...] = ()  # CSV: the column names
    template: str | None = None  # CSV: the template; NDJSON: for "fields" without one
    # Templates by upper-cased handle; None: there is no such template. A record citing
    # one not listed comes back in ``Prepared.wanting``.
    templates: Mapping[str, Template | None] = field(default_factory=dict)


@dataclass
class Prepared:
    rows: list[ImportRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    wanting: dict[str, list[int]] = field(default_factory=dict)  # template -> positions


class Refused(Exception):
    def __init__(self, reason: str, problems: Sequence[Problem] = ()):
        super().__init__(reason)
        self.reason = reason
        self.problems = tuple(problems)


class Wanting(Exception):
    """The record cites a template the batch does not carry."""

    def __init__(self, template: str):
        super().__init__(template)
        self.template = template


def violation(template: str, problems: Sequence[Problem]) -> Refused:
    return Refused(str(TemplateViolation(template, problems)), problems)


@dataclass(frozen=True)
class _Column:
    position: int
    field: Field


@dataclass(frozen=True)
class _Layout:
    """Where a CSV header puts the handle and each field."""

    template: Template
    handle_at: int
    columns: list[_Column]  # in field index order
    lacking: bool  # a required field has no column: every row is refused


class RowPreparer:
    """Prepares batches in one process; keeps the value memos between batches."""

    def __init__(self, signer: RecordSigner | None):
        self.signer = BulkSigner(signer) if signer is not None else None
        self._pieces: dict[tuple[int, str, str, int], Piece] = {}
        self._checked: dict[tuple[str, int, str], str | None] = {}
        self._values: dict[HandleValue, Piece] = {}
        self._naming = ""

    def prepare(self, batch: Batch) -> Prepared:
        out = Prepared()
        columns = self._columns(batch) if batch.format == "csv" else None
        for position, (line, raw) in enumerate(zip(batch.lines, batch.records, strict=True)):
            self._naming = ""  # the handle the record names, once it is read
            try:
                if columns is not None:
                    row = self._csv(batch, columns, line, raw)
                else:
                    row = self._ndjson(batch, line, raw)
            except Refused as exc:
                handle = self._naming or _handle_hint(raw)
                out.rejected.append(Rejected(line, handle, exc.reason, exc.problems))
                continue
            except Wanting as exc:
                out.wanting.setdefault(exc.template, []).append(position)
                continue
            out.rows.append(row)
        for memo in (self._pieces, self._checked, self._values):
            if len(memo) > MEMO_LIMIT:
                memo.clear()
        return out

    # -- CSV ---------------------------------------------------------------------------

    def _columns(self, batch: Batch) -> _Layout:
        assert batch.template is not None
        template = batch.templates.get(batch.template.upper())
        assert template is not None, "the importer checks the template and the header"
        names = [name.strip().lower() for name in batch.header]
        handle_at = names.index("handle")
        columns = []
        for position, name in enumerate(batch.header):
            f = template.field(name.strip())
            if position != handle_at and f is not None:
                columns.append(_Column(position, f))
        held = {c.field.index for c in columns}
        lacking = any(f.required and f.index not in held for f in template.fields)
        return _Layout(template, handle_at, sorted(columns, key=lambda c: c.field.index), lacking)

    def _csv(
        self,
        batch: Batch,
        layout: _Layout,
        line: int,
        raw: bytes,
    ) -> ImportRow:
        template, columns = layout.template, layout.columns
        cells = _csv_cells(raw)
        if len(cells) != len(batch.header):
            raise Refused(f"has {len(cells)} cells, the header {len(batch.header)}")
        text = self._naming = cells[layout.handle_at].strip()
        handle = _handle(text)
        tkey = template.handle.upper()
        now_s = batch.now_s
        pieces = [self._piece(CITE_INDEX, CITE_TYPE, template.handle, now_s)]
        bad = layout.lacking
        for column in columns:
            cell = cells[column.position]
            if cell == "":
                bad = bad or column.field.required
                continue
            f = column.field
            check_key = (tkey, f.index, cell)
            why = self._checked.get(check_key, _UNCHECKED)
            if why is _UNCHECKED:
                why = self._checked[check_key] = f.problem(cell)
            bad = bad or why is not None
            pieces.append(self._piece(f.index, f.key, cell, now_s))
        if bad:  # every problem, worded as every write path words them
            raise violation(template.handle, template.problems([p.value for p in pieces]))
        return self._row(line, handle, pieces, template, now_s)

    def _piece(self, index: int, vtype: str, text: str, now_s: int) -> Piece:
        key = (index, vtype, text, now_s)
        piece = self._pieces.get(key)
        if piece is None:
            value = HandleValue(index, vtype, text.encode("utf-8"), timestamp=now_s)
            _refuse_keys(value)  # once per distinct value: a refused one is not kept
            piece = self._pieces[key] = Piece.of(value)
        return piece

    # -- NDJSON ------------------------------------------------------------------------

    def _ndjson(self, batch: Batch, line: int, raw: bytes) -> ImportRow:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Refused(f"not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise Refused("not a JSON object")
        text = obj.get("handle")
        self._naming = text if isinstance(text, str) else ""
        if not isinstance(text, str):
            raise Refused('no "handle" (a string)')
        unknown = sorted(set(obj) - NDJSON_KEYS)
        if unknown:
            raise Refused(f"unknown key {unknown[0]!r} (keys: {', '.join(sorted(NDJSON_KEYS))})")
        handle = _handle(text)
        values = self._ndjson_values(batch, obj)
        if not values:  # refused on every write path (registry.recordrules)
            raise Refused(EMPTY_RECORD)
        template: Template | None = None
        name = cited(values)
        if name is not None:
            template = _template(batch, name)
            if template is None:
                raise violation(
                    name, [Problem(CITE_TYPE, CITE_INDEX, name, "no such template (IDIS_TEMPLATE)")]
                )
            problems = template.problems(values)
            if problems:
                raise violation(template.handle, problems)
        for v in values:
            if v.type.upper() == BODY_TYPE:
                raise Refused(
                    "template records are not imported in bulk; publish them one at a time"
                )
        pieces = [self._any_piece(replace(v, timestamp=batch.now_s)) for v in values]
        return self._row(line, handle, pieces, template, batch.now_s)

    def _ndjson_values(self, batch: Batch, obj: dict[str, Any]) -> list[HandleValue]:
        try:
            values = values_from_json(obj["values"]) if "values" in obj else []
        except ValueFormatError as exc:
            raise Refused(exc.message) from None
        name = obj.get("template")
        if name is not None and not isinstance(name, str):
            raise Refused('"template" must be a template handle (a string)')
        if "fields" not in obj:
            if name and cited(values) is None:
                values.append(HandleValue(CITE_INDEX, CITE_TYPE, name.encode("utf-8")))
            return values
        fields = obj["fields"]
        name = name or batch.template
        if not isinstance(fields, dict):
            raise Refused('"fields" must be an object of field name -> value')
        if not name:
            raise Refused('"fields" without a template: add "template" (or --template)')
        template = _template(batch, name)
        if template is None:
            raise violation(
                name, [Problem(CITE_TYPE, CITE_INDEX, name, "no such template (IDIS_TEMPLATE)")]
            )
        try:
            named = template.record(fields)
        except TemplateViolation as exc:
            raise violation(template.handle, exc.problems) from None
        held = {v.index for v in values}
        for v in named:
            if v.index in held:
                raise Refused(f'index {v.index} is given in both "values" and "fields"')
        return values + named

    def _any_piece(self, value: HandleValue) -> Piece:
        piece = self._values.get(value)
        if piece is None:
            _refuse_keys(value)
            piece = self._values[value] = Piece.of(value)
        return piece

    # -- the stored row ------------------------------------------------------------------

    def _row(
        self,
        line: int,
        handle: Handle,
        pieces: list[Piece],
        template: Template | None,
        now_s: int,
    ) -> ImportRow:
        pieces = self._signed(handle, pieces, now_s)
        if len(pieces) > MAX_VALUES_PER_HANDLE:
            raise Refused(
                f"the record would hold {len(pieces)} values, over the limit of {MAX_VALUES_PER_HANDLE}"
            )
        indexed: list[tuple[str, str]] = []
        unique: list[tuple[str, str]] = []
        if template is not None:
            for p in pieces:
                f = template.at(p.value.index) if p.value.index >= 2000 else None
                if f is None or not f.searchable:
                    continue
                entry = (f.key, p.value.data.decode("utf-8", "replace")[:MAX_FIELD_CHARS])
                if f.indexed:
                    indexed.append(entry)
                if f.unique:
                    unique.append(entry)
        wire = len(pieces).to_bytes(4, "big") + b"".join(p.wire for p in pieces)
        return ImportRow(
            line,
            handle.text,
            handle.key,
            normalise(handle.owning_prefix),
            wire,
            normalise(template.handle) if template is not None else "",
            tuple(indexed),
            tuple(unique),
        )

    def _signed(self, handle: Handle, pieces: list[Piece], now_s: int) -> list[Piece]:
        """As ``WriteService._signed`` on a new record: no signer (or one that does not
        sign this handle) stores the values as given; otherwise a fresh HS_SIGNATURE
        over the public values (at the index of the one given, or the lowest free from
        400: ``protocol.recordsig.signature_index``), none when nothing is public."""
        ordered = sorted(pieces, key=_index)
        issuer = self.signer.issuer(handle.text, now_s) if self.signer is not None else None
        if issuer is None or self.signer is None:
            return ordered
        body = [p for p in ordered if not p.signature]
        covered = [p for p in body if p.digest is not None]
        if not covered:
            return body
        if len(body) < len(ordered):
            index = min(p.value.index for p in ordered if p.signature)
        else:
            used = {p.value.index for p in ordered}
            index = FIRST_SIGNATURE_INDEX
            while index in used:
                index += 1
        try:
            signature = self.signer.signature(handle.text, covered, index, now_s, issuer)
        except LocalProtocolError as exc:
            raise Refused(f"the record cannot be signed: {exc}") from None
        piece = Piece(signature, value_to_wire(signature), None, True)
        at = bisect.bisect(body, index, key=_index)
        return [*body[:at], piece, *body[at:]]


def _index(piece: Piece) -> int:
    return piece.value.index


def _refuse_keys(value: HandleValue) -> None:
    """What a single write would have sealed or checked is refused here: HS_SECKEY
    values (a CSV cell of an HS_SECKEY field too), HS_PUBKEY over the key bounds."""
    if value.type.upper() == SECKEY_TYPE:
        raise Refused(
            f"value {value.index}: HS_SECKEY secrets are not imported in bulk; "
            "set them one by one (idnode handle set-secret)"
        )
    try:
        check_key_value(value)
    except ValueFormatError as exc:
        raise Refused(exc.message) from None


def _csv_cells(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return next(csv.reader((text,), strict=True))
    except (csv.Error, StopIteration) as exc:
        raise Refused(f"not a CSV row: {exc}") from None


def _handle(text: str) -> Handle:
    try:
        handle = parse_handle(text)
    except HandleSyntaxError as exc:
        raise Refused(exc.message) from None
    if handle.is_prefix_record:
        raise Refused("prefix records (0.NA/...) are not imported in bulk")
    return handle


def _handle_hint(raw: bytes) -> str:
    """Something to name a refused record by when it has no handle: its first bytes."""
    return raw[:80].decode("utf-8", "replace").split(",", 1)[0]


def _template(batch: Batch, name: str) -> Template | None:
    key = name.upper()
    if key not in batch.templates:
        raise Wanting(name)
    return batch.templates[key]


# -- worker processes --------------------------------------------------------------------------

# The preparer of this worker process, made by ``start_worker`` (ProcessPoolExecutor's
# initializer): per process by nature, so it lives at module level.
_WORKER: dict[str, RowPreparer] = {}


def start_worker(settings: Settings, now_s: int, niceness: int, parent: int) -> None:
    """Open the node's signing key in this worker; yield the CPU to resolution (a lower
    priority, ``niceness``), since an import can wait and a lookup cannot; and end with
    the importer, however it ends (a worker killed parent leaves behind would idle on
    forever: its task queue's other end is held by the worker itself)."""
    _die_with(parent)
    if niceness:
        os.nice(niceness)
    signer = build_signer(settings, now_s) if settings.sign_records else None
    _WORKER["preparer"] = RowPreparer(signer)


def _die_with(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere, best effort
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # gone before the line above took effect
        os._exit(1)


def prepare_batch(batch: Batch) -> Prepared:
    return _WORKER["preparer"].prepare(batch)


async def templates_for(
    catalog: TemplateCatalog, names: Sequence[str]
) -> dict[str, Template | None]:
    """The templates ``names`` (None for each that does not exist), by upper-cased handle."""
    return {name.upper(): await catalog.get(name) for name in names}

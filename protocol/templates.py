"""Industry data templates (docs/industry-data.md): the model, its JSON form (the body
of a template record, type IDIS_TEMPLATE at index 1000, in the shape of the template
service ``/snms/api/v5/template``), and the validation of a record that cites one
(type TEMPLATE at index 1001). Pure: no I/O; uniqueness within a prefix needs the
registry and is the caller's.

A field is stored as one handle value: type = the field's key (``idType``), index = its
``idIndex`` (2000 or above), data = the value as UTF-8 text. Field types: string,
integer, decimal (with a unit), date (YYYY-MM-DD), datetime (RFC 3339 with an offset),
enum, url (http/https), handle (an identifier reference). Rules: required, length,
range, pattern, one of a list, a structure check of an industry code
(protocol.industry), unique within the prefix, indexed for search.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from protocol.errors import HandleSyntaxError, ValueFormatError
from protocol.handle import parse_handle
from protocol.industry import CHECKS
from protocol.values import HandleValue

BODY_INDEX = 1000
BODY_TYPE = "IDIS_TEMPLATE"
CITE_INDEX = 1001
CITE_TYPE = "TEMPLATE"
FIRST_FIELD_INDEX = 2000
TYPES = ("string", "integer", "decimal", "date", "datetime", "enum", "url", "handle")
_LEGACY_TYPES = {"number": "decimal"}  # the first demo templates said "number"
MAX_FIELDS = 200
MAX_PATTERN = 200
MAX_VALUE_CHARS = 4096
# A repeat count ({2}, {2,}, {,5}, {2,5}); a "{" not starting one is a literal.
_REPEAT = re.compile(r"\{([0-9]+(,[0-9]*)?|,[0-9]+)\}")
# RFC 3339 (section 5.6) date-time; the offset is optional here only so that its absence
# gets its own message.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")


class TemplateError(ValueFormatError):
    """A template body that is not a usable template."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one field of a record."""

    key: str
    index: int
    value: str
    rule: str

    def __str__(self) -> str:
        shown = self.value if len(self.value) <= 40 else self.value[:37] + "..."
        where = f"{self.key} (index {self.index})"
        return f"{where}: {self.rule}" if not self.value else f"{where} = {shown!r}: {self.rule}"


class TemplateViolation(ValueFormatError):
    """The record does not follow the template it cites; ``problems`` names each field."""

    def __init__(self, template: str, problems: Sequence[Problem]):
        self.template = template
        self.problems = tuple(problems)
        listed = "; ".join(str(p) for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"not a valid record of {template}: {listed}{more}")


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # idType: the handle value type the field is stored under
    index: int  # idIndex, 2000 or above
    name: str = ""  # Chinese name
    label: str = ""  # English label
    type: str = "string"
    required: bool = True
    min_length: int | None = None
    max_length: int | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    unit: str = ""
    pattern: str = ""
    choices: tuple[str, ...] = ()
    check: str = ""  # a protocol.industry structure check
    unique: bool = False  # unique within the prefix
    indexed: bool = False  # searchable (GET /api/search)

    @property
    def searchable(self) -> bool:
        """Kept in the field index: to be found by value, or to be checked unique."""
        return self.indexed or self.unique

    def describe(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"type": self.type}
        if self.min_length is not None:
            meta["minLength"] = self.min_length
        if self.max_length is not None:
            meta["maxLength"] = self.max_length
        if self.minimum is not None:
            meta["min"] = _number(self.minimum)
        if self.maximum is not None:
            meta["max"] = _number(self.maximum)
        meta.update({k: v for k, v in (("unit", self.unit), ("pattern", self.pattern)) if v})
        if self.choices:
            meta["enum"] = list(self.choices)
        if self.check:
            meta["check"] = self.check
        if self.unique:
            meta["unique"] = True
        if self.indexed:
            meta["indexed"] = True
        return {
            "name": self.name,
            "label": self.label,
            "idType": self.key,
            "idIndex": self.index,
            "required": self.required,
            "metadata": meta,
        }

    @classmethod
    def from_json(cls, item: Any, where: str) -> Field:
        if not isinstance(item, dict):
            raise TemplateError(f"{where} is not an object")
        key = item.get("idType")
        if not isinstance(key, str) or not _KEY.match(key):
            raise TemplateError(f"{where}: idType must be a name like dyeLot, not {key!r}")
        index = item.get("idIndex")
        if isinstance(index, bool) or not isinstance(index, int) or not 2000 <= index < 2**31:
            raise TemplateError(f"{where} ({key}): idIndex must be an integer of 2000 or more")
        meta = item.get("metadata") or {}
        if not isinstance(meta, dict):
            raise TemplateError(f"{where} ({key}): metadata is not an object")
        kind = _LEGACY_TYPES.get(meta.get("type", "string"), meta.get("type", "string"))
        if kind not in TYPES:
            raise TemplateError(f"{where} ({key}): type {kind!r} is not one of {', '.join(TYPES)}")
        pattern = meta.get("pattern") or ""
        if pattern:
            _check_pattern(pattern, f"{where} ({key})")
        check = meta.get("check") or ""
        if check and check not in CHECKS:
            raise TemplateError(f"{where} ({key}): check {check!r} is not one of {sorted(CHECKS)}")
        choices = meta.get("enum") or ()
        if not isinstance(choices, list | tuple):  # a string would become its characters
            raise TemplateError(f"{where} ({key}): enum must be a list of choices")
        if kind == "enum" and not choices:
            raise TemplateError(f"{where} ({key}): an enum field needs its enum list")
        flags = {}
        for name, holder, default in (
            ("required", item, True),
            ("unique", meta, False),
            ("indexed", meta, False),
        ):
            flag = holder.get(name, default)
            if not isinstance(flag, bool):  # "false" would count as true
                raise TemplateError(f"{where} ({key}): {name} must be true or false")
            flags[name] = flag
        low = _opt_int(meta.get("minLength"), f"{where} ({key}) minLength")
        high = _opt_int(meta.get("maxLength"), f"{where} ({key}) maxLength")
        minimum = _opt_decimal(meta.get("min"), f"{where} ({key}) min")
        maximum = _opt_decimal(meta.get("max"), f"{where} ({key}) max")
        if (low is not None and high is not None and low > high) or (
            minimum is not None and maximum is not None and minimum > maximum
        ):  # a field no value could fill
            raise TemplateError(f"{where} ({key}): a minimum above its maximum")
        return cls(
            key=key,
            index=index,
            name=str(item.get("name") or ""),
            label=str(item.get("label") or ""),
            type=kind,
            required=flags["required"],
            min_length=low,
            max_length=high,
            minimum=minimum,
            maximum=maximum,
            unit=str(meta.get("unit") or ""),
            pattern=pattern,
            choices=tuple(str(c) for c in choices),
            check=check,
            unique=flags["unique"],
            indexed=flags["indexed"],
        )

    # -- checking one value -------------------------------------------------------------

    def problem(self, text: str) -> str | None:
        """Why ``text`` is not a value of this field, or None."""
        if len(text) > MAX_VALUE_CHARS:
            return f"longer than {MAX_VALUE_CHARS} characters"
        # The type first: "not a date" says more about "yesterday" than its length does.
        why = _TYPE_CHECKS[self.type](self, text)
        if why:
            return why
        if self.min_length is not None and len(text) < self.min_length:
            return f"shorter than {self.min_length} characters"
        if self.max_length is not None and len(text) > self.max_length:
            return f"longer than {self.max_length} characters"
        if self.pattern and re.fullmatch(self.pattern, text) is None:
            return f"does not match the pattern {self.pattern}"
        if self.check:
            why = CHECKS[self.check](text)
            if why:
                return f"not a valid code: {why}"
        return None


def _string(f: Field, text: str) -> str | None:
    return "is empty" if not text.strip() else None


def _in_range(f: Field, number: Decimal) -> str | None:
    unit = f" {f.unit}" if f.unit else ""
    if f.minimum is not None and number < f.minimum:
        return f"below the minimum {_number(f.minimum)}{unit}"
    if f.maximum is not None and number > f.maximum:
        return f"above the maximum {_number(f.maximum)}{unit}"
    return None


def _integer(f: Field, text: str) -> str | None:
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):  # ASCII: \d takes any script's digits
        return "not an integer"
    return _in_range(f, Decimal(text))


def _decimal(f: Field, text: str) -> str | None:
    if not re.fullmatch(r"[+-]?([0-9]{1,18}(\.[0-9]{0,9})?|\.[0-9]{1,9})", text):
        return f"not a decimal number{f' (in {f.unit}, without the unit)' if f.unit else ''}"
    try:
        return _in_range(f, Decimal(text))
    except InvalidOperation:
        return "not a decimal number"


def _date(f: Field, text: str) -> str | None:
    try:
        # fromisoformat also takes ISO 8601 forms such as 20260318 and 2026-W11-3.
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        date.fromisoformat(text)
    except ValueError:
        return "not a date (YYYY-MM-DD)"
    return None


def _datetime(f: Field, text: str) -> str | None:
    try:
        # fromisoformat alone also takes ISO 8601 forms RFC 3339 does not (20260315T0830).
        if not _DATE_TIME.fullmatch(text):
            raise ValueError
        moment = datetime.fromisoformat(f"{text[:10]}T{text[11:]}".upper().replace("Z", "+00:00"))
    except ValueError:
        return "not a date and time (RFC 3339, e.g. 2026-03-15T08:30:00+08:00)"
    if moment.tzinfo is None:
        return "has no UTC offset (RFC 3339 needs one, e.g. +08:00)"
    return None


def _enum(f: Field, text: str) -> str | None:
    return None if text in f.choices else f"not one of {', '.join(f.choices)}"


def _url(f: Field, text: str) -> str | None:
    try:
        parts = urlsplit(text)
    except ValueError:
        return "not a URL"
    # urlsplit silently drops tabs and line breaks: refuse them rather than store them.
    blank = " " in text or not text.isprintable()
    if parts.scheme not in ("http", "https") or not parts.netloc or blank:
        return "not an http(s) URL"
    return None


def _handle(f: Field, text: str) -> str | None:
    try:
        parse_handle(text)
    except HandleSyntaxError as exc:
        return f"not an identifier: {exc.message}"
    return None


_TYPE_CHECKS = {
    "string": _string,
    "integer": _integer,
    "decimal": _decimal,
    "date": _date,
    "datetime": _datetime,
    "enum": _enum,
    "url": _url,
    "handle": _handle,
}


@dataclass(frozen=True, slots=True)
class Template:
    handle: str
    version: str
    name: str
    fields: tuple[Field, ...]
    industry: tuple[tuple[str, str], ...] = ()  # (GB/T 4754 code, its name)
    _by_key: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)
    _by_index: dict[int, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_key.update({f.key.upper(): f for f in self.fields})
        self._by_index.update({f.index: f for f in self.fields})

    @property
    def prefix(self) -> str:
        return self.handle.partition("/")[0]

    def field(self, key: str) -> Field | None:
        return self._by_key.get(key.upper())

    def at(self, index: int) -> Field | None:
        return self._by_index.get(index)

    # -- JSON --------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "prefix": self.prefix,
            "version": self.version,
            "name": self.name,
            "industryCategory": [{"code": c, "name": n} for c, n in self.industry],
            "items": [f.describe() for f in self.fields],
        }

    def to_json(self) -> str:
        return json.dumps(self.describe(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(
        cls, body: str | bytes | Mapping[str, Any], handle: str | None = None
    ) -> Template:
        try:
            doc = json.loads(body) if isinstance(body, str | bytes) else body
        except (ValueError, UnicodeDecodeError):
            raise TemplateError("the template body is not JSON") from None
        if not isinstance(doc, dict):
            raise TemplateError("the template body is not a JSON object")
        name = doc.get("handle") or handle
        if not isinstance(name, str) or not name:
            raise TemplateError("the template names no handle")
        if handle is not None and name.upper() != handle.upper():
            raise TemplateError(f"the template body names {name}, not its own handle {handle}")
        items = doc.get("items")
        if not isinstance(items, list) or not items or len(items) > MAX_FIELDS:
            raise TemplateError(f"the template needs between 1 and {MAX_FIELDS} items")
        fields = tuple(Field.from_json(item, f"item {n}") for n, item in enumerate(items))
        for attr in ("key", "index"):
            seen: set[object] = set()
            for f in fields:
                value = f.key.upper() if attr == "key" else f.index
                if value in seen:
                    raise TemplateError(f"two items have the {attr} {getattr(f, attr)}")
                seen.add(value)
        industry = tuple(
            (str(c.get("code", "")), str(c.get("name", "")))
            for c in doc.get("industryCategory") or ()
            if isinstance(c, dict)
        )
        return cls(
            name, str(doc.get("version") or ""), str(doc.get("name") or ""), fields, industry
        )

    # -- records -----------------------------------------------------------------------

    def problems(self, values: Iterable[HandleValue]) -> list[Problem]:
        """Everything wrong with a whole record that cites this template."""
        out: list[Problem] = []
        seen: set[int] = set()
        for v in values:
            if v.index < FIRST_FIELD_INDEX:
                continue
            f = self.at(v.index)
            if f is None:
                out.append(
                    Problem(v.type, v.index, "", f"index {v.index} is no field of {self.handle}")
                )
                continue
            seen.add(v.index)
            if v.type.upper() != f.key.upper():
                out.append(Problem(f.key, v.index, "", f"stored as type {v.type}, not {f.key}"))
                continue
            try:
                text = v.data.decode("utf-8")
            except UnicodeDecodeError:
                out.append(Problem(f.key, v.index, "", "not UTF-8 text"))
                continue
            why = f.problem(text)
            if why:
                out.append(Problem(f.key, v.index, text, why))
        out += [
            Problem(f.key, f.index, "", "required, missing")
            for f in self.fields
            if f.required and f.index not in seen
        ]
        return out

    def record(self, fields: Mapping[str, Any]) -> list[HandleValue]:
        """The values of a record written by field names: its TEMPLATE citation (index
        1001) and one value per named field. Written with ``only_indexes`` set to these
        indexes, a partial update of one field keeps the others."""
        cite = HandleValue(CITE_INDEX, CITE_TYPE, self.handle.encode("utf-8"))
        return [cite, *self.values_for(fields)]

    def values_for(self, fields: Mapping[str, Any]) -> list[HandleValue]:
        """Values from field names (what an MES sends instead of indexes)."""
        out = []
        for key, raw in fields.items():
            f = self.field(key)
            if f is None:
                raise TemplateViolation(self.handle, [Problem(key, 0, "", "no such field")])
            if raw is None or isinstance(raw, dict | list):
                raise TemplateViolation(
                    self.handle, [Problem(f.key, f.index, "", "must be a string or a number")]
                )
            text = (
                _number(raw)
                if isinstance(raw, int | float | Decimal) and not isinstance(raw, bool)
                else str(raw)
            )
            out.append(HandleValue(f.index, f.key, text.encode("utf-8")))
        return out


def cited(values: Iterable[HandleValue]) -> str | None:
    """The template handle a record cites (its TEMPLATE value), if any."""
    for v in values:
        if v.type.upper() == CITE_TYPE:
            return v.data.decode("utf-8", "replace").strip() or None
    return None


def _number(n: Any) -> str:
    if isinstance(n, float):
        n = Decimal(repr(n))
    if isinstance(n, Decimal):
        text = format(n, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(n)


def _opt_int(v: Any, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TemplateError(f"{where} must be a non-negative integer")
    return v


def _opt_decimal(v: Any, where: str) -> Decimal | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise TemplateError(f"{where} must be a number")
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise TemplateError(f"{where} must be a number") from None
    if not d.is_finite():
        raise TemplateError(f"{where} must be a finite number")
    return d


def _check_pattern(pattern: str, where: str) -> None:
    if len(pattern) > MAX_PATTERN:
        raise TemplateError(f"{where}: a pattern may be {MAX_PATTERN} characters at most")
    if _nests_quantifiers(pattern):
        raise TemplateError(f"{where}: the pattern nests quantifiers (slow to match): {pattern}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise TemplateError(f"{where}: the pattern does not compile: {exc}") from None


def _nests_quantifiers(pattern: str) -> bool:
    """A group repeated by + * or {n,m} that holds such a quantifier at any depth
    (``(a+)+``, ``((a)+)*``): the shape of catastrophic backtracking. Templates are
    written by enterprise admins; a pattern must not let one of them stall every write
    of a prefix. Escapes and character classes are skipped: ``\\(a+\\)+`` and
    ``(a[+])+`` repeat no quantifier."""
    holds: list[bool] = []  # per open group: a quantifier inside it
    after_quantified_group = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c.isspace():  # verbose mode: "(a+) +" still repeats the group
            i += 1
            continue
        repeat = _REPEAT.match(pattern, i) if c == "{" else None
        if c in "+*" or repeat:
            if after_quantified_group:
                return True
            if holds:
                holds[-1] = True
            after_quantified_group = False
            i = repeat.end() if repeat else i + 1
            continue
        after_quantified_group = False
        if c == "\\":
            i += 2
            continue
        if c == "[":  # to the class's closing "]" (a "]" first in the class is literal)
            i += 2 if pattern[i + 1 : i + 2] == "^" else 1
            i += 1 if pattern[i : i + 1] == "]" else 0
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            holds.append(False)
        elif c == ")" and holds:
            inner = holds.pop()
            if holds:
                holds[-1] = holds[-1] or inner
            after_quantified_group = inner
        i += 1
    return False

"""Identifier syntax and the one normalisation rule."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import HandleSyntaxError
from protocol.handle import (
    MAX_HANDLE_BYTES,
    is_under,
    normalise,
    parse_handle,
    parse_prefix,
    prefix_ancestors,
)

segment = st.text(alphabet="abcXYZ0123456789-_", min_size=1, max_size=8)
prefixes = st.lists(segment, min_size=1, max_size=5).map(".".join)
# Any UTF-8 text without control characters (category Cc) or surrogates.
suffixes = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60
)


@given(prefixes, suffixes)
def test_valid_handles_parse_and_keep_their_spelling(prefix: str, suffix: str) -> None:
    text = f"{prefix}/{suffix}"
    h = parse_handle(text)
    assert h.text == text
    assert h.prefix == prefix
    assert h.suffix == suffix  # a '/' inside the suffix stays in the suffix
    assert parse_handle(text.encode()).text == text


@given(st.text(max_size=80))
def test_parse_returns_a_handle_or_raises_handle_syntax_error(text: str) -> None:
    try:
        parse_handle(text)
    except HandleSyntaxError as exc:
        assert exc.message  # always a reason
        assert exc.response_code == 102


@given(st.binary(max_size=80))
def test_parse_bytes_never_raises_anything_else(raw: bytes) -> None:
    with contextlib.suppress(HandleSyntaxError):
        parse_handle(raw)


@given(st.text(max_size=40))
def test_normalise_folds_only_ascii_letters(text: str) -> None:
    folded = normalise(text)
    assert len(folded) == len(text)
    for a, b in zip(text, folded, strict=False):
        assert b == (a.upper() if "a" <= a <= "z" else a)
    assert normalise(folded) == folded


def test_ascii_only_case_folding() -> None:
    stored = parse_handle("88.118.2/ÉTÉ-X").key
    assert parse_handle("88.118.2/ÉTÉ-x").key == stored
    assert parse_handle("88.118.2/été-x").key != stored
    assert parse_handle("88.118.2/abc").key == parse_handle("88.118.2/ABC").key


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("88.118.2", "no '/'"),
        ("/ROLL-1", "empty prefix"),
        ("88.118.2/", "empty suffix"),
        ("88..2/X", "empty segment"),
        ("88.118.2 /X", "may hold only"),
        ("88.118.2/A\x00B", "U+0000"),
        ("88.118.2/A\nB", "U+000A"),
        ("88.118.2/A\x85B", "U+0085"),
        ("0.NA/88..1", "prefix record"),
        ("88.118.2/" + "x" * MAX_HANDLE_BYTES, "longer than"),
    ],
)
def test_bad_handles_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(HandleSyntaxError, match=re.escape(reason)):
        parse_handle(text)


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(HandleSyntaxError, match="not valid UTF-8"):
        parse_handle(b"88.118.2/\xc3\x28")


def test_prefix_records() -> None:
    h = parse_handle("0.NA/88.118.2")
    assert h.is_prefix_record and h.owning_prefix == "88.118.2"
    assert parse_handle("0.na/88.118.2").is_prefix_record
    g = parse_handle("88.118.2/0.NA/x")
    assert not g.is_prefix_record and g.owning_prefix == "88.118.2"


def test_prefix_tree() -> None:
    assert prefix_ancestors("88.118.2") == ["88.118.2", "88.118", "88"]
    assert is_under("88.118.2", "88.118") and is_under("88.118", "88.118")
    assert not is_under("88.1180", "88.118") and not is_under("88.118", "88.118.2")
    with pytest.raises(HandleSyntaxError):
        parse_prefix("88.118.")

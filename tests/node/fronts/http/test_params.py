"""Query parameters (node.fronts.http.params): every integer parameter of every endpoint
is ASCII digits or a 400 naming it, never a 500 and never a traceback in the log; the
``index=``/``type=`` filters are bounded. The parser on its own first, then each endpoint
that reads an integer over real HTTP against a node with the demo data."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from multidict import MultiDict

from node.fronts.http import params
from node.fronts.http.errors import ApiError
from protocol.values import MAX_REQUESTED_INDEXES, MAX_REQUESTED_TYPES
from tests.node.http_support import A_HANDLE, A, Api, admin_of

# Each of these once reached int() after passing str.isdigit(), or is out of range.
BAD_INTEGERS = [
    "²",  # superscript two: isdigit() is True, int() refuses it
    "٣",  # Arabic-Indic three: int() takes it; it is no ASCII digit
    "--1",
    "-",
    "+1",
    "1.0",
    "1e3",
    "0x10",
    "1_000",
    "",
    " ",
    "9" * 30,
    "١٢",
    "\u00a01",
]


def query(**items: str | list[str]) -> MultiDict[str]:
    out: MultiDict[str] = MultiDict()
    for name, value in items.items():
        for v in value if isinstance(value, list) else [value]:
            out.add(name, v)
    return out


@pytest.mark.parametrize("raw", BAD_INTEGERS)
def test_integer_refuses_anything_but_ascii_digits(raw: str) -> None:
    with pytest.raises(ApiError) as err:
        params.integer(query(page=raw), "page", low=0, high=10**9)
    assert err.value.status == 400 and err.value.response_code == 4
    assert "parameter page" in err.value.message and "0..1000000000" in err.value.message


def test_integer_bounds_and_absence() -> None:
    assert params.integer(query(), "page", low=0, high=9) is None
    assert params.integer(query(page="7"), "page", low=0, high=9) == 7
    assert params.integer(query(page=" 7 "), "page", low=0, high=9) == 7
    assert params.integer(query(limit="-3"), "limit", low=-5, high=9) == -3
    assert params.integer(query(page=["1", "2"]), "page", low=0, high=9) == 2  # the last
    for raw in ("10", "-1"):
        with pytest.raises(ApiError, match=r"parameter page is '-?1[0]?': give an integer"):
            params.integer(query(page=raw), "page", low=0, high=9)
    with pytest.raises(ApiError, match="parameter page is empty"):
        params.integer(query(page=""), "page", low=0, high=9)


def test_page_names_the_parameter() -> None:
    assert params.page(query(page="2", pageSize="50")) == (2, 50)
    with pytest.raises(ApiError, match="parameter pageSize is '²'"):
        params.page(query(page="1", pageSize="²"))
    with pytest.raises(ApiError, match="parameter page is '--1'"):
        params.page(query(page="--1"))


def test_indexes_are_ascii_and_bounded() -> None:
    assert params.indexes(query(index=["1,2", "2", " 3"])) == (1, 2, 3)
    for raw in ("²", "-1", "4294967296", "1,,2", "x"):
        with pytest.raises(ApiError, match="parameter index="):
            params.indexes(query(index=raw))
    many = ",".join(str(i) for i in range(MAX_REQUESTED_INDEXES))
    assert len(params.indexes(query(index=many))) == MAX_REQUESTED_INDEXES
    with pytest.raises(ApiError, match=f"more than {MAX_REQUESTED_INDEXES} indexes"):
        params.indexes(query(index=many + ",5000"))
    assert params.indexes_or_various(query(index="various")) == "various"


def test_types_are_bounded() -> None:
    assert params.types(query(type=["URL", "", "EMAIL"])) == ("URL", "EMAIL")
    at_most = [f"T{i}" for i in range(MAX_REQUESTED_TYPES)]
    assert len(params.types(query(type=at_most))) == MAX_REQUESTED_TYPES
    with pytest.raises(ApiError) as err:
        params.types(query(type=[*at_most, "ONE.MORE"]))
    assert err.value.status == 400 and err.value.response_code == 4
    assert f"at most {MAX_REQUESTED_TYPES}" in err.value.message
    with pytest.raises(ApiError, match="longer than 256 bytes"):
        params.types(query(type="T" * 257))


# -- every endpoint with an integer parameter, over HTTP --------------------------------

SEARCH = "/api/search?template=88.118/TPL.TEXTILE.ROLL.V1&field=dyeLot&value=DL-1"
ENDPOINTS = [
    ("/api/handles?prefix=88.118.2", "page"),
    ("/api/handles?prefix=88.118.2", "pageSize"),
    (f"/api/history/{A_HANDLE}", "limit"),
    (f"/api/history/{A_HANDLE}", "before"),
    (SEARCH, "limit"),
    ("/api/templates", "limit"),
    (f"/api/handles/{A_HANDLE}", "index"),
]


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


async def test_bad_integers_are_a_400_naming_the_parameter_everywhere(
    api: Api, quiet_log: pytest.LogCaptureFixture
) -> None:
    for path, name in ENDPOINTS:
        for raw in ("²", "--1", "-1", "", "9" * 40, "٣"):
            sep = "&" if "?" in path else "?"
            r = await api.get(f"{path}{sep}{name}={quote(raw)}", headers=admin_of(A))
            assert r.status == 400, (path, name, raw, r.status, r.text)
            assert r.json["responseCode"] == 4, (path, name, raw)
            assert f"parameter {name}" in r.json["message"], (path, r.json["message"])
    no_traceback(quiet_log)


async def test_good_integers_still_work(api: Api) -> None:
    r = await api.get("/api/handles?prefix=88.118.2&page=0&pageSize=2", headers=admin_of(A))
    assert r.status == 200 and len(r.json["handles"]) == 2
    r = await api.get(f"/api/history/{A_HANDLE}?limit=1", headers=admin_of(A))
    assert r.status == 200 and len(r.json["versions"]) == 1
    r = await api.get("/api/templates?limit=1")
    assert r.status == 200 and len(r.json["templates"]) == 1


async def test_filter_counts_are_bounded_over_http(
    api: Api, quiet_log: pytest.LogCaptureFixture
) -> None:
    many_types = "&".join(["type=X"] * 1000)  # 7 KB: aiohttp takes request lines to 8 KB
    for path in (f"/api/handles/{A_HANDLE}?", f"/api/handles/{A_HANDLE}?at=2030-01-01T00:00:00Z&"):
        r = await api.get(f"{path}{many_types}")
        assert (r.status, r.json["responseCode"]) == (400, 4), path
        assert "parameter type" in r.json["message"] and "at most 256" in r.json["message"]
    # The browser page's JSON face takes the same filters.
    r = await api.get(f"/{A_HANDLE}?{many_types}", headers={"Accept": "application/json"})
    assert (r.status, r.json["responseCode"]) == (400, 4)
    many_indexes = ",".join(str(i) for i in range(1, 1100))
    r = await api.get(f"/api/handles/{A_HANDLE}?index={many_indexes}")
    assert (r.status, r.json["responseCode"]) == (400, 4)
    assert "more than 1000 indexes" in r.json["message"]
    # Up to the bound, filters apply as before.
    some = "&".join(f"type=T{i}" for i in range(255))
    r = await api.get(f"/api/handles/{A_HANDLE}?{some}&type=URL")
    assert r.status == 200 and {v["type"] for v in r.json["values"]} == {"URL"}
    no_traceback(quiet_log)

"""Truto's bracket query convention: the documented examples and a round-trip property."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pendulum
import pytest
from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.emulator.query import decode_query
from truto_airflow.query import QueryEncodingError, encode_query, encode_scalar


def test_documented_object_example() -> None:
    # "Querying in Truto API": {"foo":{"bar":"baz","bar1":{"bar2":"baz2"}}}
    pairs = encode_query({"foo": {"bar": "baz", "bar1": {"bar2": "baz2"}}})
    assert pairs == [("foo[bar]", "baz"), ("foo[bar1][bar2]", "baz2")]


def test_documented_array_example() -> None:
    # {"foo":["bar",{"bar1":"baz1"}]} -> foo[]=bar&foo[][bar1]=baz1
    assert encode_query({"foo": ["bar", {"bar1": "baz1"}]}) == [
        ("foo[]", "bar"),
        ("foo[][bar1]", "baz1"),
    ]


def test_documented_update_parameters() -> None:
    pairs = encode_query(
        {
            "integrated_account_id": "62f44730-dd91-461e-bd6a-aedd9e0ad79d",
            "truto_exclude_fields": ["id", "name"],
            "remote_query": {"foo": "bar"},
            "truto_ignore_remote_data": True,
        }
    )
    assert pairs == [
        ("integrated_account_id", "62f44730-dd91-461e-bd6a-aedd9e0ad79d"),
        ("truto_exclude_fields[]", "id"),
        ("truto_exclude_fields[]", "name"),
        ("remote_query[foo]", "bar"),
        ("truto_ignore_remote_data", "true"),
    ]


def test_none_is_omitted_never_the_string_none() -> None:
    pairs = encode_query({"a": None, "b": {"c": None, "d": 1}, "e": [None, "x"]})
    assert pairs == [("b[d]", "1"), ("e[]", "x")]
    assert all("None" not in v for _, v in pairs)


def test_empty_containers_are_omitted() -> None:
    assert encode_query({"a": [], "b": {}, "c": "keep"}) == [("c", "keep")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (1.5, "1.5"),
        (Decimal("12.30"), "12.30"),
        ("a b&c", "a b&c"),
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2026-01-02T03:04:05+00:00"),
        (dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05+00:00"),
        (pendulum.datetime(2026, 1, 2, 3, tz="Asia/Kolkata"), "2026-01-02T03:00:00+05:30"),
        (dt.date(2026, 1, 2), "2026-01-02"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_scalars(value: Any, expected: str) -> None:
    assert encode_scalar(value) == expected


def test_enum_values_are_encoded_by_value() -> None:
    class Colour(enum.Enum):
        RED = "red"

    assert encode_query({"c": Colour.RED}) == [("c", "red")]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), object(), b"bytes"])
def test_unencodable_values_name_the_parameter(bad: Any) -> None:
    with pytest.raises(QueryEncodingError, match=r"remote_query\[x\]"):
        encode_query({"remote_query": {"x": bad}})


def test_empty_or_non_string_keys_are_refused() -> None:
    with pytest.raises(QueryEncodingError):
        encode_query({"": 1})
    with pytest.raises(QueryEncodingError):
        encode_query({"a": {1: "x"}})


def test_decode_accepts_indexed_arrays_like_the_ts_sdk() -> None:
    pairs = [("f[1]", "b"), ("f[0]", "a"), ("q[n][a][0]", "1"), ("q[n][a][1]", "2")]
    assert decode_query(pairs) == {"f": ["a", "b"], "q": {"n": {"a": ["1", "2"]}}}


def test_decode_objects_in_arrays() -> None:
    pairs = [("r[][k]", "1"), ("r[][j]", "2"), ("r[][k]", "3")]
    assert decode_query(pairs) == {"r": [{"k": "1", "j": "2"}, {"k": "3"}]}


def test_decode_rejects_mixed_forms() -> None:
    with pytest.raises(QueryEncodingError):
        decode_query([("a[]", "x"), ("a[b]", "y")])
    with pytest.raises(QueryEncodingError):
        decode_query([("a", "x"), ("a[b]", "y")])


def test_decode_index_keys_become_object_keys_when_mixed() -> None:
    assert decode_query([("a[0]", "x"), ("a[k]", "y")]) == {"a": {"0": "x", "k": "y"}}
    assert decode_query([("a[²]", "x")]) == {"a": {"²": "x"}}


def test_percent_encoded_wire_form_round_trips() -> None:
    pairs = encode_query({"remote_query": {"filter": {"name": "A&B / ü"}}, "x": ["1", "2"]})
    wire = urlencode(pairs)
    assert "%5B" in wire and "&x%5B%5D=1&x%5B%5D=2" in wire
    assert decode_query(parse_qsl(wire)) == {
        "remote_query": {"filter": {"name": "A&B / ü"}},
        "x": ["1", "2"],
    }


# -- round-trip property ------------------------------------------------------------------------
# Values decode as strings, so the property compares against the "wire normal form": every leaf
# rendered by encode_scalar, None and empty containers dropped. Lists of objects are generated as
# records sharing one key set, the shape that is unambiguous in the bracket form. Object keys
# made only of ASCII digits read back as array indices in any qs-style parser (Truto's included),
# so they are left out of the property (and documented).

keys = st.text(
    alphabet=st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
).filter(lambda k: not (k.isascii() and k.isdigit()))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
)


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    fields = draw(st.lists(keys, min_size=1, max_size=3, unique=True))
    count = draw(st.integers(min_value=1, max_value=3))
    return [{f: draw(st.text(max_size=6)) for f in fields} for _ in range(count)]


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.dictionaries(keys, inner, max_size=4),
        st.lists(scalars, max_size=4),
        records(),
    ),
    max_leaves=8,
)


def normal_form(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: normal_form(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, list):
        items = [normal_form(v) for v in value]
        items = [v for v in items if v is not None]
        return items or None
    if value is None:
        return None
    return encode_scalar(value)


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_empty(v) for k, v in value.items()}
        cleaned = {k: v for k, v in cleaned.items() if v not in (None, {}, [])}
        return cleaned or None
    if isinstance(value, list):
        return [v for v in (_drop_empty(v) for v in value) if v is not None] or None
    return value


@given(st.dictionaries(keys, values, max_size=5))
def test_encode_then_decode_round_trips(params: dict[str, Any]) -> None:
    expected = _drop_empty(normal_form(params)) or {}
    assert decode_query(encode_query(params)) == expected


@given(st.dictionaries(keys, values, max_size=5))
def test_encoding_never_emits_none_and_keys_are_bracketed_paths(params: dict[str, Any]) -> None:
    for key, value in encode_query(params):
        assert isinstance(value, str)
        assert key.split("[", 1)[0] in params
        assert key.count("[") == key.count("]")

"""The bulk preparer works out what is immutable for the run once (each account value as
resolved, each account's encoded query), and every row still comes out exactly as
``hook.prepare_update`` builds it alone: same request, same Idempotency-Key, same bytes, and an
invalid row the same reason."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import unicodedata
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truto_airflow.bulk.prepare import RowItem, RowPreparer
from truto_airflow.bulk.rows import RawRow
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.hooks import _wire
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.idempotency import RunIdentity, body_fingerprint
from truto_airflow.json_values import JsonValueError, json_value
from truto_airflow.models.opportunity import parse_update_body
from truto_airflow.models.options import TrutoQueryOptions

from .conftest import ACCOUNTS

IDENTITY = RunIdentity("dag", "task", "run-1", 3)


def _reference(hook: TrutoHook, options: TrutoQueryOptions, index: int, row: Any) -> Any:
    """What the row became before the preparer kept anything (its body validated first, then
    ``hook.prepare_update`` with the options rebuilt for the row's account): its request, or
    the ``TrutoInputError`` message."""
    raw = row.get("integrated_account_id")
    text = raw if raw is None or isinstance(raw, str) else str(raw)
    try:
        account = hook.resolve_account(text or options.integrated_account_id)
        request = hook.prepare_update(
            row["id"],
            parse_update_body(row["body"]),
            idempotency_key=IDENTITY.for_row(index),
            **dataclasses.asdict(dataclasses.replace(options, integrated_account_id=account)),
        )
    except TrutoInputError as exc:
        return str(exc)
    return request


def _same(preparer: RowPreparer, hook: TrutoHook, options: TrutoQueryOptions, rows: list[Any]):
    for index, row in enumerate(rows):
        got = preparer.prepare(RawRow(index, row))
        want = _reference(hook, options, index, row)
        if isinstance(want, str):
            assert not isinstance(got, RowItem), row
            assert got.message == want
        else:
            assert isinstance(got, RowItem), (row, got)
            assert got.request == want
            assert got.request.content == want.content  # the bytes on the wire
            assert got.row_key == want.idempotency_key
            assert got.account == dict(want.params)["integrated_account_id"]


_account_values = st.sampled_from(
    [
        None,
        "",
        ACCOUNTS[0],
        ACCOUNTS[1].upper(),
        f"  {ACCOUNTS[1]} ",
        "{" + ACCOUNTS[2] + "}",
        f"urn:uuid:{ACCOUNTS[0]}",
        ACCOUNTS[0].replace("-", ""),
        "not-a-uuid",
        "62f44730-dd91-461e-bd6a-aedd9e0ad79",
    ]
)
_bodies = st.one_of(
    st.fixed_dictionaries({"amount": st.integers(-(2**60), 2**60)}),
    st.fixed_dictionaries(
        {"name": st.text(max_size=8)},
        optional={
            "custom_fields": st.dictionaries(
                st.text(max_size=4),
                st.one_of(st.none(), st.floats(), st.text(max_size=4)),
                max_size=2,
            )
        },
    ),
    st.just({}),
    st.just({"nope": 1}),
)
_rows = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=6), st.integers(0, 99), st.just("..")), "body": _bodies},
    optional={"integrated_account_id": _account_values},
)
_options = st.builds(
    TrutoQueryOptions,
    integrated_account_id=_account_values,
    response_format=st.sampled_from([None, "unified", "raw", "normalized"]),
    ignore_remote_data=st.sampled_from([None, True, False, "true"]),
    exclude_fields=st.sampled_from([None, ["remote_data"], "a,b", []]),
    remote_query=st.sampled_from([None, {}, {"owner": {"id": "7"}}, {"x": 1.5}]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=_options, rows=st.lists(_rows, min_size=1, max_size=12))
def test_rows_come_out_as_prepare_update_builds_them(
    options: TrutoQueryOptions, rows: list[Any]
) -> None:
    hook = TrutoHook()
    _same(RowPreparer(hook=hook, identity=IDENTITY, options=options), hook, options, rows)


def test_bad_options_give_every_row_the_same_reason_as_alone() -> None:
    """Options that cannot be encoded are not remembered: each row still gets its own reason
    (a bad id first), exactly as prepare_update gives it."""
    hook = TrutoHook()
    options = TrutoQueryOptions(remote_query={"x": float("nan")})
    rows = [{"id": "a", "body": {"amount": 1}}, {"id": "..", "body": {"amount": 1}}] * 2
    _same(RowPreparer(hook=hook, identity=IDENTITY, options=options), hook, options, rows)


def test_each_account_is_parsed_and_its_query_built_once_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[Any] = []
    built: list[Any] = []
    real_parse, real_build = _wire.validate_integrated_account_id, TrutoQueryOptions.query

    def parse(value: Any, **kw: Any) -> str:
        parsed.append(value)
        return real_parse(value, **kw)

    def build(self: TrutoQueryOptions, account: str, **kw: Any) -> dict[str, Any]:
        built.append(account)
        return real_build(self, account, **kw)

    monkeypatch.setattr(_wire, "validate_integrated_account_id", parse)
    monkeypatch.setattr(TrutoQueryOptions, "query", build)
    preparer = RowPreparer(hook=TrutoHook(), identity=IDENTITY)
    for i in range(60):
        row = {"id": f"o{i}", "body": {"amount": i}, "integrated_account_id": ACCOUNTS[i % 2]}
        assert isinstance(preparer.prepare(RawRow(i, row)), RowItem)
    # per account, not per row: the row's value, and the query's own resolution of it
    assert sorted(set(parsed)) == sorted(ACCOUNTS[:2]) and len(parsed) <= 4
    assert sorted(built) == sorted(ACCOUNTS[:2])


def test_replaced_options_are_not_served_from_the_old_ones() -> None:
    hook = TrutoHook()
    preparer = RowPreparer(hook=hook, identity=IDENTITY)
    row = {"id": "o1", "body": {"amount": 1}, "integrated_account_id": ACCOUNTS[0]}
    first = preparer.prepare(RawRow(0, row))
    preparer.options = TrutoQueryOptions(response_format="raw")
    second = preparer.prepare(RawRow(0, row))
    assert isinstance(first, RowItem) and isinstance(second, RowItem)
    assert ("truto_response_format", "raw") not in first.request.params
    assert ("truto_response_format", "raw") in second.request.params


_FIELD_VALUES: dict[str, Any] = {
    "name": "Deal",
    "description": "",
    "amount": 12.5,
    "currency": "EUR",
    "close_date": "2026-01-02T03:04:05Z",
    "close_time": "10:30",
    "created_at": "2026-01-02",
    "owner": {"id": "7"},
    "account": {"id": 8},
    "contact": [{"id": "c"}],
    "stage": {"name": "Won"},
    "status": "open",
    "tags": [{"id": "t"}],
    "custom_fields": {"x": 1},
    "remote_data": {"y": [1, "z"]},
}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(_FIELD_VALUES)), unique=True, min_size=1).flatmap(
        lambda names: st.permutations(names)
    ),
    st.data(),
)
def test_a_requests_field_names_are_its_bodys_keys(names: list[str], data: Any) -> None:
    """build_update names the fields by the dumped body's keys: the update's set fields in
    declaration order (``OpportunityUpdate.field_names``), whatever order they were given in
    and whether set to a value or to null."""
    body = {n: data.draw(st.sampled_from([_FIELD_VALUES[n], None])) for n in names}
    update = parse_update_body(body)
    request = TrutoHook().prepare_update("o1", body, integrated_account_id=ACCOUNTS[0])
    assert request.fields == tuple(update.field_names) == tuple(update.to_body())


def test_the_printable_ascii_shortcut_of_the_id_rule_refuses_what_the_rule_refuses() -> None:
    """opportunity_path skips the per-character category look-up for printable ASCII; every
    ASCII character it lets through that way is one the look-up lets through too."""
    for code in range(128):
        text = f"a{chr(code)}b"
        try:
            _wire.opportunity_path(text)
            refused = False
        except TrutoInputError:
            refused = True
        assert refused == (unicodedata.category(chr(code)) in _wire._FORBIDDEN_CATEGORIES)


#: Values the canonical encoder turns into text with ``default=str`` (a caller's raw body).
_odd_values = st.one_of(
    st.decimals(allow_nan=False),
    st.datetimes(),
    st.uuids(),
    st.text(max_size=3),
    st.dictionaries(st.text(max_size=2), st.decimals(allow_nan=False), max_size=2),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(_json_values)
def test_the_bytes_on_the_wire_are_compact_utf8_json_dumps(body: Any) -> None:
    request = _wire.PreparedRequest("PATCH", "/x", [], json_body=body)
    expected = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert request.content == (None if body is None else expected)


@given(_json_values | st.lists(_odd_values, max_size=3) | _odd_values)
def test_the_body_fingerprint_is_the_canonical_json_dumps(body: Any) -> None:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    assert body_fingerprint(body) == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_encoders_refuse_a_cycle_instead_of_looping() -> None:
    """The encoders are built without cycle markers (json_value refuses what is nested too
    deep before a body reaches them); a cyclic value given directly still raises."""
    body: dict[str, Any] = {}
    body["self"] = body
    with pytest.raises((RecursionError, ValueError)):
        body_fingerprint(body)
    with pytest.raises((RecursionError, ValueError)):
        _wire.PreparedRequest("PATCH", "/x", [], json_body=[body]).content  # noqa: B018


class _Int(int):
    pass


class _Float(float):
    pass


def _slow(value: Any) -> Any:
    """``value`` with every int, float and dict replaced by a subclass or another mapping, so
    json_value takes its general branches instead of its exact-type shortcuts."""
    if type(value) is int:
        return _Int(value)
    if type(value) is float:
        return _Float(value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _slow(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_slow(v) for v in value]
    return value


def _outcome(value: Any, **kw: Any) -> Any:
    try:
        return ("ok", json_value(value, ("x",), **kw))
    except JsonValueError as exc:
        return ("error", str(exc))


_numbers = st.one_of(
    st.integers(),
    st.integers(-(2**53) - 2, 2**53 + 2),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(["nan", "inf", " NaN "]),
)
_nested = st.recursive(
    _numbers,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(_nested, st.booleans(), st.booleans())
def test_json_values_exact_type_shortcuts_decide_as_the_general_branches(
    value: Any, free_form: bool, typed: bool
) -> None:
    fast = _outcome(value, free_form=free_form, typed=typed)
    slow = _outcome(_slow(value), free_form=free_form, typed=typed)
    assert fast[0] == slow[0]
    if fast[0] == "error":
        assert fast[1] == slow[1].replace("_Int", "int").replace("_Float", "float")
    else:  # repr: a NaN the rules let through equals itself only as the same object
        assert repr(fast[1]) == repr(slow[1])


ROW = {"id": "o1", "body": {"amount": 1}}


@pytest.mark.parametrize("odd", [["62f44730-dd91-461e-bd6a-aedd9e0ad79d"], {"id": 1}, 12])
def test_odd_account_options_give_the_reason_they_gave_before(odd: Any) -> None:
    """An unhashable or non-text default account is resolved as given (not looked up in the
    preparer's memory, which would fail with a TypeError instead of the account's reason)."""
    hook = TrutoHook()
    options = TrutoQueryOptions(integrated_account_id=odd)
    _same(RowPreparer(hook=hook, identity=IDENTITY, options=options), hook, options, [ROW] * 2)


@pytest.mark.parametrize(
    ("index", "body", "key", "content"),
    [
        (
            5,
            {"name": "Déal", "amount": 4200},  # flat: read without the model
            "truto-airflow-ca70a7df04826afcd121a8a4f7392aefcd36a5dea1062554",
            b'{"name":"D\xc3\xa9al","amount":4200}',
        ),
        (
            6,
            {"amount": 1.5, "status": None, "description": "x"},  # flat, reordered as declared
            "truto-airflow-da8af268d07c6a762f69f7cb3ecec1d680604a5637fd800d",
            b'{"description":"x","amount":1.5,"status":null}',
        ),
        (
            8,
            {  # flat, with dates and a time: parsed by their own fields' rules, reordered
                "close_time": " 17:30 ",
                "created_at": "2026-01-02 10:30+02:00",
                "close_date": "2026-01-02",
                "amount": 3,
            },
            "truto-airflow-8200e95dfa224c3c5e1264c7447087a33abc2071ca1c9f3d",
            b'{"amount":3,"close_date":"2026-01-02T00:00:00+00:00","close_time":"17:30",'
            b'"created_at":"2026-01-02T10:30:00+02:00"}',
        ),
        (
            7,
            {"amount": 7, "close_date": "2026-01-02", "owner": {"id": 5}},  # through the model
            "truto-airflow-ee83b81221ab053f93888e97f5c2018778486951e881bb8b",
            b'{"amount":7,"close_date":"2026-01-02T00:00:00+00:00","owner":{"id":"5"}}',
        ),
    ],
)
def test_a_rows_key_and_bytes_are_pinned_across_releases(
    index: int, body: dict[str, Any], key: str, content: bytes
) -> None:
    """Computed by the release before the flat-body shortcut: a retry after an upgrade sends
    the same Idempotency-Key and the same bytes."""
    options = TrutoQueryOptions(integrated_account_id="62f44730-dd91-461e-bd6a-aedd9e0ad79d")
    preparer = RowPreparer(hook=TrutoHook(), identity=IDENTITY, options=options)
    item = preparer.prepare(RawRow(index, {"id": "o/1", "body": body}))
    assert isinstance(item, RowItem)
    assert (item.row_key, item.request.idempotency_key, item.request.content) == (key, key, content)

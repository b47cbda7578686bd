"""``update_body`` reads a flat body (text fields and ``amount``) without building the model; for
every input it must accept and refuse exactly what the model does, and give the same JSON body
(keys in the same order, values of the same type, the same bytes), or the same reason."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import MAX_SAFE_INTEGER, json_value
from truto_airflow.models import opportunity
from truto_airflow.models.opportunity import OpportunityUpdate, parse_update_body, update_body


def _outcome(read: Any, body: Any) -> tuple[str, Any]:
    try:
        out = read(body)
    except TrutoInputError as exc:
        return ("refused", str(exc))
    encoded = json.dumps(out, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    # repr: a NaN is equal to itself only as the same object; types: 1 and 1.0 are equal
    return ("ok", (repr(out), [type(v).__name__ for v in out.values()], encoded))


def _model(body: Any) -> dict[str, Any]:
    return parse_update_body(body).to_body()


_edges = [MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER - 1]
#: Date and time texts, valid and not: what the fields' own parsers accept or refuse.
_dates = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.times().map(lambda t: t.isoformat()),
    st.from_regex(
        r"\A[0-9 ]{0,5}-?[0-9]{1,2}-?[0-9]{1,3}"
        r"([Tt ][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,10})?)?"
        r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?)?\Z"
    ),
    st.sampled_from(["2026-02-30", " 2026-01-02 ", "2026-01-02T10:00+14:01", "24:00", "now"]),
    st.sampled_from(["17:30", " 17:30:05 ", "17:60", "5", "2026-01-02T10:00:00.1234567891Z"]),
)
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(_edges),
    st.floats(),
    st.sampled_from([float(e) for e in _edges] + [-0.0, 1e300, 5e-324]),
    st.text(max_size=6),
    st.text(st.characters(min_codepoint=0xD7FE, max_codepoint=0xE001), max_size=3),  # surrogates
    st.sampled_from(["\ud800", "a\udfff", " ", "NaN", "nan", "12", "1e3", "2026-01-02"]),
    _dates,
    st.decimals(allow_nan=True, places=None),
    st.builds(Decimal, st.sampled_from(["1.5", "NaN", "1e400"])),
    st.just({"id": "7"}),
    st.lists(st.integers(), max_size=2),
)
_keys = st.one_of(
    st.sampled_from(["name", "description", "amount", "currency", "status"]),
    st.sampled_from(["close_date", "created_at", "close_time"]),
    st.sampled_from(["close_date", "owner", "stage", "custom_fields", "remote_data"]),
    st.sampled_from(["nmae", "Amount", "", "id"]),
    st.text(max_size=4),
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_update_body_accepts_refuses_and_encodes_as_the_model(body: dict[str, Any]) -> None:
    assert _outcome(update_body, body) == _outcome(_model, body)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "description", "amount", "currency", "status"])
        | st.sampled_from(["close_date", "created_at", "close_time"]),
        st.one_of(
            st.none(),
            st.text(),
            _dates,
            st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
            st.floats(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        ),
    )
)
def test_flat_bodies_take_the_shortcut_and_equal_the_model(body: dict[str, Any]) -> None:
    """Every flat body the model accepts is read by the shortcut (not only handed over)."""
    if isinstance(body.get("amount"), str):
        return  # an amount as text is the model's to parse
    try:
        expected = _model(body)
    except TrutoInputError:
        assert opportunity.flat_update_body(body) is None
        return
    fast = opportunity.flat_update_body(body)
    assert fast is not None, body
    assert repr(fast) == repr(expected)
    # build_update sends it as read: it is JSON already, as json_value would give it
    assert repr(json_value(fast, ("json",), free_form=False)) == repr(fast)


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 4200, "name": "Benchmark deal"},
        {"status": "won", "amount": 1.5, "currency": "EUR", "description": None, "name": ""},
        {"close_date": "2026-01-02", "created_at": "2026-01-02 10:30+02:00", "amount": 3},
        {"close_time": " 17:30 ", "close_date": None},
    ],
)
def test_the_usual_bulk_row_does_not_build_the_model(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model was built")

    expected = _model(body)
    monkeypatch.setattr(OpportunityUpdate, "model_validate", refuse)
    assert update_body(body) == expected
    assert list(update_body(body)) == list(expected)  # declaration order, as to_body()


@pytest.mark.parametrize(
    "body",
    [
        {"amount": float("nan")},
        {"amount": True},
        {"amount": MAX_SAFE_INTEGER + 1},
        {"amount": "12"},
        {"name": "\ud800"},
        {"name": 5},
        {"nmae": "x"},
        {"close_date": "01/02/2026"},
        {"close_date": "2026-02-30"},
        {"close_time": "17:60"},
        {"created_at": 5},
        {"owner": {"id": "7"}},
    ],
)
def test_what_the_shortcut_does_not_take_is_left_to_the_model(body: dict[str, Any]) -> None:
    assert opportunity.flat_update_body(body) is None
    assert _outcome(update_body, body) == _outcome(_model, body)


def test_the_shortcuts_fields_are_read_from_the_models_types() -> None:
    """Plain text fields, the date/time fields with their parsers, the amount; never a
    reference or a free-form field (the model reads those)."""
    assert {"name", "description", "currency", "status"} <= opportunity._FLAT
    assert {"amount"} == opportunity._AMOUNTS
    assert set(opportunity._FLAT_PARSERS) == {"close_date", "created_at", "close_time"}
    assert (
        {"name", "description", "currency", "status", "amount"} | set(opportunity._FLAT_PARSERS)
    ) == opportunity._FLAT


def test_the_model_has_no_rule_the_shortcut_would_skip() -> None:
    """The shortcut reads the flat fields by their types alone. A validator or serializer added
    to the model later (say, an ISO 4217 check on ``currency``) would be skipped by it for every
    flat body: this fails first, so the shortcut is taught the rule (or drops the field)."""
    model = opportunity.OpportunityUpdate
    decorators = model.__pydantic_decorators__
    assert list(decorators.model_validators) == ["_json_values"]
    assert not decorators.field_validators
    assert not decorators.field_serializers
    assert not decorators.model_serializers
    assert not decorators.validators
    config = model.model_config
    assert not any(config.get(k) for k in ("str_strip_whitespace", "str_to_lower", "str_to_upper"))
    assert config.get("str_max_length") is None and config.get("str_min_length") in (None, 0)
    # constraints given with Field(...) (max_length, pattern ...) live in a field's metadata
    assert all(not model.model_fields[name].metadata for name in opportunity._FLAT)

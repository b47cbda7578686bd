"""Type-aware diff of a desired update against the current opportunity."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from truto_airflow.diff import REMOTE_DATA_NOTE, apply_update, diff_update, values_equal
from truto_airflow.models.opportunity import Opportunity

# -- numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("current", [100, 100.0, "100.00", "100", Decimal("100.000")])
def test_amount_equal_across_representations(current: Any) -> None:
    assert values_equal("amount", 100, current)
    assert not diff_update({"amount": 100}, {"amount": current}).has_changes


@pytest.mark.parametrize("current", [101, "100.01", None, "n/a", True])
def test_amount_changed(current: Any) -> None:
    d = diff_update({"amount": 100}, {"amount": current})
    assert d.plan() == {"amount": {"old": current, "new": 100}}


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False
    )
)
def test_amount_representations_property(value: Decimal) -> None:
    as_float = float(value)
    padded = f"{value:.4f}"
    assert values_equal("amount", as_float, padded)
    assert values_equal("amount", str(value), as_float)
    assert not values_equal("amount", as_float, value + Decimal("0.01"))


# -- date-times ------------------------------------------------------------------------------------


def test_same_instant_in_other_offset_is_equal() -> None:
    d = diff_update(
        {"close_date": "2026-12-01T10:00:00+02:00"}, {"close_date": "2026-12-01T08:00:00.000Z"}
    )
    assert not d.has_changes and d.unchanged == ("close_date",)


def test_date_only_equals_midnight() -> None:
    assert values_equal("close_date", "2026-12-01T00:00:00+00:00", "2026-12-01")
    assert values_equal("close_date", "2026-12-01", "2026-12-01T00:00:00-05:00")
    assert not values_equal("close_date", "2026-12-01T15:00:00+00:00", "2026-12-01")
    assert not values_equal("close_date", "2026-12-02T00:00:00+00:00", "2026-12-01")
    # through the model: a date-only desired value becomes midnight UTC
    assert not diff_update({"close_date": "2026-12-01"}, {"close_date": "2026-12-01"}).has_changes


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
instants = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1)).map(
    lambda d: d.replace(tzinfo=dt.timezone.utc)
)


@given(instants, offsets, offsets)
def test_offsets_property(moment: dt.datetime, tz_a: dt.timezone, tz_b: dt.timezone) -> None:
    a = moment.astimezone(tz_a).isoformat()
    b = moment.astimezone(tz_b).isoformat()
    assert values_equal("close_date", a, b)
    assert not diff_update({"close_date": a}, {"close_date": b}).has_changes
    later = (moment + dt.timedelta(seconds=1)).astimezone(tz_b).isoformat()
    assert not values_equal("close_date", a, later)


# -- references ------------------------------------------------------------------------------------


def test_id_objects_compare_by_id() -> None:
    cur = {"owner": {"id": "u1", "name": "Ann"}, "account": {"id": "a1"}}
    assert not diff_update({"owner": {"id": "u1"}, "account": {"id": "a1"}}, cur).has_changes
    d = diff_update({"owner": {"id": "u2"}}, cur)
    assert d.plan() == {"owner": {"old": {"id": "u1", "name": "Ann"}, "new": {"id": "u2"}}}


def test_stage_by_name_when_only_name_is_given() -> None:
    cur = {"stage": {"id": "s7", "name": "Negotiation"}}
    assert not diff_update({"stage": {"name": "Negotiation"}}, cur).has_changes
    assert diff_update({"stage": {"name": "negotiation"}}, cur).has_changes
    assert not diff_update({"stage": {"id": "s7"}}, cur).has_changes
    # the id decides when both are given
    assert diff_update({"stage": {"id": "s8", "name": "Negotiation"}}, cur).has_changes


def test_contacts_and_tags_are_sets() -> None:
    cur = {
        "contact": [{"id": "c1", "name": "A"}, {"id": "c2"}],
        "tags": [{"id": "t1", "name": "vip"}, {"id": "t2", "name": "emea"}],
    }
    same = {
        "contact": [{"id": "c2"}, {"id": "c1"}, {"id": "c1"}],
        "tags": [{"name": "emea"}, {"id": "t1"}],
    }
    assert not diff_update(same, cur).has_changes
    assert diff_update({"contact": [{"id": "c1"}]}, cur).changed_fields == ["contact"]
    assert diff_update({"tags": [{"name": "vip"}]}, cur).changed_fields == ["tags"]
    assert diff_update({"tags": [{"name": "vip"}, {"name": "apac"}]}, cur).has_changes


# -- custom fields ---------------------------------------------------------------------------------


def test_custom_fields_only_written_keys_compared_and_minimal_body_cut() -> None:
    cur = {"custom_fields": {"score": "7.0", "tier": "gold", "other": "untouched"}}
    d = diff_update({"custom_fields": {"score": 7, "tier": "platinum"}}, cur)
    assert d.body == {"custom_fields": {"tier": "platinum"}}
    assert d.plan() == {"custom_fields": {"old": {"tier": "gold"}, "new": {"tier": "platinum"}}}
    assert not diff_update({"custom_fields": {"score": 7.0}}, cur).has_changes


def test_custom_field_value_types() -> None:
    cur = {
        "custom_fields": {
            "flag": "true",
            "when": "2026-01-01T00:00:00Z",
            "multi": ["b", "a"],
            "ref": {"id": "x", "label": "X"},
            "empty": "",
            "zip": "00123",
        }
    }
    want = {
        "flag": True,
        "when": "2026-01-01T01:00:00+01:00",
        "multi": ["a", "b"],
        "ref": {"id": "x"},
        "empty": None,
        "absent": None,
    }
    assert not diff_update({"custom_fields": want}, cur).has_changes
    changed = diff_update({"custom_fields": {"zip": "123", "flag": False}}, cur)
    assert set(changed.body["custom_fields"]) == {"zip", "flag"}
    assert diff_update({"custom_fields": {"multi": ["a"]}}, cur).has_changes


def test_custom_fields_against_missing_current() -> None:
    d = diff_update({"custom_fields": {"a": 1, "b": None}}, {"custom_fields": None})
    assert d.body == {"custom_fields": {"a": 1}}


# -- strings, clearing, remote_data -------------------------------------------------------------


def test_strings_are_exact() -> None:
    assert diff_update({"name": "Acme"}, {"name": "acme"}).has_changes
    assert diff_update({"name": "Acme"}, {"name": "Acme "}).has_changes
    assert not diff_update({"name": "Acme"}, {"name": "Acme"}).has_changes


def test_clearing() -> None:
    assert not diff_update({"description": None}, {}).has_changes
    assert not diff_update({"description": None}, {"description": ""}).has_changes
    assert not diff_update({"contact": []}, {"contact": None}).has_changes
    d = diff_update({"description": None}, {"description": "old"})
    assert d.body == {"description": None}
    assert d.plan() == {"description": {"old": "old", "new": None}}


def test_remote_data_is_always_sent_and_explained() -> None:
    d = diff_update({"name": "Same", "remote_data": {"x": 1}}, {"name": "Same", "remote_data": {}})
    assert d.body == {"remote_data": {"x": 1}}
    assert d.plan()["remote_data"] == {"old": None, "new": {"x": 1}, "note": REMOTE_DATA_NOTE}


def test_keep_fields_ride_along_only_when_writing() -> None:
    cur = {"name": "Deal", "account": {"id": "a"}, "contact": [{"id": "c"}], "amount": 1}
    body = {"name": "Deal", "account": {"id": "a"}, "contact": [{"id": "c"}], "amount": 2}
    keep = {"name", "account", "contact"}
    d = diff_update(body, cur, keep=keep)
    assert d.body == body
    assert set(d.carried) == keep and d.changed_fields == ["amount"]
    assert not diff_update({**body, "amount": 1}, cur, keep=keep).body


def test_uncompared_fields_never_trigger_but_ride_along() -> None:
    cur = {"amount": 1, "description": None}
    assert not diff_update({"amount": 1, "description": "x"}, cur, uncompared={"description"}).body
    d = diff_update({"amount": 2, "description": "x"}, cur, uncompared={"description"})
    assert d.body == {"amount": 2, "description": "x"}
    assert d.uncompared == ("description",)


def test_plan_is_json_and_accepts_a_model_as_current() -> None:
    current = Opportunity.model_validate(
        {"id": "o1", "amount": 5, "close_date": "2026-01-01T00:00:00Z", "owner": {"id": "u"}}
    )
    d = diff_update({"amount": 6, "close_date": "2026-01-02", "owner": {"id": "u"}}, current)
    assert json.loads(json.dumps(d.to_dict()))["changes"]["amount"] == {"old": 5, "new": 6}
    assert d.changed_fields == ["amount", "close_date"]
    assert d.minimal_update() is not None
    assert diff_update({"amount": 5}, current).minimal_update() is None


# -- the core property: after applying an update, diffing it again finds nothing -----------------

ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=6)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
custom_values = st.one_of(scalars, st.lists(scalars, max_size=3))
aware = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2050, 1, 1)).map(
    lambda d: d.replace(tzinfo=dt.timezone.utc)
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "name": st.text(min_size=1, max_size=10),
    "description": st.one_of(st.none(), st.text(max_size=10)),
    "amount": st.one_of(
        st.integers(-(10**9), 10**9), st.floats(-1e9, 1e9, allow_nan=False), st.none()
    ),
    "currency": st.sampled_from(["EUR", "USD", "gbp"]),
    "close_date": st.one_of(aware.map(lambda d: d.isoformat()), st.none()),
    "status": st.sampled_from(["open", "won", "lost"]),
    "owner": ids.map(lambda i: {"id": i}),
    "account": ids.map(lambda i: {"id": i}),
    "contact": st.lists(ids.map(lambda i: {"id": i}), max_size=3),
    "stage": st.one_of(ids.map(lambda i: {"id": i}), ids.map(lambda n: {"name": n})),
    "tags": st.lists(
        st.one_of(ids.map(lambda i: {"id": i}), ids.map(lambda n: {"name": n})), max_size=3
    ),
    "custom_fields": st.dictionaries(st.sampled_from("abcde"), custom_values, max_size=4),
}
updates = st.fixed_dictionaries({}, optional=field_values)


def _current_from(values: dict[str, Any]) -> dict[str, Any]:
    """A GET answer: references carry names, tags ids, as a CRM would return them."""
    cur: dict[str, Any] = {"id": "opp-1", **values}
    if isinstance(cur.get("owner"), dict):
        cur["owner"] = {**cur["owner"], "name": "Someone"}
    if isinstance(cur.get("tags"), list):
        cur["tags"] = [{"id": t.get("id") or f"id-{t.get('name')}", **t} for t in cur["tags"]]
    return cur


@given(updates, updates)
def test_diff_of_applied_update_is_empty(current_values: dict[str, Any], update: dict[str, Any]):
    current = _current_from(current_values)
    assert not diff_update(update, apply_update(current, update)).has_changes


@given(updates, updates)
def test_minimal_body_is_enough(current_values: dict[str, Any], update: dict[str, Any]) -> None:
    current = _current_from(current_values)
    d = diff_update(update, current)
    assert set(d.body) <= set(update)
    for name, value in d.body.get("custom_fields", {}).items():
        assert name in update["custom_fields"]
        assert value == update["custom_fields"][name] or value is None
    after = apply_update(current, d.body) if d.body else current
    assert not diff_update(update, after).has_changes
    json.dumps(d.to_dict())  # the plan is always JSON


@given(updates)
def test_diff_against_itself_is_empty(update: dict[str, Any]) -> None:
    assume(update)
    assert diff_update(update, update).body == {}

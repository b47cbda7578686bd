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
from truto_airflow.json_values import NON_FINITE_TEXT
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
    cur = {"custom_fields": {"score": "7", "tier": "gold", "other": "untouched"}}
    d = diff_update({"custom_fields": {"score": 7, "tier": "platinum"}}, cur)
    assert d.body == {"custom_fields": {"tier": "platinum"}}
    assert d.plan() == {"custom_fields": {"old": {"tier": "gold"}, "new": {"tier": "platinum"}}}
    assert not diff_update({"custom_fields": {"score": "7"}}, cur).has_changes


def test_custom_field_value_types() -> None:
    cur = {
        "custom_fields": {
            "flag": "true",
            "when": "2026-01-01T00:00:00Z",
            "absent": None,
            "multi": ["b", "a"],
            "ref": {"id": "x", "label": "X"},
            "empty": "",
            "zip": "00123",
        }
    }
    want = {
        "flag": True,
        "when": "2026-01-01T00:00:00Z",
        "multi": ["a", "b"],
        "ref": {"id": "x"},
        "empty": None,
        "absent": None,
    }
    assert not diff_update({"custom_fields": want}, cur).has_changes
    changed = diff_update({"custom_fields": {"zip": "123", "flag": False}}, cur)
    assert set(changed.body["custom_fields"]) == {"zip", "flag"}
    assert diff_update({"custom_fields": {"multi": ["a"]}}, cur).has_changes


def test_custom_fields_against_null_current() -> None:
    # null proves no key: "b" may hold a value the read did not show
    d = diff_update({"custom_fields": {"a": 1, "b": None}}, {"custom_fields": None})
    assert d.body == {"custom_fields": {"a": 1, "b": None}}
    assert not diff_update({"custom_fields": None}, {"custom_fields": None}).has_changes


# -- strings, clearing, remote_data -------------------------------------------------------------


def test_strings_are_exact() -> None:
    assert diff_update({"name": "Acme"}, {"name": "acme"}).has_changes
    assert diff_update({"name": "Acme"}, {"name": "Acme "}).has_changes
    assert not diff_update({"name": "Acme"}, {"name": "Acme"}).has_changes


def test_clearing() -> None:
    assert not diff_update({"description": None}, {"description": None}).has_changes
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
    # valid input only: free-form text that prints as NaN/inf is refused by the validator
    st.text(max_size=8).filter(lambda t: t.strip() not in NON_FINITE_TEXT),
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


# -- issue 8 D: "unchanged" only when the read proves it ------------------------------------------
#
# A field the read did not return is unknown, not empty; custom_fields in another shape than a
# mapping is compared properly or treated as changed; strings compare as strings unless the field
# is a date-time field of the model; a date-only value means midnight UTC of that day.

# A current value for every field, each different from what ``WRITES`` asks for, so that a field
# left out of the read must be what makes the row change.
WRITES: dict[str, Any] = {
    "name": "Deal",
    "description": None,
    "amount": 100,
    "currency": "EUR",
    "close_date": "2026-12-01T00:00:00+00:00",
    "close_time": None,
    "created_at": None,
    "status": "open",
    "owner": {"id": "u1"},
    "account": {"id": "a1"},
    "contact": [],
    "stage": {"id": "s1"},
    "tags": [],
    "custom_fields": {"score": None},
}


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_field_missing_from_the_read_is_unknown_not_empty(name: str) -> None:
    d = diff_update({name: WRITES[name]}, {"id": "opp-1"})
    assert d.has_changes and name in d.body
    change = d.plan()[name]
    assert "old" not in change and "not returned" in change["note"]


def test_clearing_over_a_partial_list_entry_is_sent() -> None:
    # What the list endpoint returned for the opportunity: no description at all.
    partial = {"id": "opp-1", "name": "Deal", "amount": 5}
    d = diff_update({"description": None, "name": "Deal"}, partial)
    assert d.body == {"description": None}
    assert d.unknown == ("description",)
    # present and null is a proof: nothing to send
    assert not diff_update({"description": None}, {**partial, "description": None}).has_changes


@pytest.mark.parametrize("current", [None, {}, {"other": 1}])
def test_a_custom_field_key_missing_from_the_read_is_unknown(current: Any) -> None:
    d = diff_update({"custom_fields": {"score": None, "tier": "gold"}}, {"custom_fields": current})
    assert d.body == {"custom_fields": {"score": None, "tier": "gold"}}


LIST_SHAPE = [{"name": "score", "value": 7}, {"name": "tier", "value": "gold"}]


def test_custom_fields_as_a_list_of_name_value_pairs_are_compared_by_name() -> None:
    cur = {"custom_fields": LIST_SHAPE}
    assert not diff_update({"custom_fields": {"score": 7, "tier": "gold"}}, cur).has_changes
    d = diff_update({"custom_fields": {"score": 8, "tier": "gold", "new": None}}, cur)
    assert d.body == {"custom_fields": {"score": 8, "new": None}}
    assert d.plan()["custom_fields"]["old"] == {"score": 7}


@pytest.mark.parametrize(
    "shape",
    [
        "score=7",
        ["score", 7],
        [{"name": "score", "value": 7}, {"name": "score", "value": 8}],  # ambiguous
        [{"label": "score", "value": 7}],
        [{"name": "score"}],
        7,
        True,
        {"score"},
    ],
)
def test_custom_fields_in_an_unknown_shape_are_changed_never_empty(shape: Any) -> None:
    for want in ({"score": 7}, {"score": None}):
        d = diff_update({"custom_fields": want}, {"custom_fields": shape})
        assert d.body == {"custom_fields": want}, shape


def test_custom_fields_as_json_text_are_read_as_the_mapping() -> None:
    # Truto's docs show custom_fields as a JSON object string in their examples.
    cur = {"custom_fields": '{"score": 7, "tier": "gold"}'}
    assert not diff_update({"custom_fields": {"score": 7}}, cur).has_changes
    assert diff_update({"custom_fields": {"score": 8}}, cur).has_changes


@pytest.mark.parametrize(
    ("desired", "current"),
    [
        ("2026-01-01", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2026-01-01"),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"),
        ("10:00", "10:00:00"),
        (7, "7.0"),
        (7.5, "7.50"),
        ("7", 7.0),
        ("1e3", 1000),
        (False, "False"),
        ({"at": "2026-01-01"}, {"at": "2026-01-01T00:00:00Z"}),
        (["2026-01-01"], ["2026-01-01T00:00:00Z"]),
    ],
)
def test_custom_field_strings_compare_as_strings(desired: Any, current: Any) -> None:
    d = diff_update({"custom_fields": {"x": desired}}, {"custom_fields": {"x": current}})
    assert d.body == {"custom_fields": {"x": desired}}


@pytest.mark.parametrize(
    ("desired", "current"),
    [(7, "7"), (7.5, "7.5"), (7, 7.0), (True, "true"), ("true", True), ("7", 7), (None, "")],
)
def test_custom_field_values_with_the_same_json_text_are_equal(desired: Any, current: Any) -> None:
    assert not diff_update(
        {"custom_fields": {"x": desired}}, {"custom_fields": {"x": current}}
    ).body


@pytest.mark.parametrize("name", ["name", "description", "currency", "status"])
@pytest.mark.parametrize(
    ("desired", "current"),
    [("2026-01-01", "2026-01-01T00:00:00Z"), ("5", 5), ("true", True), ("1.0", "1")],
)
def test_string_fields_compare_as_strings(name: str, desired: str, current: Any) -> None:
    assert diff_update({name: desired}, {name: current}).has_changes


@pytest.mark.parametrize(("desired", "current"), [("10:00", "10:00:00"), ("09:30", 930)])
def test_close_time_compares_as_text(desired: str, current: Any) -> None:
    # close_time is validated as an ISO 8601 time of day, then compared as the text sent
    assert diff_update({"close_time": desired}, {"close_time": current}).has_changes


def test_date_only_means_midnight_utc_of_that_day() -> None:
    # code and docs/data_safety.md: a date-only value is midnight UTC of that date
    assert values_equal("close_date", "2026-12-01", "2026-12-01T00:00:00Z")
    assert values_equal("close_date", "2026-12-01T00:00:00+00:00", "2026-12-01")
    assert values_equal("close_date", "2026-12-01", "2026-12-01")
    assert not values_equal("close_date", "2026-12-01", "2026-12-01T00:00:00-05:00")
    assert not values_equal("close_date", "2026-12-01T00:00:00+05:00", "2026-12-01")
    assert diff_update(
        {"close_date": "2026-12-01T00:00:00-05:00"}, {"close_date": "2026-12-01"}
    ).body
    assert not diff_update({"close_date": "2026-12-01"}, {"close_date": "2026-12-01"}).body


@pytest.mark.parametrize("current", ["2026-12-01T00:00:00", "2026-12-01 00:00", "Dec 1 2026", 0])
def test_a_date_time_without_offset_or_not_iso_is_not_proof(current: Any) -> None:
    assert diff_update({"close_date": "2026-12-01T00:00:00Z"}, {"close_date": current}).body


def test_decimal_in_custom_fields_is_sent_as_a_json_number() -> None:
    from truto_airflow.models.opportunity import parse_update_body

    body = parse_update_body(
        {"amount": Decimal("1.50"), "custom_fields": {"x": Decimal("1.50"), "n": [Decimal("2")]}}
    ).to_body()
    assert json.dumps(body["custom_fields"]) == '{"x": 1.5, "n": [2]}'
    assert body["amount"] == 1.5


# -- properties over partial and odd current states ---------------------------------------------

odd_custom = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.integers(),
    st.lists(scalars, max_size=3),
    st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from("abcde")}, optional={"value": custom_values}
        ),
        max_size=4,
    ),
    st.dictionaries(st.sampled_from("abcde"), custom_values, max_size=4),
)
odd_values: dict[str, st.SearchStrategy[Any]] = {
    **field_values,
    "custom_fields": odd_custom,
    "close_date": st.one_of(
        field_values["close_date"],
        aware.map(lambda d: d.date().isoformat()),
        aware.map(lambda d: d.replace(tzinfo=None).isoformat()),
        st.text(max_size=12),
    ),
    "name": st.one_of(st.text(max_size=6), st.integers(0, 9), st.none()),
    "amount": st.one_of(field_values["amount"], st.text(max_size=6), st.booleans()),
}
partial_states = st.fixed_dictionaries({}, optional=odd_values)


def _custom_mapping(value: Any) -> dict[str, Any] | None:
    """The test's own reading of a custom_fields value: a mapping, a JSON object text, or a list
    of distinct ``{name, value}`` pairs; anything else proves nothing."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and "value" in e for e in value
    ):
        names = [e["name"] for e in value]
        return {e["name"]: e["value"] for e in value} if len(set(names)) == len(names) else None
    return None


@given(updates, partial_states)
def test_unchanged_only_for_fields_the_read_returned(update: dict[str, Any], current: Any) -> None:
    d = diff_update(update, current)
    for name in d.unchanged:
        assert name in current, name
        if name == "custom_fields" and update[name]:
            have = _custom_mapping(current[name])
            assert have is not None and set(update[name]) <= set(have)
    written = set(update) - set(d.uncompared)
    assert set(d.unchanged) | set(d.changes) == written


@given(updates, partial_states)
def test_minimal_body_lands_where_the_full_body_does(update: dict[str, Any], current: Any) -> None:
    d = diff_update(update, current)
    full = apply_update(current, update)
    minimal = apply_update(current, d.body)
    for name in update:
        assert name in minimal, name  # never "unchanged" on a field the read did not return
        if name == "custom_fields" and update[name]:
            have = _custom_mapping(minimal[name])
            assert have is not None and set(update[name]) <= set(have)
            for key in update[name]:
                assert values_equal("custom_fields", {key: full[name][key]}, have)
        else:
            assert values_equal(name, full[name], minimal[name]) or name in d.body


# Mutations of a state that holds the update which are real changes: each must be detected.
def _mutations(name: str, value: Any) -> list[Any]:
    out: list[Any] = [_MISSING]
    if isinstance(value, str) and name not in {"close_date", "created_at"}:
        out += [value + " ", value.upper() if value.upper() != value else value + "x"]
    if isinstance(value, str) and name in {"close_date", "created_at"}:
        moment = dt.datetime.fromisoformat(value)
        out.append((moment + dt.timedelta(seconds=1)).isoformat())
        other_offset = dt.datetime.fromisoformat(moment.date().isoformat() + "T00:00:00-01:00")
        if other_offset != moment:
            out.append(other_offset.isoformat())
        out.append(moment.replace(tzinfo=None).isoformat())
    return out


_MISSING = object()


@given(updates, updates)
def test_real_changes_are_never_unchanged(base: dict[str, Any], update: dict[str, Any]) -> None:
    state = apply_update(_current_from(base), update)
    for name in update:
        for mutated in _mutations(name, state.get(name)):
            cur = dict(state)
            if mutated is _MISSING:
                cur.pop(name, None)
            else:
                cur[name] = mutated
            assert name in diff_update(update, cur).body, (name, mutated)
        if name == "custom_fields" and update[name]:
            for key in update[name]:
                cur = dict(state)
                cur[name] = {k: v for k, v in state[name].items() if k != key}
                assert key in diff_update(update, cur).body.get(name, {}), key
                as_list = [{"name": k, "value": v} for k, v in state[name].items()]
                cur[name] = as_list
                assert not diff_update({name: update[name]}, cur).body

"""OpportunityUpdate: PATCH semantics, typo protection, date-times and amounts."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given
from hypothesis import strategies as st

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.models import Opportunity, OpportunityUpdate, ResponseFormat, parse_update_body
from truto_airflow.models.options import build_unified_query, validate_integrated_account_id

DOCS_FIELDS = {
    "name",
    "description",
    "amount",
    "currency",
    "close_date",
    "close_time",
    "created_at",
    "owner",
    "account",
    "contact",
    "stage",
    "status",
    "tags",
    "custom_fields",
    "remote_data",
}


def test_every_documented_body_field_is_modelled() -> None:
    assert set(OpportunityUpdate.model_fields) == DOCS_FIELDS


def test_full_body_serialises_to_truto_json() -> None:
    update = parse_update_body(
        {
            "name": "Renewal 2027",
            "description": "Upsell",
            "amount": Decimal("1200.50"),
            "currency": "EUR",
            "close_date": "2026-12-31T17:00:00+01:00",
            "created_at": dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone.utc),
            "owner": {"id": "u1"},
            "account": {"id": "a1"},
            "contact": [{"id": "c1"}, {"id": "c2"}],
            "stage": {"id": "s1", "name": "Proposal"},
            "status": "open",
            "tags": [{"name": "vip"}],
            "custom_fields": {"score": 0.93},
            "remote_data": {"properties": {"x": 1}},
        }
    )
    body = update.to_body()
    assert body["amount"] == 1200.5 and isinstance(body["amount"], float)
    assert body["close_date"] == "2026-12-31T17:00:00+01:00"
    assert body["created_at"] == "2026-01-01T09:00:00+00:00"
    assert body["contact"] == [{"id": "c1"}, {"id": "c2"}]
    assert body["tags"] == [{"name": "vip"}]
    json.dumps(body)  # JSON-serialisable as is


def test_unset_fields_are_not_sent_and_none_is_sent_as_null() -> None:
    body = parse_update_body({"amount": 10, "description": None}).to_body()
    assert body == {"amount": 10, "description": None}
    assert json.loads(json.dumps(body)) == {"amount": 10, "description": None}
    assert "null" in json.dumps(body)


def test_field_names_follow_declaration_order() -> None:
    update = parse_update_body({"stage": {"id": "s"}, "amount": 1, "name": "n"})
    assert update.field_names == ["name", "amount", "stage"]


def test_unknown_field_is_named_with_a_suggestion_and_the_escape_hatch() -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({"amout": 5})
    text = str(info.value)
    assert "'amout'" in text and "did you mean 'amount'" in text and "remote_data" in text
    assert isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"amount": "lots"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": float("nan")}, "amount"),
        ({"close_date": "next tuesday"}, "close_date"),
        ({"close_date": ""}, "close_date"),
        ({"contact": [{"id": ""}]}, "contact.0.id"),
        ({"contact": {"id": "c"}}, "contact"),
        ({"owner": {"id": "u", "email": "x"}}, "owner.email"),
        ({"stage": {}}, "stage"),
        ({"tags": [{}]}, "tags.0"),
        ({"custom_fields": "x"}, "custom_fields"),
    ],
)
def test_invalid_values_name_the_field(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TrutoInputError, match=fragment.replace(".", r"\.")):
        parse_update_body(body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-31", "2026-12-31T00:00:00+00:00"),
        (dt.date(2026, 12, 31), "2026-12-31T00:00:00+00:00"),
        (dt.datetime(2026, 12, 31, 8, 30), "2026-12-31T08:30:00+00:00"),
        (
            pendulum.datetime(2026, 12, 31, 8, 30, tz="America/New_York"),
            "2026-12-31T08:30:00-05:00",
        ),
        ("2026-12-31T08:30:00Z", "2026-12-31T08:30:00+00:00"),
    ],
)
def test_date_times_are_sent_as_iso_8601_with_offset(value: Any, expected: str) -> None:
    assert parse_update_body({"close_date": value}).to_body()["close_date"] == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Decimal("100"), 100), (Decimal("99.5"), 99.5), ("1_000", 1000), ("12.25", 12.25), (7, 7)],
)
def test_amounts_become_json_numbers(value: Any, expected: float) -> None:
    sent = parse_update_body({"amount": value}).to_body()["amount"]
    assert sent == expected and not isinstance(sent, str)


def test_json_string_and_dict_repr_bodies_are_parsed() -> None:
    assert parse_update_body('{"amount": 5}').to_body() == {"amount": 5}
    assert parse_update_body("{'amount': 5, 'description': None}").to_body() == {
        "amount": 5,
        "description": None,
    }
    assert parse_update_body(b'{"name": "x"}').to_body() == {"name": "x"}


@pytest.mark.parametrize(
    "text", ["", "   ", "hello", "[1, 2]", "{'close_date': datetime.date(2026, 1, 1)}"]
)
def test_strings_that_are_not_objects_are_refused_with_the_fix(text: str) -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body(text)
    assert "tojson" in str(info.value) or "empty" in str(info.value)


@pytest.mark.parametrize("body", [None, 5, ["amount", 5]])
def test_non_mapping_bodies_are_refused(body: Any) -> None:
    with pytest.raises(TrutoInputError, match="expected a mapping"):
        parse_update_body(body)


def test_opportunity_update_passes_through() -> None:
    update = OpportunityUpdate(amount=3)
    assert parse_update_body(update) is update


def test_opportunity_response_keeps_unknown_fields() -> None:
    opp = Opportunity.model_validate(
        {
            "id": "1",
            "amount": 10,
            "updated_at": "2026-11-28T10:00:00Z",
            "urls": [{"url": "https://crm/1", "type": "view"}],
            "mapped_extra": True,
        }
    )
    assert opp.urls is not None and opp.urls[0].url == "https://crm/1"
    assert opp.model_extra == {"mapped_extra": True}


#: Valid reference ids (a blank one is refused: tests/unit/models/test_bad_inputs.py).
ref_ids = st.text(min_size=1, max_size=5).filter(str.strip)
field_values = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.none(), st.text(max_size=20)),
        "amount": st.one_of(
            st.none(),
            st.integers(min_value=-(10**9), max_value=10**9),
            st.floats(min_value=-(2.0**40), max_value=2.0**40, width=32),
        ),
        "currency": st.one_of(st.none(), st.sampled_from(["EUR", "USD", "INR"])),
        "close_date": st.one_of(
            st.none(), st.datetimes(timezones=st.sampled_from([dt.timezone.utc, None]))
        ),
        "stage": st.one_of(st.none(), st.builds(lambda i: {"id": i}, ref_ids)),
        "contact": st.one_of(st.none(), st.lists(st.builds(lambda i: {"id": i}, ref_ids))),
        "custom_fields": st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=5), st.integers(-(2**53) + 1, 2**53 - 1), max_size=3),
        ),
    },
)


@given(field_values)
def test_body_validation_keeps_exactly_the_given_fields(body: dict[str, Any]) -> None:
    sent = parse_update_body(body).to_body()
    assert set(sent) == set(body)
    for key, value in body.items():
        if value is None:
            assert sent[key] is None
    # what is sent is valid input again (idempotent validation)
    assert parse_update_body(sent).to_body() == sent


@given(st.text(min_size=1, max_size=12).filter(lambda k: k not in DOCS_FIELDS))
def test_any_unknown_top_level_field_is_refused(name: str) -> None:
    with pytest.raises(TrutoInputError, match="unknown field"):
        parse_update_body({name: 1})


def test_response_format_parse() -> None:
    assert ResponseFormat.parse("RAW") is ResponseFormat.RAW
    with pytest.raises(TrutoInputError, match="unified, raw, normalized, stream"):
        ResponseFormat.parse("xml")


def test_integrated_account_id_must_be_a_uuid() -> None:
    assert validate_integrated_account_id(" 62F44730-DD91-461E-BD6A-AEDD9E0AD79D ") == (
        "62f44730-dd91-461e-bd6a-aedd9e0ad79d"
    )
    with pytest.raises(TrutoInputError, match="not a UUID"):
        validate_integrated_account_id("acct-123")
    with pytest.raises(TrutoInputError, match="required"):
        validate_integrated_account_id("")


def test_unified_query_options() -> None:
    query = build_unified_query(
        integrated_account_id="a",
        response_format="raw",
        ignore_remote_data="true",
        exclude_fields="remote_data, urls",
        remote_query={"x": 1},
    )
    assert query == {
        "integrated_account_id": "a",
        "truto_response_format": "raw",
        "truto_ignore_remote_data": True,
        "truto_exclude_fields": ["remote_data", "urls"],
        "remote_query": {"x": 1},
    }
    assert build_unified_query(integrated_account_id="a", ignore_remote_data=False) == {
        "integrated_account_id": "a"
    }
    assert build_unified_query(integrated_account_id="a", exclude_fields='["id"]')[
        "truto_exclude_fields"
    ] == ["id"]
    with pytest.raises(TrutoInputError, match="ignore_remote_data"):
        build_unified_query(integrated_account_id="a", ignore_remote_data="maybe")
    with pytest.raises(TrutoInputError, match="remote_query"):
        build_unified_query(integrated_account_id="a", remote_query="x=1")  # type: ignore[arg-type]


def test_numeric_reference_ids_are_sent_as_strings() -> None:
    # render_template_as_native_obj=True turns "12345" into 12345
    body = parse_update_body(
        {"owner": {"id": 12345}, "stage": {"id": 7}, "contact": [{"id": 1}]}
    ).to_body()
    assert body == {"owner": {"id": "12345"}, "stage": {"id": "7"}, "contact": [{"id": "1"}]}


# -- issue 11 item 6: newcomer errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "suggestion"),
    [
        ({"stage": {"idd": "s1"}}, "did you mean 'stage.id'"),
        ({"stage": {"nme": "Won"}}, "did you mean 'stage.name'"),
        ({"owner": {"ids": "u1"}}, "did you mean 'owner.id'"),
        ({"contact": [{"id": "c1"}, {"iid": "c2"}]}, "did you mean 'contact.1.id'"),
        ({"tags": [{"nam": "vip"}]}, "did you mean 'tags.0.name'"),
    ],
)
def test_nested_typos_get_a_suggestion(body: dict[str, Any], suggestion: str) -> None:
    with pytest.raises(TrutoInputError, match=suggestion.replace(".", r"\.")):
        parse_update_body(body)


@pytest.mark.parametrize("name", ["lead_score__c", "hs_priority", "Region", "renewal_quarter"])
def test_custom_field_at_top_level_points_to_custom_fields(name: str) -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({name: "x"})
    text = str(info.value)
    assert f"{{'custom_fields': {{'{name}': ...}}}}" in text
    assert "remote_data" in text and "did you mean" not in text


def test_near_typo_still_suggests_the_model_field_first() -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({"descripton": "x"})
    assert "did you mean 'description'" in str(info.value)


def test_native_rendered_big_integer_ids_are_sent_as_the_exact_string() -> None:
    # A 19-digit Zoho id rendered natively is an int beyond 2**53: exact as a string, so kept.
    zoho = 3652397000000649013
    body = parse_update_body({"owner": {"id": zoho}, "contact": [{"id": zoho + 1}]}).to_body()
    assert body == {"owner": {"id": str(zoho)}, "contact": [{"id": str(zoho + 1)}]}


@pytest.mark.parametrize("key", ["\n", "a\nb", "x\r\ny", "\u2028"])
def test_unknown_field_message_is_one_line_whatever_the_key(key: str) -> None:
    with pytest.raises(TrutoInputError) as info:
        parse_update_body({key: 1})
    message = str(info.value)
    assert not any(ch in message for ch in "\n\r\u2028"), message
    assert repr(key) in message  # the key is shown quoted, so the user can see what it was

"""Reading values the way Airflow templates render them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.rendered import blank_to_none, parse_object_text, rendered_mapping


@pytest.mark.parametrize(
    ("value", "expected"), [("", None), (" None ", None), (None, None), ("x", "x"), (0, 0)]
)
def test_blank_to_none(value: Any, expected: Any) -> None:
    assert blank_to_none(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("{'a': None, 'b': True}", {"a": None, "b": True}),
        ("[1]", None),
        ("__import__('os').system('true')", None),  # never evaluated
        ("not json", None),
    ],
)
def test_parse_object_text(text: str, expected: Any) -> None:
    assert parse_object_text(text) == expected


def test_rendered_mapping() -> None:
    assert rendered_mapping("remote_query", "{'x': 1}") == {"x": 1}
    assert rendered_mapping("remote_query", "None") is None
    assert rendered_mapping("remote_query", {"y": 2}) == {"y": 2}
    with pytest.raises(TrutoInputError, match="remote_query must be a mapping"):
        rendered_mapping("remote_query", "x=1")


# -- issue 11 item 6: every templated option reads the same rendered forms ------------------

ROWS = [{"id": "o1", "body": {"amount": 1, "close_date": "2026-01-02"}}]
FORMS = {
    "native": None,  # the value itself (render_template_as_native_obj=True, or an XComArg)
    "tojson": "json",
    "python repr": "repr",
}


def _rendered(value: Any, form: str | None) -> Any:
    if form == "json":
        return json.dumps(value)
    if form == "repr":
        return repr(value)  # what Jinja renders for a dict or list without native rendering
    return value


@pytest.mark.parametrize("form", FORMS.values(), ids=list(FORMS))
def test_body_remote_query_exclude_fields_and_updates_read_the_same_forms(
    form: str | None,
) -> None:
    from truto_airflow.bulk.rows import open_source
    from truto_airflow.models import parse_update_body
    from truto_airflow.models.options import build_unified_query

    body = {"amount": 5, "custom_fields": {"flag": True, "none": None}}
    assert parse_update_body(_rendered(body, form)).to_body() == body
    assert rendered_mapping("remote_query", _rendered({"archived": False}, form)) == {
        "archived": False
    }
    query = build_unified_query(
        integrated_account_id="a", exclude_fields=_rendered(["remote_data", "urls"], form)
    )
    assert query["truto_exclude_fields"] == ["remote_data", "urls"]
    rows = [raw.data for raw in open_source(_rendered(ROWS, form)).rows]
    assert rows == ROWS


@pytest.mark.parametrize(
    ("call", "text"),
    [
        ("body", "{'close_date': datetime.date(2026, 1, 2)}"),
        ("remote_query", "{'since': datetime.date(2026, 1, 2)}"),
        ("exclude_fields", "['a', Field('b')]"),
        ("updates", "[{'id': 'o1', 'body': {'amount': Decimal('1.5')}}]"),
        ("body", "{'a': nan}"),
        ("remote_query", "[1, 2]"),
        ("updates", "{'id': 'o1'"),
    ],
)
def test_unreadable_renderings_get_one_message_naming_both_fixes(call: str, text: str) -> None:
    from truto_airflow.bulk.rows import open_source
    from truto_airflow.models import parse_update_body
    from truto_airflow.models.options import build_unified_query

    read: dict[str, Any] = {
        "body": parse_update_body,
        "remote_query": lambda t: rendered_mapping("remote_query", t),
        "exclude_fields": lambda t: build_unified_query(
            integrated_account_id="a", exclude_fields=t
        ),
        "updates": open_source,
    }
    with pytest.raises(TrutoInputError) as info:
        read[call](text)
    message = str(info.value)
    assert call in message
    assert "render_template_as_native_obj=True" in message and "| tojson" in message


def test_rendered_json_text_refuses_non_finite_literals() -> None:
    from truto_airflow.models import parse_update_body

    with pytest.raises(TrutoInputError, match=r"custom_fields\.s"):
        parse_update_body('{"custom_fields": {"s": NaN}}')


def test_rendered_text_nested_too_deep_is_an_input_error() -> None:
    from truto_airflow.models import parse_update_body

    deep = '{"remote_data": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(TrutoInputError):
        parse_update_body(deep)
    deep_repr = "{'remote_data': " + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(TrutoInputError):
        parse_update_body(deep_repr)


def test_self_referencing_body_is_an_input_error() -> None:
    from truto_airflow.models import parse_update_body

    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(TrutoInputError, match="remote_data"):
        parse_update_body({"remote_data": loop})

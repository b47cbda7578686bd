"""Reading values the way Airflow templates render them."""

from __future__ import annotations

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

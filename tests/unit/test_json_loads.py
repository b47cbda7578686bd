"""``json_values.loads`` reads with a decoder built once; for any input it must give what
``json.loads`` with the same hooks gives (value, or error type and message)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from truto_airflow.json_values import _parse_constant, loads, parse_float_text


def _outcome(read: Any, text: Any) -> tuple[str, str]:
    try:
        return ("ok", repr(read(text)))  # BadNumber's repr is its text
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _reference(text: Any) -> Any:
    return json.loads(text, parse_float=parse_float_text, parse_constant=_parse_constant)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
_texts = st.one_of(
    _values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.sampled_from(["1e400", "-1e-400", "NaN", "[Infinity]", '{"a": 1e999}', "", "{", "01"]),
    st.text(max_size=8),
    st.text(max_size=8).map(lambda t: "\ufeff" + t),
)
_inputs = st.one_of(
    _texts,
    _texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    _texts.map(lambda t: t.encode("utf-16", "surrogatepass")),
    _texts.map(lambda t: t.encode("utf-8-sig", "surrogatepass")),
    _texts.map(lambda t: bytearray(t.encode("utf-32", "surrogatepass"))),
    st.binary(max_size=8),
    st.sampled_from([None, 5, ["[]"]]),
)


@settings(max_examples=500)
@given(_inputs)
def test_loads_reads_as_json_loads_with_its_hooks(text: Any) -> None:
    assert _outcome(loads, text) == _outcome(_reference, text)

"""Truto's bracket query-string convention, both ways.

Truto documents one encoding for every API ("Querying in Truto API"): objects become
``a[b]=c`` (recursively ``a[b][c]=d``), arrays repeat ``a[]=x`` and objects inside arrays continue
with ``a[][k]=v``. Booleans are ``true``/``false`` and date-times ISO 8601. ``None`` is *omitted*
(Truto's own Python SDK sends the string ``"None"``, which a CRM then filters on), and so are empty
arrays and objects, which have no representation in this encoding. What the encoding cannot
carry unambiguously is refused (:class:`QueryEncodingError`): keys that are empty or contain
``[``/``]``, an object whose keys are all digits (it reads back as an array), text that is not
Unicode, non-finite numbers.

:func:`encode_query` turns a mapping into ordered ``(key, value)`` pairs for an HTTP client; the
server-side inverse lives with its only user, the emulator (``truto_airflow.emulator.query``).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from truto_airflow.exceptions import TrutoError
from truto_airflow.json_values import MAX_DEPTH, aware_datetime

__all__ = ["QueryEncodingError", "encode_query", "encode_scalar", "is_array_index"]


class QueryEncodingError(TrutoError, ValueError):
    """A query value cannot be represented in Truto's query convention."""


def encode_scalar(value: Any, *, key: str = "value") -> str:
    """Render one leaf value the way Truto expects it in a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return encode_scalar(value.value, key=key)
    if isinstance(value, str):
        return _text(value, key)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryEncodingError(f"query parameter {key!r}: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QueryEncodingError(f"query parameter {key!r}: {value!r} is not a finite number")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        # The body's rule: naive is UTC, NaT and impossible offsets are refused.
        try:
            return aware_datetime(value).isoformat()
        except ValueError as exc:
            raise QueryEncodingError(f"query parameter {key!r}: {exc}") from None
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise QueryEncodingError(
        f"query parameter {key!r}: cannot encode a {type(value).__name__}; "
        "use strings, numbers, booleans, date-times, lists or mappings"
    )


def _text(value: str, key: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryEncodingError(
            f"query parameter {key!r}: the text contains a lone surrogate, which is not Unicode"
        ) from None
    return value


def _check_key(key: Any, prefix: str | None) -> str:
    """A key Truto's bracket form carries unambiguously: a non-empty string without brackets."""
    where = f"query parameter {prefix!r}: nested keys" if prefix else "query parameter names"
    if not isinstance(key, str) or not key:
        raise QueryEncodingError(f"{where} must be non-empty strings, got {key!r}")
    if "[" in key or "]" in key:
        raise QueryEncodingError(
            f"{where} cannot contain '[' or ']' (got {key!r}): brackets are how nesting is "
            "encoded, so the CRM would read a different structure; pass a nested mapping "
            "instead (e.g. {'filter': {'name': ...}} for filter[name])"
        )
    return _text(key, prefix or key)


def encode_query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Encode ``params`` into ordered ``(key, value)`` pairs using Truto's bracket convention.

    >>> encode_query({"foo": {"bar": "baz", "bar1": {"bar2": "baz2"}}})
    [('foo[bar]', 'baz'), ('foo[bar1][bar2]', 'baz2')]
    >>> encode_query({"foo": ["bar", {"bar1": "baz1"}], "skip": None, "flag": True})
    [('foo[]', 'bar'), ('foo[][bar1]', 'baz1'), ('flag', 'true')]
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _encode_into(pairs, _check_key(key, None), value)
    return pairs


def _encode_into(pairs: list[tuple[str, str]], prefix: str, value: Any, depth: int = 0) -> None:
    if value is None:
        return
    if depth > MAX_DEPTH:  # the body's bound; also ends a structure that contains itself
        raise QueryEncodingError(
            f"query parameter {prefix[:80]!r}...: nested deeper than {MAX_DEPTH} levels (or "
            "refers to itself)"
        )
    if isinstance(value, Mapping):
        keys = [_check_key(sub_key, prefix) for sub_key in value]
        if keys and all(is_array_index(k) for k in keys):
            raise QueryEncodingError(
                f"query parameter {prefix!r}: an object whose keys are all digits ({keys[0]!r}"
                "...) reads back as an array in Truto's bracket form; pass a list, or add a "
                "non-digit key"
            )
        for sub_key, sub_value in zip(keys, value.values(), strict=True):
            _encode_into(pairs, f"{prefix}[{sub_key}]", sub_value, depth + 1)
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        for item in items:
            _encode_into(pairs, f"{prefix}[]", item, depth + 1)
        return
    pairs.append((prefix, encode_scalar(value, key=prefix)))


def is_array_index(segment: str) -> bool:
    """``a[0]``: a bracket segment that qs-style parsers (Truto's included) read as an index."""
    return segment.isascii() and segment.isdigit()

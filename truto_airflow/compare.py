"""Field-by-field equality for the update diff: whether writing a value provably changes nothing.

The rules (numbers as decimals, date-times as instants, id objects by id, custom field values by
JSON meaning, clearing versus empty) are listed in :mod:`truto_airflow.diff` and
docs/data_safety.md.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import pendulum

__all__ = [
    "PASSTHROUGH",
    "custom_fields_mapping",
    "custom_key_changed",
    "values_equal",
]

DATETIME_FIELDS = frozenset({"close_date", "created_at", "updated_at", "last_activity_at"})
NUMBER_FIELDS = frozenset({"amount"})
STRING_FIELDS = frozenset({"name", "description", "currency", "status", "close_time"})
ID_FIELDS = frozenset({"owner", "account"})
PASSTHROUGH = "remote_data"

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_WITH_OFFSET = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|z|[+-]\d{2}(?::?\d{2})?)$"
)
_NUMBER_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


# -- scalar helpers ---------------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _as_decimal(value: Any) -> Decimal | None:
    """A finite Decimal for numbers and numeric strings; ``None`` otherwise (bools excluded)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text or not _NUMBER_TEXT.fullmatch(text):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
            return None
        return number if number.is_finite() else None
    return None


def _numbers_equal(a: Any, b: Any) -> bool:
    da, db = _as_decimal(a), _as_decimal(b)
    return da is not None and db is not None and da == db


def _instant(value: Any) -> dt.datetime | None:
    """The instant a date-time value names, or ``None`` when it names none for sure.

    A date-only value is midnight UTC of that day (how the model sends one). A date-time without
    an offset could be in any zone, and text that is not ISO 8601 is not read at all.
    """
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else None
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            day = dt.date.fromisoformat(text)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
        if _ISO_WITH_OFFSET.match(text):
            parsed = pendulum.parse(text)
            return parsed if isinstance(parsed, dt.datetime) and parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None
    return None


def _datetimes_equal(a: Any, b: Any) -> bool:
    ia, ib = _instant(a), _instant(b)
    return ia is not None and ib is not None and ia == ib


def _json_text(value: Any) -> str | None:
    """The JSON text of a scalar (``true``, ``7``, ``7.5``), ``None`` for anything else."""
    if isinstance(value, bool) or _is_number(value):
        return str(value) if isinstance(value, Decimal) else json.dumps(value)
    return None


# -- generic (custom field) equality ----------------------------------------------------------


def _loose_equal(desired: Any, current: Any) -> bool:
    """Equality by meaning for values of no declared type (custom field values)."""
    if _is_empty(desired) or _is_empty(current):
        return _is_empty(desired) and _is_empty(current)
    if isinstance(desired, Mapping) and isinstance(current, Mapping):
        if "id" in desired and not _is_empty(desired["id"]):
            # An id object: the id decides; other keys given must match too.
            return all(_loose_equal(v, current.get(k)) for k, v in desired.items())
        keys = set(desired) | set(current)
        return all(_loose_equal(desired.get(k), current.get(k)) for k in keys)
    if isinstance(desired, (list, tuple)) and isinstance(current, (list, tuple)):
        return _multiset_equal(list(desired), list(current))
    if isinstance(desired, str) and isinstance(current, str):
        return desired == current
    if isinstance(desired, bool) and isinstance(current, bool):
        return desired is current
    if _is_number(desired) and _is_number(current):
        return _numbers_equal(desired, current)
    # Different JSON types: equal only when the string is the other value's exact JSON text
    # (CRMs such as HubSpot return every property as a string: "true", "7").
    if isinstance(desired, str):
        return _json_text(current) == desired
    if isinstance(current, str):
        return _json_text(desired) == current
    return False


def _multiset_equal(desired: list[Any], current: list[Any]) -> bool:
    if len(desired) != len(current):
        return False
    remaining = list(current)
    for item in desired:
        for i, candidate in enumerate(remaining):
            if _loose_equal(item, candidate):
                del remaining[i]
                break
        else:
            return False
    return True


def custom_fields_mapping(value: Any) -> Mapping[str, Any] | None:
    """The current ``custom_fields`` as a mapping, or ``None`` when its shape proves nothing.

    Read as given: a mapping; a JSON object string (Truto's docs show that shape); a list of
    ``{"name": ..., "value": ...}`` entries with distinct names. ``null`` and any other shape
    (a list of plain values, duplicate names, entries without a value) give ``None``: then no
    key can be proven unchanged.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, Mapping):
        return value
    if isinstance(value, (list, tuple)):
        out: dict[str, Any] = {}
        for entry in value:
            if not isinstance(entry, Mapping) or "value" not in entry:
                return None
            name = entry.get("name")
            if not isinstance(name, str) or name in out:
                return None
            out[name] = entry["value"]
        return out
    return None


# -- typed fields -----------------------------------------------------------------------------


def _ref_id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        ident = value.get("id")
        return None if _is_empty(ident) else str(ident)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


def _ref_name(value: Any) -> str | None:
    if isinstance(value, Mapping):
        name = value.get("name")
        return None if _is_empty(name) else str(name)
    return None


def _id_equal(desired: Any, current: Any) -> bool:
    return _ref_id(desired) is not None and _ref_id(desired) == _ref_id(current)


def _stage_equal(desired: Any, current: Any) -> bool:
    if not isinstance(desired, Mapping):
        return _loose_equal(desired, current)
    if _ref_id(desired) is not None:
        return _ref_id(desired) == _ref_id(current)
    name = _ref_name(desired)
    return name is not None and name == _ref_name(current)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _contacts_equal(desired: Any, current: Any) -> bool:
    want = {_ref_id(c) for c in _as_list(desired)}
    have = {_ref_id(c) for c in _as_list(current)}
    return None not in want and want == have


def _tags_equal(desired: Any, current: Any) -> bool:
    want_ids: set[str] = set()
    want_names: set[str] = set()
    for tag in _as_list(desired):
        ident, name = _ref_id(tag), _ref_name(tag)
        if ident is not None:
            want_ids.add(ident)
        elif name is not None:
            want_names.add(name)
        else:
            return False
    have = _as_list(current)
    have_ids = {_ref_id(t) for t in have}
    have_names = {_ref_name(t) for t in have}
    if not want_ids <= have_ids or not want_names <= have_names:
        return False
    # Every current tag must be one that was asked for (set equality).
    return all(_ref_id(t) in want_ids or _ref_name(t) in want_names for t in have)


def custom_key_changed(have: Mapping[str, Any] | None, key: str, value: Any) -> bool:
    """Whether writing ``value`` to custom field ``key`` changes it (unknown counts as changed)."""
    return have is None or key not in have or not _loose_equal(value, have[key])


def values_equal(name: str, desired: Any, current: Any) -> bool:
    """Whether writing ``desired`` to field ``name`` would leave ``current`` (present in the read)
    as it is. A field the read did not return is unknown: :func:`diff_update` never calls this
    for it."""
    if name == PASSTHROUGH:
        return False
    if _is_empty(desired) or _is_empty(current):
        if name == "custom_fields" and isinstance(desired, Mapping) and not desired:
            return True  # writes no key
        return _is_empty(desired) and _is_empty(current)
    if name in NUMBER_FIELDS:
        return _numbers_equal(desired, current)
    if name in DATETIME_FIELDS:
        return _datetimes_equal(desired, current)
    if name in STRING_FIELDS and isinstance(desired, str):
        return isinstance(current, str) and desired == current
    if name in ID_FIELDS:
        return _id_equal(desired, current)
    if name == "stage":
        return _stage_equal(desired, current)
    if name == "contact":
        return _contacts_equal(desired, current)
    if name == "tags":
        return _tags_equal(desired, current)
    if name == "custom_fields" and isinstance(desired, Mapping):
        have = custom_fields_mapping(current)
        return not any(custom_key_changed(have, k, v) for k, v in desired.items())
    return _loose_equal(desired, current)

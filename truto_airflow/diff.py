"""Type-aware comparison of a desired opportunity update with the opportunity as the CRM has it.

Used by ``skip_unchanged=True`` (send only what differs, skip rows with nothing to change) and by
``dry_run=True`` (the plan: per field, old -> new). The rules are listed in docs/data_safety.md.

One principle: a field is "unchanged" only when the read **proves** that writing it would leave
the CRM as it is. When in doubt the field counts as changed and is sent (a needless write costs a
call; a write judged unchanged by mistake silently loses the user's data). So:

* a field the read did not return (Truto's list endpoints and some CRMs return a subset of the
  fields) is **unknown**, never empty: it is sent, and the plan says its old value is unknown;
  the same for a ``custom_fields`` key the read did not return;
* ``custom_fields`` is read as a mapping, a JSON object string, or a list of distinct
  ``{"name": ..., "value": ...}`` entries; in any other shape every key written is changed;
* numbers (``amount``) compare as exact decimals: ``100 == 100.0 == "100.00"``;
* date-time fields of the model (``close_date``, ``created_at`` ...) compare as instants in any
  offset; a date-only value means midnight UTC of that day (as the model sends it); a date-time
  without an offset, or text that is not ISO 8601, proves nothing;
* id objects (``owner``, ``account``): ``{"id": "x"}`` equals ``{"id": "x", "name": "..."}``;
  ``stage`` by id when the update gives one, else by name; ``contact`` (ids) and ``tags`` (ids,
  or names for tags given by name) compare as sets;
* string fields compare as strings, exactly (case, whitespace; ``"5"`` is not ``5``);
* custom field values have no declared type: values of the same JSON type compare by value
  (numbers as decimals, lists as multisets, id objects by id); values of different types are
  equal only when the string is exactly the other's JSON text (``"true" == true``,
  ``"7" == 7``, but ``"7.0" != 7``); a string that looks like a date is still a string;
* clearing (``None``) equals a value that is present and already empty (``null``, ``""``,
  ``[]``, ``{}``).

``remote_data`` goes to the CRM untransformed, in the CRM's write shape, which need not match
anything the GET returns; it cannot be compared reliably, so when given it is **always sent** and
counts as a change (a row with ``remote_data`` is never "unchanged"). The plan says so.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pendulum

from truto_airflow.models.opportunity import Opportunity, OpportunityUpdate, parse_update_body

__all__ = [
    "REMOTE_DATA_NOTE",
    "UNKNOWN_NOTE",
    "FieldChange",
    "UpdateDiff",
    "apply_update",
    "custom_fields_mapping",
    "diff_update",
    "values_equal",
]

DATETIME_FIELDS = frozenset({"close_date", "created_at", "updated_at", "last_activity_at"})
NUMBER_FIELDS = frozenset({"amount"})
STRING_FIELDS = frozenset({"name", "description", "currency", "status", "close_time"})
ID_FIELDS = frozenset({"owner", "account"})
PASSTHROUGH = "remote_data"

REMOTE_DATA_NOTE = (
    "remote_data is passed to the CRM as is and cannot be compared with what it returns, "
    "so it is always sent"
)
UNKNOWN_NOTE = "not returned by the read of the current state, so its value is unknown: it is sent"

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


def _custom_key_changed(have: Mapping[str, Any] | None, key: str, value: Any) -> bool:
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
        return not any(_custom_key_changed(have, k, v) for k, v in desired.items())
    return _loose_equal(desired, current)


# -- the diff ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class FieldChange:
    """One field that would change: what the CRM has (when the read returned it), what would be
    written, and a note when something needs saying (unknown old value, ``remote_data``)."""

    old: Any
    new: Any
    note: str | None = None
    #: False when the read did not return the field: ``old`` is then meaningless.
    known: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = (
            {"old": self.old, "new": self.new} if self.known else {"new": self.new}
        )
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class UpdateDiff:
    """The result of comparing one update with the current opportunity.

    ``body`` is the minimal PATCH body (JSON-ready): the changed fields (``custom_fields`` cut to
    the changed keys), plus ``keep`` fields and uncompared fields that ride along when anything is
    written. It is empty when there is nothing to change. ``unknown`` names the changed fields
    (or ``custom_fields`` keys' field) the read did not prove: a fuller read may settle them.
    """

    changes: Mapping[str, FieldChange]
    unchanged: tuple[str, ...]
    body: dict[str, Any]
    carried: tuple[str, ...] = ()
    uncompared: tuple[str, ...] = field(default=())
    unknown: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def changed_fields(self) -> list[str]:
        return list(self.changes)

    def plan(self) -> dict[str, dict[str, Any]]:
        """``{field: {"old": ..., "new": ...}}`` for the fields that would change."""
        return {name: change.to_dict() for name, change in self.changes.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (plan, unchanged fields, fields sent without a change)."""
        return {
            "changes": self.plan(),
            "unchanged": list(self.unchanged),
            "carried": list(self.carried),
            "uncompared": list(self.uncompared),
            "unknown": list(self.unknown),
        }

    def minimal_update(self) -> OpportunityUpdate | None:
        """The minimal body as an :class:`OpportunityUpdate`, ``None`` when nothing changes."""
        return OpportunityUpdate.model_validate(self.body) if self.body else None


def _current_mapping(current: Mapping[str, Any] | Opportunity | None) -> dict[str, Any]:
    if current is None:
        return {}
    if isinstance(current, Opportunity):
        # Only what the read returned: a field the model defaults to None was not read.
        return current.model_dump(mode="json", exclude_unset=True)
    return dict(current) if isinstance(current, Mapping) else {}


def _desired_body(desired: OpportunityUpdate | Mapping[str, Any]) -> dict[str, Any]:
    return parse_update_body(desired).to_body()


def _custom_fields_change(value: Mapping[str, Any], old: Any) -> FieldChange | None:
    """The keys of ``value`` that change (``None`` when none does), old values where known."""
    have = custom_fields_mapping(old)
    changed = {k: v for k, v in value.items() if _custom_key_changed(have, k, v)}
    if not changed:
        return None
    missing = [k for k in changed if have is None or k not in have]
    note = None
    if have is None:
        note = (
            "custom_fields in the current state is not a mapping of keys to values, so no key "
            "can be compared: every key given is sent"
        )
    elif missing:
        note = f"key(s) {', '.join(sorted(missing))} {UNKNOWN_NOTE}"
    old_values = {k: _jsonable(have[k]) for k in changed if have is not None and k in have}
    return FieldChange(old=old_values, new=_jsonable(changed), note=note)


def diff_update(
    desired: OpportunityUpdate | Mapping[str, Any],
    current: Mapping[str, Any] | Opportunity | None,
    *,
    keep: Collection[str] = (),
    uncompared: Collection[str] = (),
) -> UpdateDiff:
    """Compare ``desired`` (a PATCH body) with ``current`` (what the read returned).

    :param keep: fields sent even when unchanged, if anything is written at all (e.g. the fields
        Teamleader requires in every update).
    :param uncompared: fields never compared and never a reason to write on their own, but sent
        along as given when the row is written (e.g. fields the CRM is documented not to apply,
        under ``unsupported_fields="warn"``).
    """
    body = _desired_body(desired)
    have = _current_mapping(current)
    changes: dict[str, FieldChange] = {}
    unchanged: list[str] = []
    unknown: list[str] = []
    minimal: dict[str, Any] = {}
    skipped: list[str] = []
    for name, value in body.items():
        if name == PASSTHROUGH:
            changes[name] = FieldChange(old=None, new=_jsonable(value), note=REMOTE_DATA_NOTE)
            minimal[name] = value
            continue
        if name in uncompared:
            skipped.append(name)
            continue
        if name not in have:
            changes[name] = FieldChange(None, _jsonable(value), UNKNOWN_NOTE, known=False)
            minimal[name] = value
            unknown.append(name)
            continue
        old = have[name]
        if name == "custom_fields" and isinstance(value, Mapping) and value:
            change = _custom_fields_change(value, old)
            if change is None:
                unchanged.append(name)
            else:
                changes[name] = change
                minimal[name] = {k: value[k] for k in change.new}
                if change.note is not None:
                    unknown.append(name)
            continue
        if values_equal(name, value, old):
            unchanged.append(name)
        else:
            changes[name] = FieldChange(old=_jsonable(old), new=_jsonable(value))
            minimal[name] = value
    carried: list[str] = []
    if changes:
        for name in body:
            if name in minimal:
                continue
            if name in keep or name in skipped:
                minimal[name] = body[name]
                carried.append(name)
    ordered = {name: minimal[name] for name in body if name in minimal}
    return UpdateDiff(
        changes=changes,
        unchanged=tuple(unchanged),
        body=ordered,
        carried=tuple(carried),
        uncompared=tuple(skipped),
        unknown=tuple(unknown),
    )


def apply_update(
    current: Mapping[str, Any] | Opportunity | None,
    update: OpportunityUpdate | Mapping[str, Any],
) -> dict[str, Any]:
    """The opportunity after a PATCH, as far as the unified fields go (for plans and tests).

    ``custom_fields`` merge key by key (into what :func:`custom_fields_mapping` reads of the
    current value); ``remote_data`` is not applied (its effect is the CRM's).
    """
    state = _current_mapping(current)
    for name, value in _desired_body(update).items():
        if name == PASSTHROUGH:
            continue
        if name == "custom_fields" and isinstance(value, Mapping):
            merged = dict(custom_fields_mapping(state.get(name)) or {})
            merged.update(value)
            state[name] = merged
        else:
            state[name] = value
    return state

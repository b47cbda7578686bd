"""Type-aware comparison of a desired opportunity update with the opportunity as the CRM has it.

Used by ``skip_unchanged=True`` (send only what differs, skip rows with nothing to change) and by
``dry_run=True`` (the plan: per field, old -> new).

Equality is by meaning, not by JSON text:

* numbers: ``100 == 100.0 == "100.00"`` (exact decimal comparison, no float rounding);
* date-times: the same instant in any offset is equal; a date-only value equals midnight of that
  day (in the other value's own offset);
* id objects (``owner``, ``account``): ``{"id": "x"}`` equals ``{"id": "x", "name": "..."}``;
* ``stage``: by id when the update gives one, else by name;
* ``contact`` (ids) and ``tags`` (ids, or names for tags given by name) compare as sets;
* ``custom_fields``: only the keys being written are compared, each with the rules above (lists
  of values compare as multisets, so a multi-select in another order is equal);
* other strings: exact (case and whitespace matter);
* clearing (``None``) equals a value that is already empty (missing, ``null``, ``""``, ``[]``).

``remote_data`` goes to the CRM untransformed, in the CRM's write shape, which need not match
anything the GET returns; it cannot be compared reliably, so when given it is **always sent** and
counts as a change (a row with ``remote_data`` is never "unchanged"). The plan says so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from truto_airflow.models._types import parse_datetime
from truto_airflow.models.opportunity import Opportunity, OpportunityUpdate, parse_update_body

__all__ = [
    "REMOTE_DATA_NOTE",
    "FieldChange",
    "UpdateDiff",
    "apply_update",
    "diff_update",
    "values_equal",
]

DATETIME_FIELDS = frozenset({"close_date", "created_at", "updated_at", "last_activity_at"})
NUMBER_FIELDS = frozenset({"amount"})
ID_FIELDS = frozenset({"owner", "account"})
PASSTHROUGH = "remote_data"

REMOTE_DATA_NOTE = (
    "remote_data is passed to the CRM as is and cannot be compared with what it returns, "
    "so it is always sent"
)

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|z|[+-]\d{2}:?\d{2})?)?$"
)


# -- scalar helpers ---------------------------------------------------------------------------


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


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
        if not text or not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
            return None
        return number if number.is_finite() else None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _numbers_equal(a: Any, b: Any) -> bool:
    da, db = _as_decimal(a), _as_decimal(b)
    if da is None or db is None:
        return bool(a == b)
    return da == db


def _as_datetime(value: Any) -> tuple[dt.datetime, bool] | None:
    """``(aware datetime, date_only)`` or ``None`` when the value is not a date-time."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return aware, False
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc), True
    if isinstance(value, str) and _ISO_DATETIME.match(value.strip()):
        try:
            return parse_datetime(value), bool(_DATE_ONLY.match(value.strip()))
        except ValueError:
            return None
    return None


def _datetimes_equal(a: Any, b: Any) -> bool:
    pa, pb = _as_datetime(a), _as_datetime(b)
    if pa is None or pb is None:
        return bool(a == b)
    (va, a_date), (vb, b_date) = pa, pb
    if a_date and b_date:
        return va.date() == vb.date()
    if a_date or b_date:
        day, moment = (va, vb) if a_date else (vb, va)
        return moment.date() == day.date() and moment.timetz().replace(tzinfo=None) == dt.time()
    return va == vb


def _bool_like(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return None


# -- generic (custom field) equality ----------------------------------------------------------


def _loose_equal(desired: Any, current: Any) -> bool:
    """Equality by meaning for values of unknown type (custom fields, unmodelled fields)."""
    if _is_empty(desired) or _is_empty(current):
        return _is_empty(desired) and _is_empty(current)
    if isinstance(desired, bool) or isinstance(current, bool):
        bd, bc = _bool_like(desired), _bool_like(current)
        return bd is not None and bd == bc
    if _is_number(desired) or _is_number(current):
        return _as_decimal(desired) is not None and _numbers_equal(desired, current)
    if isinstance(desired, str) and isinstance(current, str):
        if desired == current:
            return True
        if _as_datetime(desired) is not None and _as_datetime(current) is not None:
            return _datetimes_equal(desired, current)
        return False
    if isinstance(desired, Mapping) and isinstance(current, Mapping):
        if "id" in desired and not _is_empty(desired["id"]):
            # An id object: the id decides; other keys given must match too.
            return all(_loose_equal(v, current.get(k)) for k, v in desired.items())
        keys = set(desired) | set(current)
        return all(_loose_equal(desired.get(k), current.get(k)) for k in keys)
    if isinstance(desired, (list, tuple)) and isinstance(current, (list, tuple)):
        return _multiset_equal(list(desired), list(current))
    return bool(desired == current)


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


def _empty_for(name: str, desired: Any, current: Any) -> bool | None:
    """Clearing semantics: ``None`` when neither side is empty, else whether both are."""
    if _is_empty(desired) or _is_empty(current):
        return _is_empty(desired) and _is_empty(current)
    return None


def values_equal(name: str, desired: Any, current: Any) -> bool:
    """Whether writing ``desired`` to field ``name`` would leave ``current`` as it is."""
    if name == PASSTHROUGH:
        return False
    empty = _empty_for(name, desired, current)
    if empty is not None:
        return empty
    if name in NUMBER_FIELDS:
        return _numbers_equal(desired, current)
    if name in DATETIME_FIELDS:
        return _datetimes_equal(desired, current)
    if name in ID_FIELDS:
        return _id_equal(desired, current)
    if name == "stage":
        return _stage_equal(desired, current)
    if name == "contact":
        return _contacts_equal(desired, current)
    if name == "tags":
        return _tags_equal(desired, current)
    if name == "custom_fields":
        if not isinstance(desired, Mapping):
            return _loose_equal(desired, current)
        have = current if isinstance(current, Mapping) else {}
        return all(_loose_equal(v, have.get(k)) for k, v in desired.items())
    if isinstance(desired, str) and isinstance(current, str):
        return desired == current
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
    """One field that would change: what the CRM has, what would be written."""

    old: Any
    new: Any
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"old": self.old, "new": self.new}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class UpdateDiff:
    """The result of comparing one update with the current opportunity.

    ``body`` is the minimal PATCH body (JSON-ready): the changed fields (``custom_fields`` cut to
    the changed keys), plus ``keep`` fields and uncompared fields that ride along when anything is
    written. It is empty when there is nothing to change.
    """

    changes: Mapping[str, FieldChange]
    unchanged: tuple[str, ...]
    body: dict[str, Any]
    carried: tuple[str, ...] = ()
    uncompared: tuple[str, ...] = field(default=())

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
        }

    def minimal_update(self) -> OpportunityUpdate | None:
        """The minimal body as an :class:`OpportunityUpdate`, ``None`` when nothing changes."""
        return OpportunityUpdate.model_validate(self.body) if self.body else None


def _current_mapping(current: Mapping[str, Any] | Opportunity | None) -> dict[str, Any]:
    if current is None:
        return {}
    if isinstance(current, Opportunity):
        return current.model_dump(mode="json")
    return dict(current)


def _desired_body(desired: OpportunityUpdate | Mapping[str, Any]) -> dict[str, Any]:
    return parse_update_body(desired).to_body()


def diff_update(
    desired: OpportunityUpdate | Mapping[str, Any],
    current: Mapping[str, Any] | Opportunity | None,
    *,
    keep: Collection[str] = (),
    uncompared: Collection[str] = (),
) -> UpdateDiff:
    """Compare ``desired`` (a PATCH body) with ``current`` (the GET answer).

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
        old = have.get(name)
        if name == "custom_fields" and isinstance(value, Mapping):
            old_map = old if isinstance(old, Mapping) else {}
            changed_keys = {k: v for k, v in value.items() if not _loose_equal(v, old_map.get(k))}
            if changed_keys:
                changes[name] = FieldChange(
                    old={k: _jsonable(old_map.get(k)) for k in changed_keys},
                    new=_jsonable(changed_keys),
                )
                minimal[name] = changed_keys
            else:
                unchanged.append(name)
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
    )


def apply_update(
    current: Mapping[str, Any] | Opportunity | None,
    update: OpportunityUpdate | Mapping[str, Any],
) -> dict[str, Any]:
    """The opportunity after a PATCH, as far as the unified fields go (for plans and tests).

    ``custom_fields`` merge key by key; ``remote_data`` is not applied (its effect is the CRM's).
    """
    state = _current_mapping(current)
    for name, value in _desired_body(update).items():
        if name == PASSTHROUGH:
            continue
        if name == "custom_fields" and isinstance(value, Mapping):
            merged = dict(state.get(name) or {})
            merged.update(value)
            state[name] = merged
        else:
            state[name] = value
    return state

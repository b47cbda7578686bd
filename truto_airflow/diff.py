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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from truto_airflow.compare import (
    PASSTHROUGH,
    custom_fields_mapping,
    custom_key_changed,
    values_equal,
)
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

REMOTE_DATA_NOTE = (
    "remote_data is passed to the CRM as is and cannot be compared with what it returns, "
    "so it is always sent"
)
UNKNOWN_NOTE = "not returned by the read of the current state, so its value is unknown: it is sent"

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
    changed = {k: v for k, v in value.items() if custom_key_changed(have, k, v)}
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

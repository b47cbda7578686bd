"""Validating and applying an opportunity update the way the documented CRM would.

Rules, all from the docs' support table (``truto_airflow.capabilities``):

* body types are checked first (400 naming the field), because Truto validates the unified
  schema before it calls the CRM;
* fields the integration requires (Teamleader: name, account, contact) must be present:
  400 with ``truto_error_insight.missing_required_body_fields``;
* ``status`` must be one of the integration's documented values, where the docs enumerate them:
  otherwise the *CRM* rejects it, so it is a 422 remote error;
* fields the integration does not support are silently dropped (the CRM ignores them);
  integrations without a table (Salesforce, Zoho CRM) apply every field;
* ``remote_data`` is merged into the record's passthrough data for every integration;
* ``custom_fields`` are set key by key (each custom field is its own CRM property, so keys that
  are not sent keep their values; ``null`` clears one);
* a ``stage`` given by id gets its name from the account's pipeline (and the other way round), as
  the CRM would report it on the next read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from truto_airflow.capabilities import load_opportunity_capabilities
from truto_airflow.emulator.errors import ApiError
from truto_airflow.emulator.vendor import raw_error

__all__ = ["apply_update", "validate_update"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_ref(value: Any, *, id_required: bool = True) -> bool:
    if not isinstance(value, dict):
        return False
    if id_required and not isinstance(value.get("id"), str):
        return False
    return all(isinstance(value.get(k), str) for k in ("id", "name") if value.get(k) is not None)


def _is_ref_list(value: Any, *, id_required: bool = True) -> bool:
    return isinstance(value, list) and all(_is_ref(v, id_required=id_required) for v in value)


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "currency": (lambda v: isinstance(v, str), "a string"),
    "status": (lambda v: isinstance(v, str), "a string"),
    "close_time": (lambda v: isinstance(v, str), "a string"),
    "amount": (_is_number, "a number"),
    "close_date": (_is_datetime, "an ISO 8601 date-time string"),
    "created_at": (_is_datetime, "an ISO 8601 date-time string"),
    "account": (_is_ref, "an object with a string 'id'"),
    "owner": (_is_ref, "an object with a string 'id'"),
    "stage": (lambda v: _is_ref(v, id_required=False), "an object with string 'id'/'name'"),
    "contact": (_is_ref_list, "an array of objects with a string 'id'"),
    "tags": (lambda v: _is_ref_list(v, id_required=False), "an array of {id, name} objects"),
    "custom_fields": (lambda v: isinstance(v, dict), "an object"),
    "remote_data": (lambda v: isinstance(v, dict), "an object"),
}


def validate_update(integration: str, body: Any) -> None:
    """Raise :class:`ApiError` when Truto or the CRM would reject ``body``."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    for name, value in body.items():
        check = _CHECKS.get(name)
        if check is None or value is None:
            continue  # unknown fields are ignored; null clears a field
        predicate, expected = check
        if not predicate(value):
            raise ApiError(400, f"Invalid body field '{name}': expected {expected}.")
    caps = load_opportunity_capabilities()
    missing = sorted(f for f in caps.required_fields(integration) if body.get(f) in (None, [], {}))
    if missing:
        raise ApiError(
            400,
            f"Missing required body fields: {', '.join(missing)}",
            insight={
                "missing_required_body_fields": {
                    "description": "These body fields are required by the integration.",
                    "value": missing,
                }
            },
        )
    allowed = caps.status_values(integration)
    status = body.get("status")
    if allowed is not None and status is not None and status not in allowed:
        message = f"Invalid status '{status}'. Allowed values: {', '.join(sorted(allowed))}"
        raise ApiError(422, message, remote=True, raw_response=raw_error(integration, 422, message))


def _resolve_stage(value: dict[str, Any], stages: list[dict[str, Any]]) -> dict[str, Any]:
    for stage in stages:
        if value.get("id") is not None and stage.get("id") == value["id"]:
            return {"id": stage["id"], "name": stage.get("name")}
        if value.get("id") is None and stage.get("name") == value.get("name"):
            return {"id": stage["id"], "name": stage.get("name")}
    return dict(value)


def apply_update(
    integration: str,
    record: dict[str, Any],
    body: dict[str, Any],
    now: str,
    stages: list[dict[str, Any]] | None = None,
) -> list[str]:
    """Apply the supported fields of ``body`` to ``record`` in place; return the applied names."""
    caps = load_opportunity_capabilities()
    supported = caps.supported_fields(integration)
    applied = []
    for name, value in body.items():
        if name not in supported:
            continue
        if name == "remote_data":
            record["remote_data"] = {**record.get("remote_data", {}), **(value or {})}
        elif name == "custom_fields" and value is not None:
            merged = {**(record.get("custom_fields") or {}), **value}
            record["custom_fields"] = {k: v for k, v in merged.items() if v is not None}
        elif name == "stage" and isinstance(value, dict):
            record["stage"] = _resolve_stage(value, stages or [])
        elif value is None:
            record.pop(name, None)
        else:
            record[name] = value
        applied.append(name)
    record["updated_at"] = now
    return applied

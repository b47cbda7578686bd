"""Vendor-shaped ("raw") bodies: what the CRM behind Truto would have answered.

Used for ``truto_response_format=raw``, for the unified record's ``remote_data`` and for the
``raw_response`` of remote errors. Shapes follow each vendor's public API closely enough for a
client to notice that it is *not* the unified shape; they are not complete vendor schemas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["raw_error", "raw_object", "raw_response"]


def _id(ref: Any) -> Any:
    return ref.get("id") if isinstance(ref, dict) else None


def raw_object(integration: str, record: dict[str, Any]) -> dict[str, Any]:
    """The vendor's own representation of one opportunity (no envelope)."""
    if integration == "hubspot":
        props = {
            "dealname": record.get("name"),
            "amount": None if record.get("amount") is None else f"{record['amount']:g}",
            "closedate": record.get("close_date"),
            "dealstage": _id(record.get("stage")),
            "pipeline": "default",
            "hubspot_owner_id": _id(record.get("owner")),
            "description": record.get("description"),
            "createdate": record.get("created_at"),
            "hs_lastmodifieddate": record.get("updated_at"),
            "hs_object_id": record["id"],
            **{k: v for k, v in (record.get("custom_fields") or {}).items()},
        }
        return {
            "id": record["id"],
            "properties": props,
            "createdAt": record.get("created_at"),
            "updatedAt": record.get("updated_at"),
            "archived": False,
        }
    if integration == "pipedrive":
        return {
            "id": record["id"],
            "title": record.get("name"),
            "value": record.get("amount"),
            "currency": record.get("currency"),
            "status": record.get("status"),
            "stage_id": _id(record.get("stage")),
            "user_id": {"id": _id(record.get("owner"))},
            "org_id": {"value": _id(record.get("account"))},
            "person_id": {"value": _id((record.get("contact") or [None])[0])},
            "expected_close_date": (record.get("close_date") or "")[:10] or None,
            "close_time": record.get("close_time"),
            "add_time": record.get("created_at"),
            "update_time": record.get("updated_at"),
        }
    if integration == "salesforce":
        return {
            "attributes": {
                "type": "Opportunity",
                "url": f"/services/data/v59.0/sobjects/Opportunity/{record['id']}",
            },
            "Id": record["id"],
            "Name": record.get("name"),
            "Amount": record.get("amount"),
            "CloseDate": (record.get("close_date") or "")[:10] or None,
            "StageName": (record.get("stage") or {}).get("name"),
            "OwnerId": _id(record.get("owner")),
            "AccountId": _id(record.get("account")),
            "Description": record.get("description"),
            "CreatedDate": record.get("created_at"),
            "LastModifiedDate": record.get("updated_at"),
        }
    if integration == "teamleader":
        return {
            "id": record["id"],
            "title": record.get("name"),
            "lead": {
                "customer": {"type": "company", "id": _id(record.get("account"))},
                "contact_person": {"id": _id((record.get("contact") or [None])[0])},
            },
            "updated_at": record.get("updated_at"),
        }
    if integration == "attio":
        return {
            "id": {"object_id": "deals", "record_id": record["id"]},
            "created_at": record.get("created_at"),
            "values": {
                "name": [{"value": record.get("name")}],
                "value": [{"currency_value": record.get("amount")}],
                "stage": [{"status": record.get("status")}],
                "owner": [{"referenced_actor_id": _id(record.get("owner"))}],
            },
        }
    # A generic shape for everything else.
    return {k: v for k, v in record.items() if k not in ("remote_data", "urls")}


def raw_response(integration: str, record: dict[str, Any]) -> Any:
    """The full vendor response body (with the vendor's envelope, where it has one)."""
    obj = raw_object(integration, record)
    if integration == "pipedrive":
        return {"success": True, "data": obj}
    if integration in ("teamleader", "attio"):
        return {"data": obj}
    return obj


def raw_error(integration: str, status: int, message: str) -> Any:
    """A vendor-ish error body, as Truto forwards it in ``raw_response``."""
    if integration == "hubspot":
        return {"status": "error", "message": message, "category": "VALIDATION_ERROR"}
    if integration == "pipedrive":
        return {"success": False, "error": message, "errorCode": status}
    if integration == "salesforce":
        return [{"message": message, "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"}]
    if integration == "attio":
        return {"status_code": status, "type": "invalid_request_error", "message": message}
    return {"errors": [{"status": status, "title": message}]}

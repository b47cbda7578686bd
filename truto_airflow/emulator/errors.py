"""Truto's error body format (reference section 4.1).

Every error is ``{"statusCode", "error", "message"}``. Errors that come from the CRM behind Truto
add ``truto_is_remote_error: true``, the vendor body as ``raw_response`` and a
``truto_error_insight.remote_error`` entry; unified-API insights use ``{description, value}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ApiError", "ErrorDetails", "error_body"]


class ErrorDetails(TypedDict, total=False):
    """What an error body may say beyond its status and message."""

    #: The error comes from the CRM behind Truto (adds ``truto_is_remote_error: true``).
    remote: bool
    #: The CRM's own error body, for a remote error.
    raw_response: Any
    #: ``truto_error_insight`` entries (a remote error gets ``remote_error`` by default).
    insight: dict[str, Any] | None


def error_body(status: int, message: str, **details: Unpack[ErrorDetails]) -> dict[str, Any]:
    """Build an error body exactly as Truto documents it."""
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    insights = dict(details.get("insight") or {})
    if details.get("remote", False):
        raw_response = details.get("raw_response")
        body["truto_is_remote_error"] = True
        body["raw_response"] = raw_response
        insights.setdefault(
            "remote_error",
            {"description": "The remote API returned an error.", "value": raw_response},
        )
    if insights:
        body["truto_error_insight"] = insights
    return body


class ApiError(Exception):
    """Raised inside handlers; the app turns it into a Truto error response (``headers`` are
    added to it)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Unpack[ErrorDetails],
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(status, message, **details)
        self.headers = dict(headers or {})

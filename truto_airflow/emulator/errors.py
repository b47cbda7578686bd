"""Truto's error body format (reference section 4.1).

Every error is ``{"statusCode", "error", "message"}``. Errors that come from the CRM behind Truto
add ``truto_is_remote_error: true``, the vendor body as ``raw_response`` and a
``truto_error_insight.remote_error`` entry; unified-API insights use ``{description, value}``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["ApiError", "error_body"]


def error_body(
    status: int,
    message: str,
    *,
    remote: bool = False,
    raw_response: Any = None,
    insight: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build an error body exactly as Truto documents it."""
    body: dict[str, Any] = {
        "statusCode": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    insights = dict(insight or {})
    if remote:
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
    """Raised inside handlers; the app turns it into a Truto error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        remote: bool = False,
        raw_response: Any = None,
        insight: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(
            status, message, remote=remote, raw_response=raw_response, insight=insight
        )
        self.headers = dict(headers or {})

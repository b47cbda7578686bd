"""Errors raised by truto-airflow: one tree, so ``except TrutoError`` catches them all.

Hierarchy (``*`` = also :class:`~airflow.sdk.exceptions.AirflowFailException`: the task fails at
once, because an Airflow retry of the same request cannot succeed; the rest are plain
``AirflowException`` and an Airflow task retry may help)::

    TrutoError
    ├── TrutoInputError *            (also ValueError) bad input, caught before any request
    │   └── TrutoConfigError *       the connection or hook arguments cannot be used
    ├── JsonValueError               (json_values; also ValueError) a value that is not clean
    │                                JSON; callers turn it into a TrutoInputError naming the field
    ├── QueryEncodingError           (query; also ValueError) a value Truto's query convention
    │                                cannot carry; likewise turned into a TrutoInputError
    ├── TrutoNetworkError            no HTTP answer (connect error, timeout, dropped connection)
    ├── TrutoPaginationError *       a list walk cannot end (cycle, page cap, not a list page)
    ├── TrutoAPIError                Truto answered with an error status (see STATUS_POLICY)
    │   ├── TrutoResponseError       a 2xx that is not the JSON object the endpoint returns
    │   ├── TrutoClientError *       4xx the user must fix
    │   │   ├── TrutoValidationError *        400, 409, 422
    │   │   ├── TrutoAuthError *              401, 403
    │   │   ├── TrutoNotFoundError *          404
    │   │   └── TrutoMethodNotAllowedError *  405
    │   ├── TrutoRateLimitError      429
    │   └── TrutoServerError         5xx
    │       └── TrutoAccountBlockedError *    503 (Truto: a blocked integrated account)
    ├── TrutoBulkError               a bulk run failed (too many failed rows, or it stopped
    │   │                            early); a task retry sends only the rows not applied yet
    │   └── TrutoBulkFatalError *    ... and no failure was transient: a retry cannot help
    ├── UnknownIntegrationError      (capabilities; also KeyError) no support table for a CRM
    ├── LedgerStoreError             (bulk.ledger; also RuntimeError) the run's ledger failed
    ├── BulkRunError                 (bulk.supervise; also RuntimeError) the engine itself failed
    └── RunStopRequested             (bulk.supervise; also RuntimeError) the run was told to stop

What each HTTP status means (error class, hook retry, task retry, bulk account closing) is
written once, in :data:`STATUS_POLICY`; everything else (``retry.RETRY_STATUSES``, the bulk
engine's closed accounts, the bulk operator's "transient" verdict) reads it from there.

``str(error)`` is one readable line and never contains the API token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

__all__ = [
    "STATUS_POLICY",
    "StatusPolicy",
    "TrutoAPIError",
    "TrutoAccountBlockedError",
    "TrutoAuthError",
    "TrutoBulkError",
    "TrutoBulkFatalError",
    "TrutoClientError",
    "TrutoConfigError",
    "TrutoError",
    "TrutoInputError",
    "TrutoMethodNotAllowedError",
    "TrutoNetworkError",
    "TrutoNotFoundError",
    "TrutoPaginationError",
    "TrutoRateLimitError",
    "TrutoResponseError",
    "TrutoServerError",
    "TrutoValidationError",
    "error_class_for_status",
    "status_policy",
]

#: Longest error text kept from a response (message, raw response): enough to act on, small
#: enough for logs and XCom.
MAX_ERROR_TEXT = 500


def truncate(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


class TrutoError(AirflowException):
    """The root of every error truto-airflow raises (``except TrutoError`` catches them all)."""


class TrutoInputError(TrutoError, AirflowFailException, ValueError):
    """Bad input caught before any request was sent; the message names the field and the fix."""


class TrutoConfigError(TrutoInputError):
    """The Airflow connection (or hook arguments) cannot be used as configured."""


class TrutoNetworkError(TrutoError):
    """The request never got an HTTP answer (connect error, timeout, dropped connection)."""

    def __init__(self, message: str, *, method: str, path: str, attempts: int) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.attempts = attempts


class TrutoPaginationError(TrutoError, AirflowFailException):
    """A list walk cannot end: its ``next_cursor`` came back to an earlier page (a cycle), it
    passed the page cap, or a page was not a list envelope. Reading on would loop or guess, and
    an Airflow retry would walk into the same wall, so the task fails at once."""


class TrutoAPIError(TrutoError):
    """Truto answered with a non-2xx status.

    Attributes mirror Truto's error body (``statusCode``, ``error``, ``message``,
    ``truto_is_remote_error``, ``raw_response``, ``truto_error_insight``) plus the response headers
    and the request's method and path (the path never carries the token; query strings are left
    out because ``remote_query`` may hold customer data).
    """

    def __init__(
        self,
        *,
        status_code: int,
        message: str,
        error: str | None = None,
        is_remote_error: bool = False,
        raw_response: Any = None,
        error_insight: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "",
        path: str = "",
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code  # type: ignore[assignment]  # int, not HTTPStatus
        self.error = error
        self.message = message
        self.is_remote_error = is_remote_error
        self.raw_response = raw_response
        self.error_insight: dict[str, Any] = dict(error_insight or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.method = method
        self.path = path
        self.attempts = attempts
        super().__init__(self._one_line())

    @property
    def missing_required_fields(self) -> list[str]:
        """Body fields Truto reported as required and missing (``truto_error_insight``)."""
        return _insight_values(self.error_insight, "missing_required_body_fields")

    @property
    def missing_required_query_parameters(self) -> list[str]:
        """Query parameters Truto reported as required and missing."""
        return _insight_values(self.error_insight, "missing_required_query_parameters")

    @property
    def policy(self) -> StatusPolicy:
        """What this status means for retries and bulk accounts (:data:`STATUS_POLICY`)."""
        return status_policy(self.status_code)

    @property
    def retry_after(self) -> str | None:
        """The raw ``Retry-After`` header, when Truto (or the CRM behind it) sent one."""
        return self.headers.get("retry-after")

    def _one_line(self) -> str:
        status = f"{self.status_code} {self.error}" if self.error else str(self.status_code)
        where = f" on {self.method} {self.path}" if self.method else ""
        parts = [f"Truto API error {status}{where}: {self.message or '(no message)'}"]
        if self.is_remote_error:
            parts.append("(reported by the CRM behind Truto)")
        missing = self.missing_required_fields
        if missing:
            parts.append(f"; missing required body fields: {', '.join(missing)}")
        missing_q = self.missing_required_query_parameters
        if missing_q:
            parts.append(f"; missing required query parameters: {', '.join(missing_q)}")
        if self.attempts > 1:
            parts.append(f"(after {self.attempts} attempts)")
        return truncate(" ".join(parts).replace(" ;", ";").replace("\n", " "), 2 * MAX_ERROR_TEXT)

    def with_hint(self, hint: str) -> TrutoAPIError:
        """The same error (same class, status, body, headers) with ``hint`` added to its message."""
        return type(self)(
            status_code=self.status_code,
            message=f"{self.message}. {hint}" if self.message else hint,
            error=self.error,
            is_remote_error=self.is_remote_error,
            raw_response=self.raw_response,
            error_insight=self.error_insight,
            headers=self.headers,
            method=self.method,
            path=self.path,
            attempts=self.attempts,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for XCom and bulk outcome reports)."""
        return {
            "status_code": self.status_code,
            "error": self.error,
            "message": self.message,
            "is_remote_error": self.is_remote_error,
            "error_insight": self.error_insight,
        }


def _insight_values(insight: Mapping[str, Any], key: str) -> list[str]:
    entry = insight.get(key)
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str) and value:
        return [value]
    return []


class TrutoResponseError(TrutoAPIError):
    """Truto answered 2xx, but not with the JSON object the endpoint returns (a proxy's HTML
    login page, a truncated or garbled body, a JSON list or string). Not a success: the write may
    or may not have been applied. ``status_code`` is the 2xx status; not retried by the hook (a
    task retry re-sends with the same Idempotency-Key, which Truto replays if it was applied)."""


class TrutoClientError(TrutoAPIError, AirflowFailException):
    """A 4xx the user must fix: retrying the same request cannot succeed."""


class TrutoValidationError(TrutoClientError):
    """400, 409 or 422: Truto or the CRM rejected the request body or parameters."""


class TrutoAuthError(TrutoClientError):
    """401 or 403: bad or expired token, missing scopes, or the account needs re-authentication."""


class TrutoNotFoundError(TrutoClientError):
    """404: the opportunity, or the integrated account, is not visible to this token."""


class TrutoMethodNotAllowedError(TrutoClientError):
    """405: for example a write to a sandbox integrated account, which Truto keeps read-only."""


class TrutoRateLimitError(TrutoAPIError):
    """429: retried by the hook after ``Retry-After``; raised when the retries ran out."""


class TrutoServerError(TrutoAPIError):
    """5xx: Truto or the CRM failed; 500/502/504 are retried by the hook."""


class TrutoAccountBlockedError(TrutoServerError, AirflowFailException):
    """503: Truto uses it for a blocked integrated account (contact Truto support); not retried."""


class TrutoBulkError(TrutoError):
    """A bulk run failed: more failed rows than allowed, some of them transient (429, 5xx,
    network), or the run stopped early. An Airflow task retry sends only the rows not applied
    yet, under the same Idempotency-Keys."""


class TrutoBulkFatalError(TrutoBulkError, AirflowFailException):
    """A bulk run failed and no failure was transient: a retry could not help, so the task fails
    at once."""


@dataclass(frozen=True)
class StatusPolicy:
    """What one HTTP error status means, for every caller that has to decide on it."""

    #: The exception raised for it.
    error: type[TrutoAPIError]
    #: Whether the hook (and the bulk engine, per row) tries the same request again.
    hook_retries: bool = False
    #: Whether the bulk engine stops sending to the integrated account (its rows fail).
    closes_account: bool = False

    @property
    def task_retry_helps(self) -> bool:
        """Whether an Airflow task retry may succeed: the error class is not fail-now."""
        return not issubclass(self.error, AirflowFailException)


#: The one table of HTTP statuses. Statuses not listed fall back by class: another 4xx is a
#: :class:`TrutoClientError`, another 5xx a :class:`TrutoServerError` (neither retried by the
#: hook), anything else a plain :class:`TrutoAPIError`.
STATUS_POLICY: Mapping[int, StatusPolicy] = MappingProxyType(
    {
        400: StatusPolicy(TrutoValidationError),
        401: StatusPolicy(TrutoAuthError, closes_account=True),  # dead or expired token
        403: StatusPolicy(TrutoAuthError, closes_account=True),  # missing scopes
        404: StatusPolicy(TrutoNotFoundError),
        405: StatusPolicy(TrutoMethodNotAllowedError),
        409: StatusPolicy(TrutoValidationError),
        422: StatusPolicy(TrutoValidationError),
        429: StatusPolicy(TrutoRateLimitError, hook_retries=True),
        500: StatusPolicy(TrutoServerError, hook_retries=True),
        502: StatusPolicy(TrutoServerError, hook_retries=True),
        503: StatusPolicy(TrutoAccountBlockedError, closes_account=True),  # blocked account
        504: StatusPolicy(TrutoServerError, hook_retries=True),
    }
)

_OTHER_4XX = StatusPolicy(TrutoClientError)
_OTHER_5XX = StatusPolicy(TrutoServerError)
_OTHER = StatusPolicy(TrutoAPIError)


def status_policy(status_code: int) -> StatusPolicy:
    """The policy for an HTTP status: its :data:`STATUS_POLICY` row, else its class's fallback."""
    policy = STATUS_POLICY.get(status_code)
    if policy is not None:
        return policy
    if status_code >= 500:
        return _OTHER_5XX
    if 400 <= status_code < 500:
        return _OTHER_4XX
    return _OTHER


def error_class_for_status(status_code: int) -> type[TrutoAPIError]:
    """The exception class for an HTTP status (unknown 4xx are client errors)."""
    return status_policy(status_code).error

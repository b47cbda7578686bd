"""Answers: the mapping of Truto's answers onto results or the typed errors, with the token
redacted.

The hook mixes in :class:`_ResponseMapping`; the bulk engine uses the same methods through the
hook (``check_result``, ``is_result``, ``api_error``, ``redact_text``), so a row and a single
task read an answer the same way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx2
import msgspec

from truto_airflow.exceptions import (
    TrutoAPIError,
    TrutoNetworkError,
    TrutoResponseError,
    error_class_for_status,
    truncate,
)
from truto_airflow.redaction import redact, redact_data, secret_pattern

if TYPE_CHECKING:
    from truto_airflow.hooks._connection import TrutoConnectionSettings
    from truto_airflow.hooks._wire import PreparedRequest

__all__: list[str] = []

#: Response formats whose body is the CRM's own, not Truto's JSON object.
_PASS_THROUGH_FORMATS = frozenset({"raw", "stream"})
#: ``decode_result``'s marker for a body that did not parse as JSON.
_NOT_JSON = object()


def _bounded_raw_response(raw: Any, limit: int = 4000) -> Any:
    """The CRM's error body: kept structured when small, else a truncated JSON string."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return truncate(raw, limit)
    dumped = json.dumps(raw, default=str)
    return raw if len(dumped) <= limit else truncate(dumped, limit)


def _parsed(content: bytes) -> Any:
    """The body as JSON, or :data:`_NOT_JSON` (empty, invalid JSON or invalid UTF-8)."""
    if not content:
        return _NOT_JSON
    try:
        return json.loads(content)
    except ValueError:
        return _NOT_JSON


#: A strict JSON reader (msgspec, which Airflow's task SDK requires): it accepts a subset of what
#: ``json.loads`` accepts (UTF-8 only, no ``NaN``, no lone surrogates, no out-of-range numbers)
#: and reads Truto's answer about three times faster. Every 2xx of a bulk run is checked.
_STRICT_JSON = msgspec.json.Decoder()


def _is_json_object(content: bytes) -> bool:
    """Whether :func:`_parsed` reads ``content`` as a JSON object (the one rule). A body the
    strict reader reads as an object is one for ``json.loads`` too; anything else (malformed for
    it, not an object, nested too deep) is decided by :func:`_parsed` itself."""
    try:
        strict = _STRICT_JSON.decode(content)
    except Exception:  # msgspec.DecodeError, RecursionError: json.loads decides
        strict = None
    return isinstance(strict, dict) or isinstance(_parsed(content), dict)


class _ResponseMapping:
    """Decoding answers and mapping errors, for a hook that has ``settings.token``."""

    if TYPE_CHECKING:

        @property
        def settings(self) -> TrutoConnectionSettings: ...

    def _raise_for_status(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> None:
        if response.is_success:
            return
        raise self._api_error(response, request, attempts)

    def _api_error(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> TrutoAPIError:
        """Turn Truto's error body into the matching exception (text fallback, truncated).

        Everything kept (parsed body, text fallback, headers) is redacted before it is stored or
        cut, so no part of the token survives in any encoding.
        """
        raw_text = response.text
        data: Any = None
        try:
            data = json.loads(raw_text) if raw_text else None
        except json.JSONDecodeError:
            data = None
        text = self._redact(raw_text)
        body = self._redact_data(data) if isinstance(data, dict) else {}
        message = body.get("message")
        if not isinstance(message, str) or not message:
            message = truncate(text.strip()) if not body else ""
        raw = _bounded_raw_response(body.get("raw_response"))
        insight = body.get("truto_error_insight")
        cls = error_class_for_status(response.status_code)
        return cls(
            status_code=response.status_code,
            error=body.get("error")
            if isinstance(body.get("error"), str)
            else self._redact(response.reason_phrase),  # the status line is an echo too
            message=truncate(message),
            is_remote_error=bool(body.get("truto_is_remote_error", False)),
            raw_response=raw,
            error_insight=insight if isinstance(insight, dict) else None,
            headers=self._redacted_headers(response),
            method=request.method,
            path=request.path,
            attempts=attempts,
        )

    def _redact(self, text: str) -> str:
        """``text`` with the token masked in any encoding (:mod:`truto_airflow.redaction`)."""
        return redact(text, self.settings.token)

    def _redact_data(self, data: Any) -> Any:
        """Parsed JSON with the token masked in every key and string."""
        return redact_data(data, self.settings.token)

    def decode(self, response: httpx2.Response) -> Any:
        """The parsed body: JSON as Python objects, ``{}`` for an empty body, else text.

        The token is masked first: a 2xx body is the operator's XCom return value and feeds
        dry-run plans, and a server may echo the token back in it.
        """
        if not response.content:
            return {}
        text = response.text
        echoed = secret_pattern(self.settings.token).search(text) is not None
        ctype = response.headers.get("content-type", "")
        if "json" in ctype or not ctype:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                return self._redact_data(data) if echoed else data
        return self._redact(text) if echoed else text

    def decode_result(self, response: httpx2.Response, request: PreparedRequest) -> Any:
        """The body of a 2xx that must be Truto's JSON object, else :class:`TrutoResponseError`.

        A proxy's HTML login page, a truncated body, or a JSON list or string is not a
        successful update, whatever the status says (an empty ``204 No Content`` is ``{}``).
        With ``truto_response_format`` ``raw`` or ``stream`` the body is the CRM's own, so it is
        returned as :meth:`decode` reads it. The token is masked as in :meth:`decode`.
        """
        self.check_result(response, request)
        return self.decode(response)

    def check_result(self, response: httpx2.Response, request: PreparedRequest) -> None:
        """Raise :class:`TrutoResponseError` unless this 2xx carries what the endpoint returns
        (the rule of :meth:`decode_result`, without decoding)."""
        if not self.is_result(response.status_code, response.content, request):
            raise self._response_error(response, request)

    def is_result(self, status_code: int, content: bytes, request: PreparedRequest) -> bool:
        """Whether a 2xx with this body carries what the endpoint returns: the rule of
        :meth:`check_result` on the answer's parts (the bulk engine's per-row check, which
        builds no response object for a success)."""
        for key, value in request.params:
            if key == "truto_response_format":
                if value in _PASS_THROUGH_FORMATS:
                    return True
                break
        if status_code == 204 and not content:
            return True  # "No Content" says so on purpose (an empty 200 does not)
        return _is_json_object(content)

    def _response_error(
        self, response: httpx2.Response, request: PreparedRequest
    ) -> TrutoResponseError:
        data = _parsed(response.content)
        ctype = response.headers.get("content-type") or "no content type"
        if not response.content:
            what = "an empty body"
        elif data is _NOT_JSON:
            what = "a body that is not valid JSON (truncated, or not JSON at all)"
        else:
            what = f"a JSON {type(data).__name__} instead of an object"
        text = " ".join(self._redact_safe(response.text).split())
        snippet = truncate(text, 120)
        return TrutoResponseError(
            status_code=response.status_code,
            error="unexpected_response",
            message=(
                f"Truto answered {response.status_code} with {what} ({ctype}, "
                f"{len(response.content)} bytes: {snippet!r}); not treated as a success, the "
                "write may or may not have been applied. Check that the connection's host is "
                "Truto's API, not a proxy or login page"
            ),
            headers=self._redacted_headers(response),
            method=request.method,
            path=request.path,
        )

    def _redacted_headers(self, response: httpx2.Response) -> dict[str, str]:
        """Response headers (lower-case names) with the token masked, to keep on an exception."""
        return {self._redact(k.lower()): self._redact(v) for k, v in response.headers.items()}

    def _network_error(
        self, exc: Exception, request: PreparedRequest, attempts: int
    ) -> TrutoNetworkError:
        detail = self._redact(str(exc)) or type(exc).__name__
        return TrutoNetworkError(
            f"Truto {request.what} got no answer after {attempts} attempt(s): "
            f"{type(exc).__name__}: {truncate(detail, 200)}",
            method=request.method,
            path=request.path,
            attempts=attempts,
        )

    def _redact_safe(self, text: str) -> str:
        try:
            return self._redact(text)
        except Exception:
            return text

    def api_error(
        self, response: httpx2.Response, request: PreparedRequest, attempts: int = 1
    ) -> TrutoAPIError:
        """The typed error (status, message, insight, headers) for a non-2xx response."""
        return self._api_error(response, request, attempts)

    def redact_text(self, text: str) -> str:
        """``text`` with the API token masked (safe to log or store)."""
        return self._redact_safe(text)

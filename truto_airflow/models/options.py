"""Truto's query options for unified calls, validated before anything is sent."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.rendered import rendered_list

__all__ = [
    "OpportunityListOptions",
    "ResponseFormat",
    "ResponseShapeArgs",
    "TrutoQueryArgs",
    "TrutoQueryOptions",
    "build_unified_query",
    "check_limit",
    "list_query_options",
    "validate_integrated_account_id",
]


class ResponseFormat(str, enum.Enum):
    """``truto_response_format``: how Truto shapes the response body."""

    UNIFIED = "unified"
    RAW = "raw"
    NORMALIZED = "normalized"
    STREAM = "stream"

    @classmethod
    def parse(cls, value: str | ResponseFormat) -> ResponseFormat:
        """Accept the enum or its string value, with an error that lists the choices."""
        if isinstance(value, ResponseFormat):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(f.value for f in cls)
            raise TrutoInputError(
                f"response_format {value!r} is not one of Truto's formats: {choices}"
            ) from None


def validate_integrated_account_id(value: Any, *, source: str = "integrated_account_id") -> str:
    """Return the canonical UUID string, or explain where the bad value came from."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise TrutoInputError(
            f"{source} is required: pass integrated_account_id=... or set "
            "'integrated_account_id' in the Truto connection's extra"
        )
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise TrutoInputError(
            f"{source} {value!r} is not a UUID; copy the integrated account's id from the Truto "
            "dashboard (e.g. 62f44730-dd91-461e-bd6a-aedd9e0ad79d)"
        ) from None


def _coerce_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    raise TrutoInputError(f"{name} must be true or false, got {value!r}")


def _coerce_fields(value: Any) -> list[str]:
    # A templated list can render to "a,b", a JSON list or a Python list repr; accept them all.
    fields = rendered_list("exclude_fields", value) if isinstance(value, str) else value
    if not isinstance(fields, Sequence) or not all(isinstance(v, str) and v for v in fields):
        raise TrutoInputError(f"exclude_fields must be a list of field names, got {value!r}")
    return list(fields)


def build_unified_query(
    *,
    integrated_account_id: str,
    response_format: str | ResponseFormat | None = None,
    ignore_remote_data: bool | str | None = None,
    exclude_fields: Sequence[str] | str | None = None,
    remote_query: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The query mapping for a unified call, in Truto's parameter names (encode with ``query``)."""
    query: dict[str, Any] = {"integrated_account_id": integrated_account_id}
    if response_format is not None:
        query["truto_response_format"] = ResponseFormat.parse(response_format).value
    if ignore_remote_data is not None:
        flag = _coerce_bool("ignore_remote_data", ignore_remote_data)
        if flag:
            query["truto_ignore_remote_data"] = True
    if exclude_fields is not None:
        fields = _coerce_fields(exclude_fields)
        if fields:
            query["truto_exclude_fields"] = fields
    if remote_query is not None:
        if not isinstance(remote_query, Mapping):
            raise TrutoInputError(
                f"remote_query must be a mapping of the CRM's query parameters, got "
                f"{type(remote_query).__name__}"
            )
        if remote_query:
            query["remote_query"] = dict(remote_query)
    for key, value in (extra or {}).items():
        if key in query:
            raise TrutoInputError(f"query parameter {key!r} is set twice")
        query[key] = value
    return query


class ResponseShapeArgs(TypedDict, total=False):
    """Truto's options that shape an answer (keyword arguments of hook methods)."""

    #: Truto's ``truto_response_format`` (``unified``, ``raw`` or ``normalized``).
    response_format: str | None
    #: Leave ``remote_data`` out of the answer (smaller answers).
    ignore_remote_data: bool | None
    #: Fields Truto leaves out of the answer.
    exclude_fields: Sequence[str] | None
    #: The CRM's own query parameters, sent as ``remote_query[...]``.
    remote_query: Mapping[str, Any] | None


class TrutoQueryArgs(ResponseShapeArgs, total=False):
    """The keyword arguments hook methods take for :class:`TrutoQueryOptions` (one list, so the
    five options are spelled once for every method that accepts them)."""

    integrated_account_id: str | None


@dataclass(frozen=True)
class TrutoQueryOptions:
    """Truto's five query options of a unified call, travelling as one value.

    ``integrated_account_id`` ``None`` means the connection's default (the hook resolves it);
    the others ``None`` mean "not sent". Validated when the query is built
    (:func:`build_unified_query`), before any request.
    """

    integrated_account_id: str | None = None
    response_format: str | ResponseFormat | None = None
    ignore_remote_data: bool | str | None = None
    exclude_fields: Sequence[str] | str | None = None
    remote_query: Mapping[str, Any] | None = None

    def query(
        self, integrated_account_id: str, *, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The query mapping for an already resolved account (plus ``extra`` parameters)."""
        return build_unified_query(
            integrated_account_id=integrated_account_id,
            response_format=self.response_format,
            ignore_remote_data=self.ignore_remote_data,
            exclude_fields=self.exclude_fields,
            remote_query=self.remote_query,
            extra=extra,
        )


class OpportunityListOptions(ResponseShapeArgs, total=False):
    """Query options of an opportunity list read (keyword arguments of ``iter_opportunities``)."""

    #: Any other query parameter (filters, ``sort_by``, ``truto_key_by``...).
    params: Mapping[str, Any] | None
    #: Rows per page (Truto's ``limit`` query parameter).
    page_size: int | None


def list_query_options(
    integrated_account_id: str | None, options: OpportunityListOptions
) -> tuple[TrutoQueryOptions, dict[str, Any]]:
    """A list read's Truto options and its other query parameters (``page_size`` sent as
    ``limit``), validated; the hook resolves the account and builds the query."""
    page_size = options.get("page_size")
    if page_size is not None and (
        isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
    ):
        raise TrutoInputError(f"page_size must be a whole number >= 1, got {page_size!r}")
    shape: dict[str, Any] = {k: options.get(k) for k in ResponseShapeArgs.__annotations__}
    query_options = TrutoQueryOptions(integrated_account_id=integrated_account_id, **shape)
    extra = {**(options.get("params") or {}), **({"limit": page_size} if page_size else {})}
    return query_options, extra


def check_limit(limit: int | None) -> int | None:
    """``limit`` of a list read (items to yield; ``None``: all), refused unless a whole number
    >= 0."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise TrutoInputError(f"limit must be a whole number >= 0, got {limit!r}")
    return limit

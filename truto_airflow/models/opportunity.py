"""Truto's unified CRM opportunity: the PATCH body and the object Truto returns.

``OpportunityUpdate`` has PATCH semantics: a field that was not given is not sent, a field given
as ``None`` is sent as ``null`` (which clears it in the CRM). Unknown top-level fields are an
error that names them, because a silently dropped typo is lost data; anything the unified model
does not cover goes in ``remote_data``, which Truto passes to the CRM untouched.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.models._types import Amount, IsoDateTime, JsonObject
from truto_airflow.rendered import parse_object_text

__all__ = [
    "IdRef",
    "Opportunity",
    "OpportunityUpdate",
    "StageRef",
    "TagRef",
    "UrlRef",
    "format_validation_error",
    "parse_update_body",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class _Ref(_Strict):
    # Native Jinja rendering turns "12345" into 12345; CRM ids are strings on the wire.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class IdRef(_Ref):
    """A reference to another CRM object by id (owner, account, contact)."""

    id: str = Field(min_length=1)


class StageRef(_Ref):
    """The opportunity's stage: by id, by name, or both."""

    id: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> StageRef:
        if self.id is None and self.name is None:
            raise ValueError("give the stage's id (or name), e.g. {'id': '123'}")
        return self


class TagRef(_Ref):
    """A tag by id, by name, or both."""

    id: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> TagRef:
        if self.id is None and self.name is None:
            raise ValueError("give the tag's id or name")
        return self


class UrlRef(BaseModel):
    """A link to the record in the CRM's own UI."""

    model_config = ConfigDict(extra="allow")

    url: str
    type: str | None = None


class OpportunityUpdate(_Strict):
    """The body of ``PATCH /unified/crm/opportunities/{id}`` (every field of Truto's docs page).

    Which fields a CRM actually applies varies; see ``truto_airflow.capabilities``.
    """

    name: str | None = None
    description: str | None = None
    amount: Amount | None = None
    currency: str | None = None
    close_date: IsoDateTime | None = None
    #: Pipedrive only: the time part of the close date.
    close_time: str | None = None
    created_at: IsoDateTime | None = None
    owner: IdRef | None = None
    account: IdRef | None = None
    contact: list[IdRef] | None = None
    stage: StageRef | None = None
    status: str | None = None
    tags: list[TagRef] | None = None
    custom_fields: JsonObject | None = None
    remote_data: JsonObject | None = None

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: only the fields that were set, explicit ``None`` as ``null``."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def field_names(self) -> list[str]:
        """Names of the fields this update sends, in declaration order."""
        return [name for name in type(self).model_fields if name in self.model_fields_set]


class Opportunity(BaseModel):
    """An opportunity as Truto returns it (unknown fields are kept: mappings can add some)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    description: str | None = None
    amount: float | int | None = None
    currency: str | None = None
    close_date: IsoDateTime | None = None
    created_at: IsoDateTime | None = None
    updated_at: IsoDateTime | None = None
    last_activity_at: IsoDateTime | None = None
    owner: dict[str, Any] | None = None
    account: dict[str, Any] | None = None
    contact: list[dict[str, Any]] | None = None
    stage: dict[str, Any] | None = None
    status: str | None = None
    tags: list[dict[str, Any]] | None = None
    custom_fields: dict[str, Any] | None = None
    urls: list[UrlRef] | None = None
    remote_data: dict[str, Any] | None = None


def format_validation_error(exc: ValidationError, *, what: str = "body") -> str:
    """One readable message per problem: the field path, what is wrong and how to fix it."""
    known = list(OpportunityUpdate.model_fields)
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
            field = str(err["loc"][0])
            close = difflib.get_close_matches(field, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(
                f"unknown field {field!r}: {hint}fields Truto does not model go in "
                f"'remote_data' (sent to the CRM as is)"
            )
        elif err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
    return f"invalid opportunity {what}: " + "; ".join(problems)


def parse_update_body(body: Any) -> OpportunityUpdate:
    """Validate anything a DAG can hand over as a body and return an :class:`OpportunityUpdate`.

    Accepts a mapping, an ``OpportunityUpdate``, or a JSON object string (what ``| tojson``
    renders). A string holding a Python dict repr (Jinja's default rendering of a dict) is
    parsed too, with literal evaluation only; any other string is refused, because sending a
    string body would be wrong.
    """
    if isinstance(body, OpportunityUpdate):
        return body
    if isinstance(body, (str, bytes)):
        body = _parse_body_text(body.decode() if isinstance(body, bytes) else body)
    if not isinstance(body, Mapping):
        raise TrutoInputError(
            f"invalid opportunity body: expected a mapping of fields, got {type(body).__name__}; "
            "pass a dict, an OpportunityUpdate, or a JSON object string"
        )
    try:
        return OpportunityUpdate.model_validate(dict(body))
    except ValidationError as exc:
        raise TrutoInputError(format_validation_error(exc)) from None


def _parse_body_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise TrutoInputError(
            "invalid opportunity body: the template rendered an empty string; check the XCom or "
            "param it reads"
        )
    value = parse_object_text(stripped)
    if value is not None:
        return value
    raise TrutoInputError(
        "invalid opportunity body: the rendered string is not a JSON object "
        f"({stripped[:60]!r}...). Render it with '| tojson', or set "
        "render_template_as_native_obj=True on the DAG, or pass the XComArg itself"
    )

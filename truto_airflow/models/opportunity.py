"""Truto's unified CRM opportunity: the PATCH body and the object Truto returns.

``OpportunityUpdate`` has PATCH semantics: a field that was not given is not sent, a field given
as ``None`` is sent as ``null`` (which clears it in the CRM). Unknown top-level fields are an
error that names them, because a silently dropped typo is lost data; anything the unified model
does not cover goes in ``remote_data``, which Truto passes to the CRM untouched.
"""

from __future__ import annotations

import difflib
import numbers
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import JsonValueError, dotted, json_value
from truto_airflow.models._types import (
    MAX_AMOUNT,
    Amount,
    IsoDateTime,
    IsoTime,
    parse_datetime,
    parse_time_of_day,
)
from truto_airflow.rendered import rendered_object

__all__ = [
    "IdRef",
    "Opportunity",
    "OpportunityUpdate",
    "StageRef",
    "TagRef",
    "UrlRef",
    "flat_update_body",
    "format_validation_error",
    "parse_update_body",
    "update_body",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class _Ref(_Strict):
    # Native Jinja rendering turns "12345" into 12345; CRM ids are strings on the wire.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @field_validator("*", mode="before")
    @classmethod
    def _reference_value(cls, value: Any) -> Any:
        """An integer becomes its exact digits; any other number, and blank text, is refused.

        A float or ``Decimal`` id is what a numeric column with gaps becomes (pandas turns it
        into float64): ``5.0`` would be sent as ``"5.0"``, a gap as ``"nan"``, a 17-digit id
        rounded. A blank cell (``" "``) names nothing, and some CRMs read a blank owner as
        "unassign". None of them is the reference that was meant.
        """
        if isinstance(value, str) and value and not value.strip():
            raise ValueError(
                f"{value!r} is blank; give the id (or name), or leave the reference out"
            )
        if isinstance(value, (numbers.Real, Decimal)) and not isinstance(
            value, (bool, numbers.Integral)
        ):
            raise ValueError(
                f"{value!r} is a {type(value).__name__}, not an id; pass ids as strings (or "
                "integers). A numeric column with gaps turns integer ids into floats: cast it "
                "to string and drop the empty rows"
            )
        return value


class IdRef(_Ref):
    """A reference to another CRM object by id (owner, account, contact)."""

    id: str = Field(min_length=1)


class _IdOrNameRef(_Ref):
    """A reference by id, by name, or both; one of them is required."""

    #: The fix the error names when neither is given.
    missing_hint: ClassVar[str]

    id: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> _IdOrNameRef:
        if self.id is None and self.name is None:
            raise ValueError(self.missing_hint)
        return self


class StageRef(_IdOrNameRef):
    """The opportunity's stage: by id, by name, or both."""

    missing_hint = "give the stage's id (or name), e.g. {'id': '123'}"


class TagRef(_IdOrNameRef):
    """A tag by id, by name, or both."""

    missing_hint = "give the tag's id or name"


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
    #: Pipedrive only: the time part of the close date (ISO 8601 ``HH:MM[:SS]``).
    close_time: IsoTime | None = None
    created_at: IsoDateTime | None = None
    owner: IdRef | None = None
    account: IdRef | None = None
    contact: list[IdRef] | None = None
    stage: StageRef | None = None
    status: str | None = None
    tags: list[TagRef] | None = None
    #: Free-form: ``Decimal`` inside is sent as a JSON number, like ``amount`` (``_json_values``).
    custom_fields: dict[str, Any] | None = None
    remote_data: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _json_values(cls, data: Any) -> Any:
        """Every value must reach the CRM through Truto's JSON unchanged (see ``json_values``).

        Free-form fields are normalised here (``Decimal`` -> number, date-times -> ISO text);
        typed fields are only checked, then parsed by their own types.
        """
        if not isinstance(data, Mapping):
            return data
        fields = cls.__pydantic_fields__  # what cls.model_fields returns, without its descriptor
        return {
            key: json_value(value, (key,), free_form=key in _FREE_FORM, typed=key not in _FREE_FORM)
            if key in fields
            else value
            for key, value in data.items()
        }

    def to_body(self) -> dict[str, Any]:
        """The JSON body to send: only the fields that were set, explicit ``None`` as ``null``."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def field_names(self) -> list[str]:
        """Names of the fields this update sends, in declaration order."""
        return [name for name in type(self).model_fields if name in self.model_fields_set]


#: Fields whose values go to the CRM as they are, without a type Truto documents.
_FREE_FORM = frozenset({"custom_fields", "remote_data"})


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


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X | None`` / ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds ``loc``'s last key (``stage.idd`` -> StageRef's)."""
    model: type[BaseModel] | None = OpportunityUpdate
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        model = _submodel(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _unknown_key(loc: tuple[Any, ...]) -> str:
    name = str(loc[-1])
    close = difflib.get_close_matches(name, _fields_at(loc), n=1)
    if len(loc) > 1:
        where = dotted(loc)
        if close:
            return f"{where}: unknown key; did you mean {dotted((*loc[:-1], close[0]))!r}?"
        return f"{where}: unknown key (allowed: {', '.join(_fields_at(loc))})"
    escape = "fields Truto does not model go in 'remote_data' (sent to the CRM as is)"
    if close:
        return f"unknown field {name!r}: did you mean {close[0]!r}? {escape}"
    return (
        f"unknown field {name!r}: Truto's unified opportunity has no such field. A custom "
        f"field of the CRM goes under 'custom_fields': {{'custom_fields': {{{name!r}: ...}}}}; "
        f"other {escape}"
    )


def format_validation_error(exc: ValidationError, *, what: str = "body") -> str:
    """One readable message per problem: the field path, what is wrong and how to fix it."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, JsonValueError):
            problems.append(str(cause))
        elif err["type"] == "extra_forbidden":
            problems.append(_unknown_key(tuple(err["loc"])))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{dotted(tuple(err['loc']))}: {msg}")
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
        body = rendered_object("body", body, what="invalid opportunity body")
    if not isinstance(body, Mapping):
        raise TrutoInputError(
            f"invalid opportunity body: expected a mapping of fields, got {type(body).__name__}; "
            "pass a dict, an OpportunityUpdate, or a JSON object string"
        )
    try:
        return OpportunityUpdate.model_validate(dict(body))
    except ValidationError as exc:
        raise TrutoInputError(format_validation_error(exc)) from None


def _iso_datetime(text: str) -> str:
    """An ``IsoDateTime`` field's text as the model sends it: its parser, then its serializer."""
    return parse_datetime(text).isoformat()


def _fields_typed(annotation: Any) -> frozenset[str]:
    """The update's fields declared exactly ``annotation``."""
    return frozenset(
        name
        for name, info in OpportunityUpdate.model_fields.items()
        if info.annotation == annotation
    )


#: What a flat body (:func:`update_body`'s shortcut) may hold, read from the model's own field
#: types: plain text fields (``str | None``: any ``str`` the model takes; a lone surrogate is
#: left to the model, which refuses it), date and time fields given as text (read by their type's
#: own parser, sent as the model dumps them), and amounts (an exact ``int`` or finite ``float``).
_FLAT_PARSERS: dict[str, Callable[[str], str]] = dict.fromkeys(
    _fields_typed(IsoDateTime | None), _iso_datetime
) | dict.fromkeys(_fields_typed(IsoTime | None), parse_time_of_day)
_AMOUNTS = _fields_typed(Amount | None)
_FLAT = _fields_typed(str | None) | _FLAT_PARSERS.keys() | _AMOUNTS
#: In declaration order: the order of ``to_body()``'s keys.
_FLAT_FIELDS = tuple(name for name in OpportunityUpdate.model_fields if name in _FLAT)


def flat_update_body(body: Any) -> dict[str, Any] | None:
    """``parse_update_body(body).to_body()`` for a body of only text, date and time fields and
    ``amount`` (``None`` or a plain ``str``, ``int`` or ``float``), without building the model;
    ``None`` for any other body (only a plain ``dict`` is read), and for any value the model
    might refuse or change otherwise (the model then decides, and names the problem). Proven
    equal to the model by hypothesis (tests/unit/models/test_update_body.py)."""
    if type(body) is not dict:
        return None
    parsed: dict[str, str] | None = None
    for key, value in body.items():
        if value is None:
            if key not in _FLAT:
                return None
        elif key in _AMOUNTS:
            kind = type(value)
            # NaN fails both comparisons; bool, Decimal, numpy and text go to the model
            if (kind is not int and kind is not float) or not -MAX_AMOUNT <= value <= MAX_AMOUNT:
                return None
        elif key not in _FLAT or type(value) is not str:
            return None
        else:
            if not value.isascii():
                try:
                    value.encode("utf-8")  # a lone surrogate is not Unicode: the model refuses it
                except UnicodeEncodeError:
                    return None
            parse = _FLAT_PARSERS.get(key)
            if parse is not None:
                try:
                    text = parse(value)
                except ValueError:  # the model refuses it, with the field's name: let it say so
                    return None
                parsed = {key: text} if parsed is None else {**parsed, key: text}
    flat = {name: body[name] for name in _FLAT_FIELDS if name in body}
    if parsed:
        flat.update(parsed)  # keys already in place: the order stays the declared one
    return flat


def update_body(body: Any) -> dict[str, Any]:
    """The JSON body of an update: ``parse_update_body(body).to_body()``, with the same
    refusals (:class:`TrutoInputError`).

    A plain ``dict`` holding only text, date and time fields and ``amount`` (what most bulk
    rows are) is read without building the model (:func:`flat_update_body`): the model costs
    several times the check itself, and every row of a bulk run passes here.
    """
    flat = flat_update_body(body)
    return parse_update_body(body).to_body() if flat is None else flat

"""Field types shared by the Truto models: date-times and amounts as Truto expects them."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Annotated, Any

import pendulum
from pydantic import BeforeValidator, PlainSerializer


def parse_datetime(value: Any) -> dt.datetime:
    """Accept ISO 8601 strings, ``datetime``, pendulum objects and dates; return an aware datetime.

    Naive values are taken as UTC (Airflow's convention) so that what is sent always carries an
    offset; a bare date means midnight UTC of that day.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("an empty string is not a date-time; use null to clear the field")
        try:
            parsed = pendulum.parse(text, strict=False)
        except Exception as exc:
            raise ValueError(
                f"{value!r} is not an ISO 8601 date-time (e.g. 2026-11-28T09:30:00+00:00)"
            ) from exc
        value = parsed
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    raise ValueError(
        f"expected an ISO 8601 date-time string or a datetime, got {type(value).__name__}"
    )


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


#: A date-time sent as ISO 8601 with its offset.
IsoDateTime = Annotated[
    dt.datetime,
    BeforeValidator(parse_datetime),
    PlainSerializer(_iso, return_type=str, when_used="always"),
]


def parse_amount(value: Any) -> int | float:
    """JSON numbers: a warehouse ``Decimal`` becomes an int or a float, never a string."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            value = Decimal(text)
        except Exception as exc:
            raise ValueError(f"{value!r} is not a number") from exc
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value
    raise ValueError(f"expected a number, got {type(value).__name__}")


#: An amount: int or float on the wire.
Amount = Annotated[int | float, BeforeValidator(parse_amount)]


def decimals_as_numbers(value: Any) -> Any:
    """A ``Decimal`` anywhere inside a free-form value becomes a JSON number, as for ``amount``.

    Pydantic would send a ``Decimal`` inside ``dict[str, Any]`` as a string (``"1.50"``), which a
    numeric CRM field may refuse or store as text.
    """
    if isinstance(value, Decimal):
        return parse_amount(value)
    if isinstance(value, dict):
        return {k: decimals_as_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [decimals_as_numbers(v) for v in value]
    return value


#: A free-form JSON object (``custom_fields``, ``remote_data``): decimals sent as numbers.
JsonObject = Annotated[dict[str, Any], BeforeValidator(decimals_as_numbers)]

"""Field types shared by the Truto models: date-times and amounts as Truto expects them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from truto_airflow.json_values import (
    MAX_OFFSET,
    MAX_SAFE_INTEGER,
    JsonValueError,
    aware_datetime,
    json_number,
)

#: ISO 8601 extended calendar date, optionally with a time (``T``, ``t`` or a space, as RFC 3339
#: allows), seconds, up to 9 fraction digits, and ``Z`` or a ``±HH[:MM]`` offset.
_ISO_DATETIME = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?"
    r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)
#: ISO 8601 time of day: ``HH:MM`` or ``HH:MM:SS`` (optionally with a fraction).
_ISO_TIME = re.compile(
    r"(?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d{1,9}))?)?", re.ASCII
)

_ISO_HINT = "use ISO 8601, e.g. 2026-11-28 or 2026-11-28T09:30:00+00:00"


def _offset(text: str) -> dt.timezone:
    if text in {"Z", "z"}:
        return dt.timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if minutes > 59:
        raise ValueError(f"the UTC offset {text} has {minutes} minutes")
    delta = sign * dt.timedelta(hours=hours, minutes=minutes)
    if abs(delta) > MAX_OFFSET:
        raise ValueError(f"the UTC offset {text} is impossible (real offsets are -12:00..+14:00)")
    return dt.timezone(delta)


def _fraction(text: str | None) -> int:
    # Sub-microsecond digits (warehouse TIMESTAMP(9)) are dropped: no CRM stores them.
    return int((text or "0")[:6].ljust(6, "0"))


def parse_datetime(value: Any) -> dt.datetime:
    """Accept ISO 8601 text, ``datetime`` (pendulum too) and ``date``; return an aware datetime.

    Only ISO 8601 calendar dates and date-times: anything a lenient parser would resolve
    against the clock (``"5"``, ``"10:00"``, ``"Monday"``, ``"now"``) or read by locale
    (``"01/02/2026"``) is refused, because the write would land on a date nobody chose. Naive
    values are taken as UTC (Airflow's convention) so that what is sent always carries an
    offset; a bare date means midnight UTC of that day. Offsets beyond ±14:00 are refused.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("an empty string is not a date-time; use None to clear the field")
        match = _ISO_DATETIME.fullmatch(text)
        if match is None:
            raise ValueError(f"{value!r} is not an ISO 8601 date or date-time; {_ISO_HINT}")
        parts = match.groupdict()
        try:
            tz = _offset(parts["tz"]) if parts["tz"] else dt.timezone.utc
            return dt.datetime(
                int(parts["y"]),
                int(parts["mo"]),
                int(parts["d"]),
                int(parts["h"] or 0),
                int(parts["mi"] or 0),
                int(parts["s"] or 0),
                _fraction(parts["f"]),
                tzinfo=tz,
            )
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date-time: {exc}; {_ISO_HINT}") from None
    if isinstance(value, dt.datetime):
        try:
            return aware_datetime(value)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    raise ValueError(
        f"expected an ISO 8601 date-time string or a datetime, got {type(value).__name__}; "
        f"{_ISO_HINT}"
    )


def parse_time_of_day(value: Any) -> str:
    """An ISO 8601 time of day (``HH:MM`` or ``HH:MM:SS``), kept as written; ``time`` objects too.

    Anything else (``"5"``, ``"noon"``, ``"now"``, a date) is refused rather than resolved.
    """
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError("a time of day with a time zone is ambiguous; give a plain HH:MM:SS")
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        match = _ISO_TIME.fullmatch(text)
        if match is not None:
            try:
                dt.time(int(match["h"]), int(match["mi"]), int(match["s"] or 0))
            except ValueError as exc:
                raise ValueError(f"{value!r} is not a valid time of day: {exc}") from None
            return text
    raise ValueError(
        f"{value!r} is not an ISO 8601 time of day; use HH:MM or HH:MM:SS (e.g. 17:30), and "
        "put the date in close_date"
    )


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


#: A date-time sent as ISO 8601 with its offset.
IsoDateTime = Annotated[
    dt.datetime,
    BeforeValidator(parse_datetime),
    PlainSerializer(_iso, return_type=str, when_used="always"),
]


#: The largest amount accepted: beyond 2**53 - 1 no currency value is exact as a JSON number,
#: and no CRM currency field stores it.
MAX_AMOUNT = MAX_SAFE_INTEGER


def parse_amount(value: Any) -> int | float:
    """JSON numbers: a warehouse ``Decimal`` or numeric text becomes an int or a float, never a
    string; the number must survive Truto's JSON exactly (:func:`json_number`)."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text.isascii():
            # Decimal() reads the digits of any script (full-width, Arabic-Indic, even mixed);
            # dates and wait hints take ASCII digits only, and so does an amount as text.
            raise ValueError(f"{value!r} is not a number written with ASCII digits 0-9")
        try:
            value = Decimal(text)
        except ArithmeticError:
            raise ValueError(f"{value!r} is not a number") from None
    try:
        number = json_number(value, ())
    except JsonValueError as exc:
        raise ValueError(exc.problem) from None
    if abs(number) > MAX_AMOUNT:
        raise ValueError(
            f"{number!r} is larger than any CRM amount field holds (the limit is ±(2**53-1))"
        )
    return number


#: An amount: int or float on the wire.
Amount = Annotated[int | float, BeforeValidator(parse_amount)]

#: A time of day, sent as the ISO 8601 text given.
IsoTime = Annotated[str, BeforeValidator(parse_time_of_day)]

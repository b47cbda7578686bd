"""What a value must be to reach a CRM through Truto's JSON unchanged, checked in one place.

Truto runs JavaScript: every JSON number becomes an IEEE-754 double on the way to the CRM. So a
number is sent only if that double *is* the number that was given: finite, integers within
``±(2**53 - 1)`` (``Number.MAX_SAFE_INTEGER``), no ``Decimal`` digits a double cannot keep, and
nothing that silently underflows to ``0``. Python's ``json`` would instead write ``NaN`` (or,
through pydantic, ``null``, which *clears* the CRM field), a 401-digit integer, or ``0.0``.

:func:`json_value` walks a whole value (body, ``custom_fields``, ``remote_data``) and returns its
JSON-native form or raises :class:`JsonValueError` naming the path (``custom_fields.score``).
:func:`loads` reads JSON text the same way: ``NaN``/``Infinity`` literals (which Python's
``json`` accepts) and numbers a double cannot hold come back as :class:`BadNumber` markers, so
the walk refuses them with their path instead of the parser guessing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from truto_airflow.exceptions import TrutoError

__all__ = [
    "MAX_DEPTH",
    "MAX_OFFSET",
    "MAX_SAFE_INTEGER",
    "NON_FINITE_TEXT",
    "BadNumber",
    "JsonValueError",
    "aware_datetime",
    "compact_encoder",
    "dotted",
    "json_number",
    "json_value",
    "loads",
    "parse_float_text",
]

#: The largest integer a JavaScript double holds exactly (``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1
#: Real UTC offsets run from -12:00 to +14:00; anything beyond ±14:00 is a typo, not a zone.
MAX_OFFSET = dt.timedelta(hours=14)
#: Deepest nesting accepted: far beyond any CRM field, small enough to never hit recursion limits.
MAX_DEPTH = 64
#: Exactly how common producers print a non-finite number: Python/NumPy/pandas ``str()``
#: (``nan``, ``inf``), JavaScript/JSON/``Decimal`` (``NaN``, ``Infinity``, ``sNaN``). In a
#: free-form field (``custom_fields``, ``remote_data``) whose CRM type is unknown, such a string
#: is almost always a missing number that was stringified, and a numeric CRM field would store
#: it as 0, null or garbage; refused rather than guessed. Case-sensitive on purpose: ``"Nan"``
#: (a name) or ``"Infinity War"`` pass.
NON_FINITE_TEXT = frozenset(
    sign + word for sign in ("", "+", "-") for word in ("nan", "NaN", "inf", "Infinity", "sNaN")
)

_CLEAR = "use None (JSON null) to clear the field"


def dotted(path: tuple[Any, ...]) -> str:
    """``("custom_fields", "a", 0)`` -> ``custom_fields.a.0`` (pydantic's loc style)."""
    text = ".".join(str(p) for p in path) or "(body)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates, escaped


class JsonValueError(TrutoError, ValueError):
    """A value that cannot travel as JSON to a CRM; ``path`` says where it is."""

    def __init__(self, path: tuple[Any, ...], problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{dotted(path)}: {problem}")


class BadNumber:
    """A number in JSON text that a double cannot hold (``NaN``, ``1e400``, ``1e-400``)."""

    __slots__ = ("problem", "text")

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem

    def __repr__(self) -> str:
        return self.text


def _describe_int(value: int) -> str:
    # str() of an int beyond 4300 digits raises on Python >= 3.11; never needed in full anyway.
    if value.bit_length() <= 200:
        return str(value)
    return f"a {len(str(abs(value) >> (value.bit_length() - 200)))}+-digit integer"


def _check_int(value: int, path: tuple[Any, ...]) -> int:
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise JsonValueError(
        path,
        f"{_describe_int(value)} is beyond ±(2**53-1), the largest integer Truto's JSON "
        "(JavaScript numbers) carries exactly; send an id or code as a string, and check "
        "the value if it is a quantity",
    )


def _check_float(value: float, path: tuple[Any, ...]) -> float:
    if math.isfinite(value):
        return value
    raise JsonValueError(path, f"{value!r} is not a finite number; {_CLEAR}")


def _check_decimal(value: Decimal, path: tuple[Any, ...]) -> int | float:
    if not value.is_finite():
        raise JsonValueError(path, f"Decimal({str(value)!r}) is not a finite number; {_CLEAR}")
    if value.is_zero():
        return 0
    exponent = value.adjusted()  # position of the most significant digit, without expanding
    if exponent > 308:
        raise JsonValueError(path, f"{value} is too large for a JSON number (a double)")
    if value == value.to_integral_value():
        return _check_int(int(value), path)
    as_float = float(value)
    if as_float == 0.0:
        raise JsonValueError(path, f"{value} is too small for a JSON number: it would arrive as 0")
    if Decimal(repr(as_float)) != value:
        raise JsonValueError(
            path,
            f"{value} has more digits than a JSON number (a double) keeps: it would arrive as "
            f"{as_float!r}; round it first (e.g. value.quantize(Decimal('0.01')))",
        )
    return as_float


def json_number(value: Any, path: tuple[Any, ...]) -> int | float:
    """The JSON number for ``value`` (int, float, ``Decimal``, NumPy scalars), or an error."""
    if isinstance(value, bool):
        raise JsonValueError(path, f"{value!r} is a boolean, not a number")
    if isinstance(value, BadNumber):
        raise JsonValueError(path, value.problem)
    if isinstance(value, int):
        return _check_int(value, path)
    if isinstance(value, float):
        return _check_float(value, path)
    if isinstance(value, Decimal):
        return _check_decimal(value, path)
    if isinstance(value, numbers.Integral):  # numpy.int64 and friends
        return _check_int(int(value), path)
    if isinstance(value, numbers.Real):  # numpy.float32 and friends
        return _check_float(float(value), path)
    raise JsonValueError(path, f"expected a number, got {type(value).__name__}")


def _check_text(value: str, path: tuple[Any, ...], *, free_form: bool) -> str:
    if not value.isascii():  # ASCII text holds no surrogate (isascii() is a flag look-up)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonValueError(
                path, "the text contains a lone surrogate (\\ud800-\\udfff), which is not Unicode"
            ) from None
    if free_form and value.strip() in NON_FINITE_TEXT:
        raise JsonValueError(
            path,
            f"{value!r} is how a missing or non-finite number prints, and this field's CRM type "
            f"is unknown; {_CLEAR}, or a real number",
        )
    return value


def aware_datetime(value: dt.datetime) -> dt.datetime:
    """The one rule for ``datetime`` objects (typed fields, free-form fields, query values).

    Naive values are taken as UTC (Airflow's convention), so what is sent carries an offset. A
    datetime unequal to itself is a missing value (``pandas.NaT``, whose ``isoformat()`` is
    ``"NaT"``), and an offset beyond ±14:00 exists nowhere: both raise ``ValueError``.
    """
    if value != value:  # NaT, like NaN, is the one value unequal to itself
        raise ValueError(f"{value!r} is a missing date-time, not a date; {_CLEAR}")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    try:
        offset = value.utcoffset()
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"its time zone gives no usable UTC offset ({exc})") from None
    if offset is None:
        return value.replace(tzinfo=dt.timezone.utc)
    if abs(offset) > MAX_OFFSET:
        raise ValueError(f"its UTC offset {offset} is impossible (real offsets are -12:00..+14:00)")
    return value


def json_value(
    value: Any,
    path: tuple[Any, ...] = (),
    *,
    free_form: bool = True,
    typed: bool = False,
    _depth: int = 0,
) -> Any:
    """``value`` as JSON-native Python (dict/list/str/int/float/bool/None), or an error.

    Mappings need string keys; lists and tuples become lists; ``Decimal`` and NumPy numbers
    become int/float (checked as above). Date-times become ISO 8601 text (naive ones as UTC)
    and UUIDs text. With ``free_form`` (``custom_fields``, ``remote_data``, where the CRM type
    is unknown) the strings in :data:`NON_FINITE_TEXT` are refused too. With ``typed`` (typed
    fields, validated next by the model) date/time objects and numbers are left for the
    field's own parser (an integer id bigger than 2**53 is exact once a reference field turns
    it into a string; ``amount`` checks its own). Anything else (bytes, sets, arbitrary
    objects) is refused: what it means is a guess.
    """
    if _depth > MAX_DEPTH:
        raise JsonValueError(path, f"nested deeper than {MAX_DEPTH} levels (or refers to itself)")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(value, path, free_form=free_form)
    # Exactly int or float (what every parsed row holds): the number branch below without its
    # abstract-class checks, which cost more than the check itself (this runs for every value).
    exact = type(value)
    if exact is int:
        return value if typed else _check_int(value, path)
    if exact is float:
        return value if typed else _check_float(value, path)
    if exact is dict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise JsonValueError(
                    path, f"key {key!r} is a {type(key).__name__}; JSON object keys are strings"
                )
            where = (*path, key)
            _check_text(key, where, free_form=False)
            out[key] = json_value(item, where, free_form=free_form, typed=typed, _depth=_depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [
            json_value(item, (*path, i), free_form=free_form, typed=typed, _depth=_depth + 1)
            for i, item in enumerate(value)
        ]
    if isinstance(value, (numbers.Real, Decimal, BadNumber)):
        if typed and not isinstance(value, BadNumber):
            return value
        return json_number(value, path)
    if isinstance(value, (dt.date, dt.time)):
        if typed:  # the field's own parser (IsoDateTime, IsoTime) reads it next
            return value
        if isinstance(value, dt.datetime):
            try:
                return aware_datetime(value).isoformat()
            except ValueError as exc:
                raise JsonValueError(path, str(exc)) from None
        return value.isoformat()
    if isinstance(value, uuid.UUID) and not typed:
        return str(value)
    kind = type(value).__name__
    hint = " (decode it to text first)" if isinstance(value, (bytes, bytearray)) else ""
    if isinstance(value, (set, frozenset)):
        hint = " (a set has no order; pass a list)"
    raise JsonValueError(path, f"a {kind} is not a JSON value{hint}")


def parse_float_text(text: str) -> float | BadNumber:
    """A decimal literal as a double, or a :class:`BadNumber` when it overflows or underflows."""
    value = float(text)
    if math.isinf(value):
        return BadNumber(text, f"{text} is too large for a JSON number (a double)")
    if value == 0.0:
        try:
            nonzero = not Decimal(text).is_zero()
        except InvalidOperation:  # pragma: no cover - json only hands over valid numbers
            nonzero = False
        if nonzero:
            return BadNumber(text, f"{text} is too small for a JSON number: it would arrive as 0")
    return value


def _parse_constant(text: str) -> BadNumber:
    return BadNumber(text, f"{text} is not a number JSON allows (nor a finite one); {_CLEAR}")


#: The decoder :func:`loads` reads with, built once: ``json.loads`` builds a decoder (and its
#: scanner) per call when given hooks, which costs more than reading a short line.
_DECODER = json.JSONDecoder(parse_float=parse_float_text, parse_constant=_parse_constant)


def loads(text: str | bytes) -> Any:
    """``json.loads`` where numbers a double cannot hold become :class:`BadNumber` markers.

    A decimal literal with more digits than a double keeps (``0.10000000000000001``) is read as
    that double, as every JSON reader (and Truto) reads it; only overflow to infinity, underflow
    to zero and the non-standard ``NaN``/``Infinity`` literals are marked. Bytes are decoded as
    ``json.loads`` decodes them (UTF-8/16/32, detected); anything else ``json.loads`` refuses
    (a text starting with a byte-order mark, a non-text value) is left to it, for its error.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif not isinstance(text, str) or text.startswith("\ufeff"):
        return json.loads(text, parse_float=parse_float_text, parse_constant=_parse_constant)
    return _DECODER.decode(text)


def compact_encoder(
    *,
    sort_keys: bool = False,
    ensure_ascii: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """``json.JSONEncoder(separators=(",", ":"), ...).encode``: the same text, built once.

    ``JSONEncoder.encode`` builds a C encoder and a fresh cycle-marker dict on every call, which
    costs more than encoding a small request body (and the bulk path encodes two per row: the
    body and its Idempotency-Key fingerprint). Here the C encoder is built once, without cycle
    markers: what it encodes has passed :func:`json_value`, which refuses nesting beyond
    :data:`MAX_DEPTH`, so no cycle reaches it (one would raise ``RecursionError`` rather than
    ``ValueError``; neither is sent). Without the C accelerator it is ``JSONEncoder.encode``.
    """
    encoder = json.JSONEncoder(
        separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=default
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return encoder.encode
    strings = (
        json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    )
    chunks = make(None, encoder.default, strings, None, ":", ",", sort_keys, False, True)

    def encode(value: Any) -> str:
        if isinstance(value, str):  # as JSONEncoder.encode: a lone string is quoted directly
            return str(strings(value))
        return "".join(chunks(value, 0))

    return encode

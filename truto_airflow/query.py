"""Truto's bracket query-string convention, both ways.

Truto documents one encoding for every API ("Querying in Truto API"): objects become
``a[b]=c`` (recursively ``a[b][c]=d``), arrays repeat ``a[]=x`` and objects inside arrays continue
with ``a[][k]=v``. Booleans are ``true``/``false`` and date-times ISO 8601. ``None`` is *omitted*
(Truto's own Python SDK sends the string ``"None"``, which a CRM then filters on), and so are empty
arrays and objects, which have no representation in this encoding. What the encoding cannot
carry unambiguously is refused (:class:`QueryEncodingError`): keys that are empty or contain
``[``/``]``, an object whose keys are all digits (it reads back as an array), text that is not
Unicode, non-finite numbers.

:func:`encode_query` turns a mapping into ordered ``(key, value)`` pairs for an HTTP client;
:func:`decode_query` is the server-side inverse (used by the emulator), which also accepts the
indexed ``a[0]=x`` form that Truto's TypeScript SDK sends.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["QueryEncodingError", "decode_query", "encode_query", "encode_scalar"]


class QueryEncodingError(ValueError):
    """A query value cannot be represented in Truto's query convention."""


def encode_scalar(value: Any, *, key: str = "value") -> str:
    """Render one leaf value the way Truto expects it in a query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return encode_scalar(value.value, key=key)
    if isinstance(value, str):
        return _text(value, key)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryEncodingError(f"query parameter {key!r}: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise QueryEncodingError(f"query parameter {key!r}: {value!r} is not a finite number")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        # Naive date-times are taken as UTC, Airflow's own convention, so the offset is explicit.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return aware.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise QueryEncodingError(
        f"query parameter {key!r}: cannot encode a {type(value).__name__}; "
        "use strings, numbers, booleans, date-times, lists or mappings"
    )


def _text(value: str, key: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise QueryEncodingError(
            f"query parameter {key!r}: the text contains a lone surrogate, which is not Unicode"
        ) from None
    return value


def _check_key(key: Any, prefix: str | None) -> str:
    """A key Truto's bracket form carries unambiguously: a non-empty string without brackets."""
    where = f"query parameter {prefix!r}: nested keys" if prefix else "query parameter names"
    if not isinstance(key, str) or not key:
        raise QueryEncodingError(f"{where} must be non-empty strings, got {key!r}")
    if "[" in key or "]" in key:
        raise QueryEncodingError(
            f"{where} cannot contain '[' or ']' (got {key!r}): brackets are how nesting is "
            "encoded, so the CRM would read a different structure; pass a nested mapping "
            "instead (e.g. {'filter': {'name': ...}} for filter[name])"
        )
    return _text(key, prefix or key)


def encode_query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Encode ``params`` into ordered ``(key, value)`` pairs using Truto's bracket convention.

    >>> encode_query({"foo": {"bar": "baz", "bar1": {"bar2": "baz2"}}})
    [('foo[bar]', 'baz'), ('foo[bar1][bar2]', 'baz2')]
    >>> encode_query({"foo": ["bar", {"bar1": "baz1"}], "skip": None, "flag": True})
    [('foo[]', 'bar'), ('foo[][bar1]', 'baz1'), ('flag', 'true')]
    """
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _encode_into(pairs, _check_key(key, None), value)
    return pairs


def _encode_into(pairs: list[tuple[str, str]], prefix: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        keys = [_check_key(sub_key, prefix) for sub_key in value]
        if keys and all(_is_index(k) for k in keys):
            raise QueryEncodingError(
                f"query parameter {prefix!r}: an object whose keys are all digits ({keys[0]!r}"
                "...) reads back as an array in Truto's bracket form; pass a list, or add a "
                "non-digit key"
            )
        for sub_key, sub_value in zip(keys, value.values(), strict=True):
            _encode_into(pairs, f"{prefix}[{sub_key}]", sub_value)
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        for item in items:
            _encode_into(pairs, f"{prefix}[]", item)
        return
    pairs.append((prefix, encode_scalar(value, key=prefix)))


_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    match = _KEY_RE.match(key)
    if match is None:
        # Not bracket notation (for example "a]b"): treat the whole key as a plain name.
        return [key]
    return [match.group(1), *_SEGMENT_RE.findall(match.group(2))]


def decode_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Parse bracketed query pairs back into nested dicts and lists (values stay strings).

    ``a[]=x`` appends, ``a[0]=x`` indexes, ``a[][k]=v`` starts a new object in the array unless the
    last object has no ``k`` yet (so ``a[][k]=1&a[][j]=2`` is one object, the encoder's output
    for ``[{"k": 1, "j": 2}]``). As in every qs-style parser, object keys made only of digits
    read back as array indices unless the same object also has a non-digit key.

    >>> decode_query([("foo[bar]", "baz"), ("foo[bar1][bar2]", "baz2")])
    {'foo': {'bar': 'baz', 'bar1': {'bar2': 'baz2'}}}
    >>> decode_query([("a[0]", "x"), ("a[1]", "y"), ("b[]", "z")])
    {'a': ['x', 'y'], 'b': ['z']}
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        segments = _split_key(key)
        _assign(root, segments, value)
    return _finalise(root)  # type: ignore[no-any-return]


class _Indexed(dict[str, Any]):
    """An object whose keys so far are all array indices (``a[0]``, ``a[1]``): a list when
    finalised, unless a non-index key turns up (then it stays an object, as qs does)."""


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _new_container(nxt: str) -> Any:
    if nxt == "":
        return []
    return _Indexed() if _is_index(nxt) else {}


def _assign(container: Any, segments: list[str], value: str) -> None:
    head, rest = segments[0], segments[1:]
    if isinstance(container, list):
        if head != "":
            raise QueryEncodingError(f"[{head}] cannot follow an array appended with []")
        if not rest:
            container.append(value)
            return
        nxt = rest[0]
        last = container[-1] if container else None
        target: Any
        if (isinstance(last, dict) and nxt != "" and nxt not in last) or (
            nxt == "" and isinstance(last, list) and not rest[1:]
        ):
            target = last
        else:
            target = _new_container(nxt)
            container.append(target)
        _assign(target, rest, value)
        return
    if head == "":
        raise QueryEncodingError("[] cannot follow an object key that already has values")
    if not rest:
        existing = container.get(head)
        if existing is None:
            container[head] = value
        elif isinstance(existing, list):
            existing.append(value)
        elif isinstance(existing, dict):
            raise QueryEncodingError(f"{head!r} is used both as a value and as an object")
        else:
            container[head] = [existing, value]  # a repeated plain key: keep both values
        return
    nxt = rest[0]
    target = container.get(head)
    if target is None or isinstance(target, str):
        if target is not None:
            raise QueryEncodingError(f"{head!r} is used both as a value and as an object")
        target = _new_container(nxt)
        container[head] = target
    if nxt == "" and not isinstance(target, list):
        raise QueryEncodingError(f"{head!r} is used both as an array and as an object")
    if nxt != "" and isinstance(target, list):
        raise QueryEncodingError(f"{head!r} is used both as an array and as an object")
    _assign(target, rest, value)


def _finalise(node: Any) -> Any:
    if isinstance(node, _Indexed) and all(_is_index(k) for k in node):
        return [_finalise(node[k]) for k in sorted(node, key=int)]
    if isinstance(node, dict):
        return {k: _finalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_finalise(v) for v in node]
    return node

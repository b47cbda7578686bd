"""The server side of Truto's bracket query convention: query pairs back into nested values.

The client side (:func:`truto_airflow.query.encode_query`) lives with the hook; this inverse is
the emulator's alone. It also accepts the indexed ``a[0]=x`` form that Truto's TypeScript SDK
sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from truto_airflow.query import QueryEncodingError, is_array_index

__all__ = ["decode_query"]

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


def _new_container(nxt: str) -> Any:
    if nxt == "":
        return []
    return _Indexed() if is_array_index(nxt) else {}


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
    if isinstance(node, _Indexed) and all(is_array_index(k) for k in node):
        return [_finalise(node[k]) for k in sorted(node, key=int)]
    if isinstance(node, dict):
        return {k: _finalise(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_finalise(v) for v in node]
    return node

"""Values as Airflow templates render them, read the same way for every option.

Without ``render_template_as_native_obj=True`` every templated value arrives as a string: an
unset param becomes ``""`` or ``"None"``, and a dict or list becomes its Python repr. ``body``,
``remote_query``, ``exclude_fields`` and bulk ``updates`` all read such strings through
:func:`parse_rendered` (JSON, as ``| tojson`` renders it, else a Python literal read with
:func:`ast.literal_eval`, which evaluates literals only, never code), and refuse anything else
with one message that names both fixes.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from typing import Any

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import BadNumber, loads, parse_float_text

__all__ = [
    "RENDER_HINT",
    "blank_to_none",
    "parse_object_text",
    "parse_rendered",
    "rendered_list",
    "rendered_mapping",
    "rendered_object",
]

#: The two ways to hand a template's structured value over intact.
RENDER_HINT = (
    "set render_template_as_native_obj=True on the DAG (or pass the XComArg itself), or render "
    "it with '| tojson'"
)

_UNREADABLE = object()


def blank_to_none(value: Any) -> Any:
    """``None`` for an option that rendered empty (``{{ params.x }}`` with ``x`` unset)."""
    if isinstance(value, str) and value.strip() in {"", "None"}:
        return None
    return value


def _literal(text: str) -> Any:
    """A Python literal; float literals that overflow or underflow are marked, not rounded."""
    tree = ast.parse(text, mode="eval")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, float)
            and (node.value == 0.0 or math.isinf(node.value))
        ):
            checked = parse_float_text(ast.get_source_segment(text, node) or repr(node.value))
            if isinstance(checked, BadNumber):
                node.value = checked  # type: ignore[assignment]  # literal_eval returns it as is
    return ast.literal_eval(tree)


def parse_rendered(text: str | bytes) -> Any:
    """The value a rendered string spells, as JSON or as a Python literal; see the module doc.

    Numbers a double cannot hold come back as markers the body validation refuses by path.
    Raises :class:`TrutoInputError` (without the fix; callers add it) when it is neither.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TrutoInputError(f"the rendered bytes are not UTF-8 ({exc})") from None
    stripped = text.strip()
    try:
        return loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return _literal(stripped)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNREADABLE


def _read(name: str, value: Any, kind: type, noun: str, what: str | None) -> Any:
    head = f"{what}: " if what else ""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise TrutoInputError(
            f"{head}{name} rendered to an empty string; check the XCom or param it reads"
        )
    parsed = parse_rendered(value)
    if isinstance(parsed, kind):
        return parsed
    snippet = text.strip()[:60] + ("..." if len(text.strip()) > 60 else "")
    raise TrutoInputError(
        f"{head}{name} must be {noun}, but the rendered string is not one ({snippet!r}); "
        f"{RENDER_HINT}"
    )


def rendered_object(name: str, value: str | bytes, *, what: str | None = None) -> dict[str, Any]:
    """The mapping a rendered string spells, or the one error message naming both fixes."""
    result: dict[str, Any] = _read(name, value, dict, "a mapping (a JSON object)", what)
    return result


def rendered_list(name: str, value: Any, *, what: str | None = None) -> list[Any] | None:
    """A list option that may have been rendered to a string; ``None`` when unset.

    Accepted strings: a JSON list (``| tojson``), a Python list repr (default rendering) or
    ``"a,b"``. A string that opens like a list or object but is not a list gets the one error
    message naming both fixes. Items are not checked here.
    """
    value = blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if not text.strip().startswith(("[", "{")):
            return [part.strip() for part in text.split(",") if part.strip()]
        result: list[Any] = _read(name, value, list, "a list (a JSON list)", what)
        return result
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TrutoInputError(f"{name} must be a list, got {type(value).__name__}")


def parse_object_text(text: str) -> dict[str, Any] | None:
    """A JSON object string (``| tojson``) or a Python dict repr (default rendering), else None."""
    value = parse_rendered(text)
    return value if isinstance(value, dict) else None


def rendered_mapping(name: str, value: Any) -> Mapping[str, Any] | None:
    """A mapping option that may have been rendered to a string; ``None`` when unset."""
    value = blank_to_none(value)
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, (str, bytes)):
        return rendered_object(name, value)
    raise TrutoInputError(f"{name} must be a mapping (a JSON object), got {type(value).__name__}")

"""Values as Airflow templates render them.

Without ``render_template_as_native_obj=True`` every templated value arrives as a string: an
unset param becomes ``""`` or ``"None"``, and a dict becomes its Python repr. Both operators (and
the body model) read such values through these helpers, so they behave the same everywhere.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from truto_airflow.exceptions import TrutoInputError, truncate

__all__ = ["blank_to_none", "parse_object_text", "rendered_list", "rendered_mapping"]


def blank_to_none(value: Any) -> Any:
    """``None`` for an option that rendered empty (``{{ params.x }}`` with ``x`` unset)."""
    if isinstance(value, str) and value.strip() in {"", "None"}:
        return None
    return value


def parse_object_text(text: str) -> dict[str, Any] | None:
    """A JSON object string (``| tojson``) or a Python dict repr (default rendering), else None.

    The repr is read with :func:`ast.literal_eval`, which evaluates literals only, never code.
    """
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def rendered_mapping(name: str, value: Any) -> Mapping[str, Any] | None:
    """A mapping option that may have been rendered to a string; ``None`` when unset."""
    value = blank_to_none(value)
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        parsed = parse_object_text(value)
        if parsed is not None:
            return parsed
    raise TrutoInputError(
        f"{name} must be a mapping (or a JSON object string), got {type(value).__name__}"
    )


def rendered_list(name: str, value: Any) -> list[Any] | None:
    """A list option that may have been rendered to a string; ``None`` when unset.

    Accepted strings: a JSON list (``| tojson``), a Python list repr (default rendering, read
    with :func:`ast.literal_eval`: literals only) or ``"a,b"``. Items are not checked here.
    """
    value = blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                parsed = None
        if not isinstance(parsed, list):
            raise TrutoInputError(f"{name} {truncate(text, 80)!r} looks like a list but is not one")
        return parsed
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TrutoInputError(f"{name} must be a list, got {type(value).__name__}")

"""Truto's unified list envelope: opaque cursors, ``limit`` and ``truto_key_by``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from truto_airflow.emulator.errors import ApiError

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "limit", "page"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _cursor_offset(query: dict[str, Any]) -> int:
    cursor = query.get("next_cursor")
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        kind, _, number = decoded.partition(":")
        if kind != "offset":
            raise ValueError(decoded)
        return max(0, int(number))
    except (ValueError, binascii.Error, AttributeError) as exc:
        raise ApiError(400, "Invalid next_cursor.") from exc


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def limit(query: dict[str, Any]) -> int:
    raw = query.get("limit")
    if raw in (None, ""):
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "Invalid query parameter 'limit': expected an integer.") from exc
    if value < 1:
        raise ApiError(400, "Invalid query parameter 'limit': must be >= 1.")
    return min(value, MAX_LIMIT)


def page(items: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """Truto's unified list envelope, with ``truto_key_by`` re-keying."""
    offset, size = _cursor_offset(query), limit(query)
    chunk = items[offset : offset + size]
    end = offset + len(chunk)
    result: Any = chunk
    key_by = query.get("truto_key_by")
    if key_by:
        result = {str(item[key_by]): item for item in chunk if item.get(key_by) is not None}
    return {
        "result": result,
        "next_cursor": _cursor(end) if end < len(items) else None,
        "prev_cursor": _cursor(max(0, offset - size)) if offset > 0 else None,
        "result_count": len(chunk),
    }

"""How the emulator answers: JSON bodies, Truto's shaping options, streamed and dropped responses.

Truto's shaping query parameters (``truto_response_format``, ``truto_ignore_remote_data``,
``truto_exclude_fields``, ``remote_query``) are read once into :class:`Options` and applied to a
record by :func:`shape`. A dropped connection is a response that announces its length, sends a
few bytes and aborts (:class:`DroppingResponse`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from truto_airflow.emulator.errors import ApiError
from truto_airflow.emulator.seed import SeedAccount
from truto_airflow.emulator.vendor import raw_response

__all__ = [
    "FORMATS",
    "DroppedConnection",
    "DroppingResponse",
    "Options",
    "drop",
    "dumps",
    "error_response",
    "json_response",
    "parse_options",
    "render",
    "shape",
]

FORMATS = ("unified", "raw", "normalized", "stream")


class DroppedConnection(Exception):
    """Raised mid-body to make the server abort the connection (an injected fault)."""


class _DropFilter(logging.Filter):
    """Keep uvicorn from logging our deliberate aborts as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status, headers=headers, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    return json_response(exc.status, exc.body, exc.headers)


class DroppingResponse(Response):
    """Announces a Content-Length, sends part of the body, then aborts the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body[:8], "more_body": True})
        raise DroppedConnection("injected dropped connection")


def drop(body: bytes) -> Response:
    padded = body if len(body) > 16 else body + b" " * 16
    return DroppingResponse(padded, 200, media_type="application/json")


@dataclass(frozen=True)
class Options:
    """The Truto-specific query parameters shared by every unified route."""

    fmt: str
    ignore_remote_data: bool
    exclude: frozenset[str]
    remote_query: dict[str, Any] | None


def _bool_param(query: dict[str, Any], name: str) -> bool:
    value = query.get(name)
    if value is None or value in ("false", "0", ""):
        return False
    if value in ("true", "1"):
        return True
    raise ApiError(400, f"Invalid query parameter '{name}': expected true or false.")


def parse_options(query: dict[str, Any]) -> Options:
    fmt = query.get("truto_response_format", "unified")
    if fmt not in FORMATS:
        raise ApiError(
            400,
            f"Invalid truto_response_format {fmt!r}: expected one of {', '.join(FORMATS)}.",
        )
    exclude = query.get("truto_exclude_fields", [])
    if isinstance(exclude, str):  # tolerated: the comma-separated form of the vendor's notes
        exclude = [part for part in exclude.split(",") if part]
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise ApiError(400, "Invalid query parameter 'truto_exclude_fields': expected strings.")
    remote_query = query.get("remote_query")
    if remote_query is not None and not isinstance(remote_query, dict):
        raise ApiError(400, "Invalid query parameter 'remote_query': expected an object.")
    return Options(
        fmt=fmt,
        ignore_remote_data=_bool_param(query, "truto_ignore_remote_data"),
        exclude=frozenset(exclude),
        remote_query=remote_query,
    )


def shape(
    item: dict[str, Any], opts: Options, documented: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Apply the shaping options to one unified item (a fresh dict the caller owns)."""
    if opts.remote_query is not None and isinstance(item.get("remote_data"), dict):
        item["remote_data"] = {**item["remote_data"], "remote_query": opts.remote_query}
    if opts.fmt == "normalized":
        item = {name: item.get(name) for name in sorted({*documented, *item})}
    if opts.ignore_remote_data:
        item.pop("remote_data", None)
    for name in opts.exclude:
        item.pop(name, None)
    return item


async def _stream(payload: bytes, parts: int = 4) -> AsyncIterator[bytes]:
    size = max(1, -(-len(payload) // parts))
    for start in range(0, len(payload), size):
        yield payload[start : start + size]
        await asyncio.sleep(0)  # let each chunk go out as its own write


def render(
    account: SeedAccount, record: dict[str, Any], opts: Options, unified: dict[str, Any]
) -> Response:
    """One record as a 200 answer in the requested format (``unified``: its shaped unified form)."""
    if opts.fmt == "raw":
        return json_response(200, raw_response(account.integration, record))
    body = dumps(unified)
    if opts.fmt == "stream":
        return StreamingResponse(_stream(body), 200, media_type="application/json")
    return Response(body, 200, media_type="application/json")

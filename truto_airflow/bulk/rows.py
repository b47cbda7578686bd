"""Where rows come from: a list (XCom, params, TaskFlow) or a JSON Lines file, streamed.

A JSON Lines source (local path, ``file://`` URI, or anything ``ObjectStoragePath`` opens such as
``s3://bucket/key.jsonl``) is read line by line and never loaded whole. A malformed line becomes
one ``invalid`` row (with its line number); it does not stop the others.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import loads
from truto_airflow.rendered import rendered_list

__all__ = ["RawRow", "RowSource", "open_source", "resolve_path"]

#: Keys a row may have; anything else is a mistake worth naming (fields belong under "body").
ROW_KEYS = frozenset({"id", "body", "integrated_account_id"})


@dataclass(frozen=True, slots=True)
class RawRow:
    """One input row before validation. ``error`` is set when it could not even be parsed."""

    index: int
    data: Any
    line: int | None = None
    error: str | None = None


@dataclass
class RowSource:
    """An iterator of :class:`RawRow` plus what is known about it up front."""

    rows: Iterator[RawRow]
    total: int | None
    description: str


def _is_uri(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isidentifier()


def resolve_path(path: Any) -> Any:
    """A ``pathlib.Path`` for local paths and ``file://``, else an ``ObjectStoragePath``."""
    if isinstance(path, pathlib.Path):
        return path
    if isinstance(path, os.PathLike) and not hasattr(path, "protocol"):
        return pathlib.Path(os.fspath(path))
    if hasattr(path, "protocol") and hasattr(path, "open"):
        return path  # already an ObjectStoragePath
    text = str(path).strip()
    if text.startswith("file://"):
        return pathlib.Path(text[len("file://") :])
    if _is_uri(text):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(text)
    return pathlib.Path(text).expanduser()


def _count_lines(path: pathlib.Path) -> int | None:
    """Non-blank lines of a local file, counted in binary chunks (for the progress ETA)."""
    try:
        count = 0
        pending_text = False
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                for piece in chunk.split(b"\n")[:-1]:
                    if pending_text or piece.strip():
                        count += 1
                    pending_text = False
                tail = chunk.rsplit(b"\n", 1)[-1]
                pending_text = pending_text or bool(tail.strip())
        return count + (1 if pending_text else 0)
    except OSError:
        return None


def _iter_jsonl(fh: IO[bytes]) -> Iterator[RawRow]:
    index = 0
    for line_no, raw in enumerate(fh, start=1):
        if not raw.strip():
            continue
        try:
            data = loads(raw)  # numbers a double cannot hold are refused later, by path
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            yield RawRow(index, None, line_no, f"line {line_no} is not valid JSON: {exc}")
        else:
            yield RawRow(index, data, line_no)
        index += 1


def _iter_path(path: Any) -> Iterator[RawRow]:
    with path.open("rb") as fh:
        yield from _iter_jsonl(fh)


def _iter_list(items: Iterable[Any]) -> Iterator[RawRow]:
    for index, item in enumerate(items):
        yield RawRow(index, item)


def open_source(updates: Any) -> RowSource:
    """Turn the operator's ``updates`` argument into a row stream.

    Accepted: a list/tuple/iterable of row mappings; a JSON array string (a template rendered
    without native objects); a path or URI of a JSON Lines file (``.jsonl``/``.ndjson``).
    """
    if updates is None:
        raise TrutoInputError(
            "updates is empty: pass a list of {'id', 'body'} rows or the path of a JSON Lines file"
        )
    if isinstance(updates, Mapping):
        raise TrutoInputError(
            "updates must be a list of rows or a path, got a single mapping; wrap it in a list"
        )
    if isinstance(updates, bytes):
        updates = updates.decode()
    if isinstance(updates, str):
        text = updates.strip()
        if text.startswith(("[", "{")):  # a rendered list (or a lone row): never a path
            parsed = rendered_list("updates", text) or []
            return RowSource(_iter_list(parsed), len(parsed), f"{len(parsed)} rows (JSON)")
        if not text:
            raise TrutoInputError("updates rendered to an empty string; check the XCom or param")
        updates = resolve_path(text)
    if isinstance(updates, pathlib.Path) or hasattr(updates, "protocol"):
        path = updates
        if isinstance(path, pathlib.Path):
            if not path.is_file():
                raise TrutoInputError(f"updates file {str(path)!r} does not exist")
            total = _count_lines(path)
        else:
            total = None
        return RowSource(_iter_path(path), total, f"JSON Lines {path}")
    if isinstance(updates, (list, tuple)):
        return RowSource(_iter_list(updates), len(updates), f"{len(updates)} rows")
    if isinstance(updates, Iterable):
        return RowSource(_iter_list(updates), None, "row iterator")
    raise TrutoInputError(
        f"updates must be a list of rows or a JSON Lines path, got {type(updates).__name__}"
    )

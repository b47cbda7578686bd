"""Where rows come from: a list (XCom, params, TaskFlow) or a JSON Lines file, streamed.

A JSON Lines source (local path, ``file://`` URI, or anything ``ObjectStoragePath`` opens such as
``s3://bucket/key.jsonl``) is read line by line and never loaded whole. A malformed line becomes
one ``invalid`` row (with its line number); it does not stop the others.

Some runs read the input twice (``skip_unchanged`` scans the ids first). Lists and files are
simply read again; an iterator that can be read only once (a generator, ``map``, ``iter()``) is
kept in an anonymous temporary file on the first pass (:class:`_OneShot`), so the second pass
sees every row instead of silently none.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import loads
from truto_airflow.rendered import rendered_list

__all__ = ["RawRow", "RowSource", "named_path", "open_source", "resolve_path"]

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
    """An iterator of :class:`RawRow` plus what is known about it up front.

    ``rows`` is the pass the engine reads; :meth:`scan` is an extra, independent pass over the
    same rows (for the id scan of ``skip_unchanged``) that leaves ``rows`` whole.
    """

    rows: Iterator[RawRow]
    total: int | None
    description: str
    reopen: Callable[[], Iterator[RawRow]] | None = None

    def scan(self) -> Iterator[RawRow]:
        """Every row once more, without consuming :attr:`rows`."""
        if self.reopen is None:
            raise TrutoInputError(f"{self.description} cannot be read twice; pass a list or path")
        return self.reopen()


class _OneShot:
    """Rows of an iterator that can be read only once, with a second pass when asked.

    Until :meth:`scan` is called nothing is kept (a single pass streams). ``scan`` reads the
    iterator to its end into an anonymous temporary file (pickled rows: any value a list could
    hold, not only JSON), and both passes then read that file. A row that cannot be pickled
    becomes an ``invalid`` row saying so, never a missing one.
    """

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._file: IO[bytes] | None = None
        self._started = False
        self.count: int | None = None

    def rows(self) -> Iterator[RawRow]:
        self._started = True
        if self._file is None:
            yield from _iter_list(self._items)
        else:
            yield from self._read()

    def scan(self) -> Iterator[RawRow]:
        if self._file is None:
            if self._started:
                raise TrutoInputError("updates is an iterator already being read; pass a list")
            self._keep()
        return self._read()

    def _keep(self) -> None:
        fh = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as this source
        count = 0
        for index, item in enumerate(self._items):
            try:
                data = pickle.dumps(RawRow(index, item), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                error = (
                    f"row {index} could not be kept for the second read of the input "
                    f"({type(exc).__name__}); skip_unchanged reads the rows twice: pass plain "
                    "JSON values"
                )
                data = pickle.dumps(RawRow(index, None, None, error))
            fh.write(len(data).to_bytes(8, "big"))
            fh.write(data)
            count += 1
        fh.flush()
        self._file = fh
        self.count = count

    def _read(self) -> Iterator[RawRow]:
        assert self._file is not None
        fd = self._file.fileno()
        offset = 0
        while header := os.pread(fd, 8, offset):
            size = int.from_bytes(header, "big")
            row: RawRow = pickle.loads(os.pread(fd, size, offset + 8))  # noqa: S301 - our own file
            offset += 8 + size
            yield row


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


def named_path(updates: Any) -> Any | None:
    """The JSON Lines file ``updates`` names (as :func:`resolve_path` gives it), or ``None`` when
    ``updates`` holds the rows themselves: a list or iterator, a rendered JSON list or row, blank.

    The one rule for "is this input a file, and which": the engine reads that file and lineage
    reports it.
    """
    if isinstance(updates, bytes):
        updates = updates.decode()
    if isinstance(updates, str):
        text = updates.strip()
        if not text or text.startswith(("[", "{")):  # a rendered list (or a lone row)
            return None
        return resolve_path(text)
    if isinstance(updates, os.PathLike) or hasattr(updates, "protocol"):
        return resolve_path(updates)
    return None


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
    path = named_path(updates)
    if path is not None:
        if isinstance(path, pathlib.Path):
            if not path.is_file():
                raise TrutoInputError(f"updates file {str(path)!r} does not exist")
            total = _count_lines(path)
        else:
            total = None
        return RowSource(
            _iter_path(path), total, f"JSON Lines {path}", reopen=lambda: _iter_path(path)
        )
    if isinstance(updates, str):  # not a path: a rendered list (or a lone row), or blank
        if not updates.strip():
            raise TrutoInputError("updates rendered to an empty string; check the XCom or param")
        parsed = rendered_list("updates", updates.strip()) or []
        return RowSource(
            _iter_list(parsed),
            len(parsed),
            f"{len(parsed)} rows (JSON)",
            reopen=lambda: _iter_list(parsed),
        )
    if isinstance(updates, (list, tuple)):
        rows = updates
        return RowSource(
            _iter_list(rows), len(rows), f"{len(rows)} rows", reopen=lambda: _iter_list(rows)
        )
    if isinstance(updates, Iterable):
        return _one_shot_source(updates)
    raise TrutoInputError(
        f"updates must be a list of rows or a JSON Lines path, got {type(updates).__name__}"
    )


def _one_shot_source(items: Iterable[Any]) -> RowSource:
    kept = _OneShot(items)
    source = RowSource(kept.rows(), None, "row iterator")

    def again() -> Iterator[RawRow]:
        rows = kept.scan()
        source.total = kept.count
        return rows

    source.reopen = again
    return source

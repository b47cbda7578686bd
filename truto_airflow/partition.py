"""Partition rows by integrated account into chunk files of at most N rows.

Why: rate limits are per integrated account. Mapped ``UpdateOpportunitiesOperator`` instances
each pace the accounts *they* write to; when two instances share an account, neither knows
the other's traffic and together they overshoot that account's budget. Chunks that never mix
accounts let each task own its account's budget (see docs/scaling.md for keeping several
chunks of one account from running at once).

:func:`partition_by_account` streams its input (a list, a JSON array string, or a JSON Lines
file, local or ``ObjectStoragePath``; the same inputs ``UpdateOpportunitiesOperator`` takes) and
keeps only per-account counters and a bounded number of open files in memory. Chunks are staged
in a local temporary directory and published to ``output_dir`` (local or object storage) one
file at a time with :func:`~truto_airflow.output.atomic_output`, only after the whole input was
read: a bad row fails the task before any chunk appears.

The return value is a list ready for ``.expand_kwargs()``: ``{"updates": <chunk path>,
"integrated_account_id": <account>}`` per chunk, interleaved across accounts (first chunk of
every account, then every second chunk, ...), so instances that start together tend to write
to different accounts.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from truto_airflow.bulk.rows import open_source, resolve_path
from truto_airflow.exceptions import TrutoInputError
from truto_airflow.models.options import validate_integrated_account_id
from truto_airflow.output import account_line, atomic_output
from truto_airflow.rendered import blank_to_none

__all__ = ["DEFAULT_MAX_ROWS", "AccountPartitioner", "Chunk", "partition_by_account"]

#: Rows per chunk by default: minutes of work per task (see docs/scaling.md, "Chunk size").
DEFAULT_MAX_ROWS = 5000
#: Staging files kept open at once; more accounts than this reopen files in append mode.
MAX_OPEN_FILES = 64


def _max_rows(value: Any) -> int | None:
    """``max_rows`` as given or as a template rendered it (``"5000"``, ``"None"``)."""
    value = blank_to_none(value)
    if value is None:
        return None
    try:
        number = int(value) if not isinstance(value, (bool, float)) else 0
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise TrutoInputError(
            f"max_rows must be a whole number >= 1 (or None for one chunk per account), "
            f"got {value!r}"
        )
    return number


@dataclass(frozen=True)
class Chunk:
    """One published chunk file: rows of exactly one integrated account."""

    integrated_account_id: str
    index: int
    rows: int
    path: str

    def kwargs(self) -> dict[str, str]:
        """The ``UpdateOpportunitiesOperator`` arguments for this chunk (``expand_kwargs``)."""
        return {"updates": self.path, "integrated_account_id": self.integrated_account_id}


@dataclass
class _Account:
    chunks: int = 0  # chunks started so far
    in_current: int = 0  # rows in the chunk being filled
    rows: int = 0


class AccountPartitioner:
    """Accumulate rows into per-account staging files; :meth:`publish` writes the chunks.

    Use as a context manager: leaving it without :meth:`publish` (an error) deletes the staging
    directory and publishes nothing.
    """

    def __init__(
        self,
        output_dir: Any,
        *,
        max_rows: Any = DEFAULT_MAX_ROWS,
        integrated_account_id: Any = None,
        prefix: str = "chunk",
        max_open_files: int = MAX_OPEN_FILES,
    ) -> None:
        max_rows = _max_rows(max_rows)
        if not prefix or any(ch in prefix for ch in "/\\\0"):
            raise TrutoInputError(f"prefix {prefix!r} must be a plain file name prefix")
        self.output_dir = output_dir
        self.max_rows = max_rows
        self.default_account = (
            None
            if integrated_account_id is None
            else validate_integrated_account_id(integrated_account_id)
        )
        self.prefix = prefix
        self.max_open_files = max(1, max_open_files)
        self.accounts: dict[str, _Account] = {}
        self.rows = 0
        self._staging = pathlib.Path(tempfile.mkdtemp(prefix="truto-partition-"))
        self._open: collections.OrderedDict[tuple[str, int], IO[str]] = collections.OrderedDict()

    def __enter__(self) -> AccountPartitioner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def _name(self, account: str, index: int) -> str:
        return f"{self.prefix}-{account}-{index:05d}.jsonl"

    def _handle(self, account: str, index: int) -> IO[str]:
        key = (account, index)
        fh = self._open.get(key)
        if fh is not None:
            self._open.move_to_end(key)
            return fh
        while len(self._open) >= self.max_open_files:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        fh = (self._staging / self._name(account, index)).open("a", encoding="utf-8")
        self._open[key] = fh
        return fh

    def _close(self, account: str, index: int) -> None:
        fh = self._open.pop((account, index), None)
        if fh is not None:
            fh.close()

    def add(self, row: Any, *, where: str) -> str:
        """Stage one row; returns its (canonical) integrated account id. ``where`` names the
        row in errors (``"row 3"``, ``"line 12"``)."""
        if not isinstance(row, Mapping):
            raise TrutoInputError(
                f"{where} is a {type(row).__name__}, not an object with an "
                "'integrated_account_id'; fix the input rows"
            )
        raw = row.get("integrated_account_id")
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if self.default_account is None:
                raise TrutoInputError(
                    f"{where} has no 'integrated_account_id' and no default was given: add "
                    "the field to every row or pass integrated_account_id=..."
                )
            account = self.default_account
        else:
            account = validate_integrated_account_id(
                raw, source=f"{where} field 'integrated_account_id'"
            )
        try:
            line = account_line(row, account)
        except (TypeError, ValueError) as exc:
            raise TrutoInputError(
                f"{where} cannot be written as JSON ({exc}); NaN/Infinity and non-JSON values "
                "are refused: fix the row"
            ) from None
        state = self.accounts.setdefault(account, _Account())
        if state.chunks == 0 or (self.max_rows is not None and state.in_current >= self.max_rows):
            if state.chunks:
                self._close(account, state.chunks - 1)
            state.chunks += 1
            state.in_current = 0
        self._handle(account, state.chunks - 1).write(line)
        state.in_current += 1
        state.rows += 1
        self.rows += 1
        return account

    def publish(self) -> list[Chunk]:
        """Write every chunk to ``output_dir``; the chunks, interleaved across accounts."""
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        base = resolve_path(self.output_dir)
        per_account: list[list[Chunk]] = []
        for account, state in self.accounts.items():
            chunks = []
            for index in range(state.chunks):
                staged = self._staging / self._name(account, index)
                with atomic_output(base / staged.name) as (out, final), staged.open("rb") as src:
                    shutil.copyfileobj(src, out)
                last = index == state.chunks - 1
                rows = state.in_current if last or self.max_rows is None else self.max_rows
                chunks.append(Chunk(account, index, rows, str(final)))
                staged.unlink()
            per_account.append(chunks)
        self.discard()
        return list(_interleave(per_account))

    def discard(self) -> None:
        """Close and delete the staging files (nothing is published)."""
        for fh in self._open.values():
            fh.close()
        self._open.clear()
        shutil.rmtree(self._staging, ignore_errors=True)


def _interleave(groups: list[list[Chunk]]) -> Iterator[Chunk]:
    depth = max((len(g) for g in groups), default=0)
    for level in range(depth):
        for group in groups:
            if level < len(group):
                yield group[level]


def partition_by_account(
    rows: Any,
    output_dir: Any,
    *,
    max_rows: Any = DEFAULT_MAX_ROWS,
    integrated_account_id: Any = None,
    prefix: str = "chunk",
) -> list[dict[str, str]]:
    """Split ``rows`` into per-account JSON Lines chunks of at most ``max_rows`` rows.

    :param rows: a list of row mappings, a JSON array string, or the path/URL of a JSON Lines
        file (read line by line). Each row keeps all its fields; its ``integrated_account_id``
        is written in canonical form.
    :param output_dir: where the chunks go: a local directory or an ``ObjectStoragePath`` URL.
        Use one directory per DAG run (e.g. ``.../{{ run_id }}``).
    :param max_rows: rows per chunk; ``None`` puts each account in exactly one chunk (one
        task per account: the only way to guarantee one writer per account budget).
    :param integrated_account_id: account for rows that do not name one; without it such a row
        fails the task (nothing is guessed, nothing is published).
    :returns: ``[{"updates": path, "integrated_account_id": account}, ...]`` for
        ``UpdateOpportunitiesOperator.partial(...).expand_kwargs(...)``.
    """
    source = open_source(rows)
    with AccountPartitioner(
        output_dir, max_rows=max_rows, integrated_account_id=integrated_account_id, prefix=prefix
    ) as partitioner:
        for raw in source.rows:
            where = f"line {raw.line}" if raw.line is not None else f"row {raw.index}"
            if raw.error is not None:
                raise TrutoInputError(f"{where}: {raw.error}")
            partitioner.add(raw.data, where=where)
        return [chunk.kwargs() for chunk in partitioner.publish()]

"""Atomic file output: a failed task never leaves a half-written file at the final path.

Readers of an export or a partition chunk (the next task, a warehouse load, a human) must see
either the previous file or the complete new one. So everything is written to a temporary
sibling (``.<name>.<random>.part``) and put in place only after the last byte was written:

* local paths: :func:`os.replace`, atomic on POSIX within one file system;
* ``ObjectStoragePath`` (``s3://``, ``gs://``, ...): ``move`` of the temporary object, which on
  object stores is copy + delete. The final key appears only once complete, but the switch is
  not a single atomic step and a crash between copy and delete can leave the ``.part`` object
  behind (a lifecycle rule on ``.part`` keys cleans those up).

On any exception the temporary file is removed and the final path is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import uuid
from collections.abc import Iterator, Mapping
from typing import IO, Any

from truto_airflow.bulk.rows import resolve_path

__all__ = ["account_line", "atomic_output"]


@contextlib.contextmanager
def atomic_output(destination: Any) -> Iterator[tuple[IO[bytes], Any]]:
    """``with atomic_output(path) as (fh, final):`` write bytes to ``fh``; ``final`` is the
    resolved destination (``pathlib.Path`` or ``ObjectStoragePath``), published on success."""
    final = resolve_path(destination)
    if isinstance(final, pathlib.Path):
        final = final.absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.{uuid.uuid4().hex}.part"
    published = False
    try:
        opener: Any = partial.open  # ObjectStoragePath.open is untyped (universal_pathlib)
        with opener("wb") as fh:
            yield fh, final
        if isinstance(final, pathlib.Path):
            os.replace(partial, final)
        else:
            partial.move(final)
        published = True
    finally:
        if not published:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)


def account_line(record: Mapping[str, Any], account: str) -> str:
    """``record`` tagged with its ``integrated_account_id``, as one strict JSON Lines line
    (newline included). NaN/Infinity and non-JSON values raise ``ValueError``/``TypeError``:
    downstream parsers would reject or misread them."""
    body = json.dumps(
        {**record, "integrated_account_id": account},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return body + "\n"

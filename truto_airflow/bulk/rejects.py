"""Rejected rows (failed or invalid): a few inline for XCom, all of them in a JSON Lines file.

The first ``inline_limit`` rows are kept in memory (without bodies) for the XCom summary. Every
rejected row, body included, is streamed to a local temporary file; at the end it is copied to
``rejected_rows_path`` (local path or ``ObjectStoragePath``) when one is given, else the local
file is kept and its path reported. Only when the rows fit inline is no file reported at all.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import IO, Any

from truto_airflow.bulk.outcomes import RowResult
from truto_airflow.bulk.rows import resolve_path

__all__ = ["RejectedRows"]


class RejectedRows:
    def __init__(self, *, destination: Any = None, inline_limit: int = 20) -> None:
        self.destination = destination
        self.inline_limit = inline_limit
        self.inline: list[dict[str, Any]] = []
        self.count = 0
        self._fh: IO[str] | None = None
        self._local: pathlib.Path | None = None

    def add(self, result: RowResult) -> None:
        self.count += 1
        if len(self.inline) < self.inline_limit:
            self.inline.append(result.to_dict())
        if self._fh is None:
            fd, name = tempfile.mkstemp(prefix="truto-rejected-", suffix=".jsonl")
            self._local = pathlib.Path(name)
            self._fh = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        self._fh.write(json.dumps(result.to_dict(with_body=True), default=str) + "\n")

    def finish(self) -> dict[str, Any]:
        """Close the file and return the summary's ``rejected`` entry."""
        info: dict[str, Any] = {"count": self.count, "rows": self.inline, "location": None}
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._local is None:
            return info
        if self.count <= self.inline_limit and self.destination is None:
            self._local.unlink(missing_ok=True)
            return info
        if self.destination is not None:
            target = resolve_path(self.destination)
            if not isinstance(target, pathlib.Path):
                target.parent.mkdir(parents=True, exist_ok=True)
                with self._local.open("rb") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._local, target)
            self._local.unlink(missing_ok=True)
            info["location"] = str(target)
        else:
            info["location"] = str(self._local)
        info["truncated"] = self.count > len(self.inline)
        return info

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._local is not None:
            self._local.unlink(missing_ok=True)

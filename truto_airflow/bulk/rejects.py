"""Row records that can outgrow XCom: rejected rows and dry-run plan rows.

The first ``inline_limit`` records are kept in memory for the XCom summary. Every record is
streamed to a local temporary JSON Lines file; at the end it is copied to ``destination`` (local
path or ``ObjectStoragePath``) when one is given, else the local file is kept and its path
reported. Only when the records fit inline and no destination was asked for is no file reported.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import IO, Any

from truto_airflow.bulk.outcomes import RowResult
from truto_airflow.bulk.rows import resolve_path

__all__ = ["RecordFile", "RejectedRows"]


class RecordFile:
    """A few records inline, all of them in a JSON Lines file (see the module docstring)."""

    prefix = "truto-records-"

    def __init__(self, *, destination: Any = None, inline_limit: int = 20) -> None:
        self.destination = destination
        self.inline_limit = inline_limit
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._fh: IO[str] | None = None
        self._local: pathlib.Path | None = None

    def record(self, inline: dict[str, Any], full: dict[str, Any]) -> None:
        """Keep ``inline`` for XCom while there is room; write ``full`` to the file."""
        self.count += 1
        if len(self.rows) < self.inline_limit:
            self.rows.append(inline)
        if self._fh is None:
            fd, name = tempfile.mkstemp(prefix=self.prefix, suffix=".jsonl")
            self._local = pathlib.Path(name)
            self._fh = open(fd, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        self._fh.write(json.dumps(full, default=str) + "\n")

    def finish(self) -> dict[str, Any]:
        """Close the file and return ``{count, rows, location[, truncated]}`` for the summary."""
        info: dict[str, Any] = {"count": self.count, "rows": self.rows, "location": None}
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
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(target, pathlib.Path):
                shutil.copyfile(self._local, target)
            else:
                with self._local.open("rb") as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            self._local.unlink(missing_ok=True)
            info["location"] = str(target)
        else:
            info["location"] = str(self._local)
        info["truncated"] = self.count > len(self.rows)
        return info


class RejectedRows(RecordFile):
    """Failed and invalid rows: inline without bodies, in the file with them."""

    prefix = "truto-rejected-"

    def add(self, result: RowResult) -> None:
        self.record(result.to_dict(), result.to_dict(with_body=True))

"""A disk-backed FIFO for rows of an account that cannot be sent yet (throttled or blocked).

Keeping those rows in memory would let one slow account grow memory with the input; blocking the
reader on them would stall every other account. So they go to a local JSON Lines file and come
back, in order, when the account can send again.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

__all__ = ["SpillQueue"]


class SpillQueue:
    """Append records, pop them back in order; only a small write buffer lives in memory."""

    def __init__(self, path: pathlib.Path, *, buffer_rows: int = 256) -> None:
        self.path = path
        self._buffer: list[str] = []
        self._buffer_rows = buffer_rows
        self._written = 0
        self._read = 0
        self._offset = 0

    def __len__(self) -> int:
        return self._written + len(self._buffer) - self._read

    def push(self, record: Mapping[str, Any]) -> None:
        self._buffer.append(json.dumps(record, separators=(",", ":"), default=str))
        if len(self._buffer) >= self._buffer_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(self._buffer) + "\n")
        self._written += len(self._buffer)
        self._buffer.clear()

    def pop_many(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` records, oldest first."""
        if limit <= 0 or not len(self):
            return []
        if self._read >= self._written:
            self._flush()
        out: list[dict[str, Any]] = []
        with self.path.open("r", encoding="utf-8") as fh:
            fh.seek(self._offset)
            while len(out) < limit and self._read < self._written:
                line = fh.readline()
                if not line:
                    break
                out.append(json.loads(line))
                self._read += 1
            self._offset = fh.tell()
        return out

    def close(self) -> None:
        self._buffer.clear()
        self.path.unlink(missing_ok=True)

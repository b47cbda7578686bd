"""The success ledger: rows applied in an earlier try of the same run are not sent again.

Why not XCom: Airflow 3 clears a task instance's XComs at the start of every new try (the API
server sends ``xcom_keys_to_clear`` and the task runner deletes them before ``execute``), so a
ledger kept there is gone exactly when it is needed. Airflow 3.3's ``task_state_store``
(``context["task_state_store"]``) is scoped to (dag_id, run_id, task_id, map_index), survives
retries, and is what Airflow's own resumable operators use; it is the default store here. Where it
is missing (older Airflow, or ``execute()`` called by hand), a directory (local or any
``ObjectStoragePath``) given as ``checkpoint_path`` works the same way; with neither, the ledger
lives only in memory and the Idempotency-Key alone keeps retries safe.

Entries are the first 16 hex digits of each row's Idempotency-Key (which already encodes run,
account, opportunity and body), written in append-only chunks: incrementally while the task runs
(every ``flush_rows`` successes or ``flush_seconds``) and once more at the end, so a crashed
worker loses at most one chunk, whose rows Truto then replays by key instead of re-applying.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "LedgerStore",
    "MemoryLedgerStore",
    "NullLedgerStore",
    "PathLedgerStore",
    "SuccessLedger",
    "TaskStateLedgerStore",
]

TOKEN_LEN = 16
META_KEY = "truto_bulk_ledger"


def token_for(idempotency_key: str) -> str:
    """The ledger entry for a row: a fixed-width slice of its (hex) Idempotency-Key digest."""
    digest = idempotency_key.rsplit("-", 1)[-1]
    if len(digest) < TOKEN_LEN:
        import hashlib

        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return digest[:TOKEN_LEN]


class LedgerStore(Protocol):
    """Append-only chunk storage."""

    description: str

    def load(self) -> list[str]: ...

    def append(self, index: int, chunk: str) -> None: ...

    def clear(self) -> None: ...


class MemoryLedgerStore:
    """Lives as long as the process (tests; or no persistent store available)."""

    description = "memory (not kept across tries)"

    def __init__(self) -> None:
        self.chunks: list[str] = []

    def load(self) -> list[str]:
        return list(self.chunks)

    def append(self, index: int, chunk: str) -> None:
        del self.chunks[index:]
        self.chunks.append(chunk)

    def clear(self) -> None:
        self.chunks.clear()


class NullLedgerStore:
    """Remembers nothing: no store survives this process, so holding entries would only cost
    memory that grows with the input."""

    description = "none (not kept across tries)"

    def load(self) -> list[str]:
        return []

    def append(self, index: int, chunk: str) -> None:
        return None

    def clear(self) -> None:
        return None


class TaskStateLedgerStore:
    """Chunks in Airflow's ``task_state_store`` (one key per chunk plus a small index key)."""

    description = "Airflow task_state_store"

    def __init__(self, accessor: Any, *, prefix: str = META_KEY) -> None:
        self._store = accessor
        self._prefix = prefix

    def load(self) -> list[str]:
        meta = self._store.get(self._prefix)
        count = int(meta.get("chunks", 0)) if isinstance(meta, dict) else 0
        chunks: list[str] = []
        for i in range(count):
            value = self._store.get(f"{self._prefix}.{i}")
            if isinstance(value, str):
                chunks.append(value)
        return chunks

    def append(self, index: int, chunk: str) -> None:
        self._store.set(f"{self._prefix}.{index}", chunk)
        self._store.set(self._prefix, {"v": 1, "chunks": index + 1})

    def clear(self) -> None:
        meta = self._store.get(self._prefix)
        count = int(meta.get("chunks", 0)) if isinstance(meta, dict) else 0
        self._store.delete(self._prefix)
        for i in range(count):
            self._store.delete(f"{self._prefix}.{i}")


class PathLedgerStore:
    """Chunk files ``ledger-00000.txt`` ... under a directory (local or ``ObjectStoragePath``)."""

    def __init__(self, directory: Any) -> None:
        self.directory = directory
        self.description = f"checkpoint files under {directory}"

    def _files(self) -> list[Any]:
        if not self.directory.exists():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.startswith("ledger-"))

    def load(self) -> list[str]:
        return [p.read_text() for p in self._files()]

    def append(self, index: int, chunk: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"ledger-{index:05d}.txt").write_text(chunk)

    def clear(self) -> None:
        for p in self._files():
            p.unlink()


class SuccessLedger:
    """Which rows of this run were already applied, and recording new successes."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._known: set[str] = set()
        self._pending: list[str] = []
        self._chunks = 0
        self._last_flush = clock()
        self.loaded = 0
        self.flushes = 0

    def load(self) -> int:
        """Read what earlier tries recorded; returns the number of applied rows known."""
        chunks = self.store.load()
        self._chunks = len(chunks)
        for chunk in chunks:
            for i in range(0, len(chunk) - TOKEN_LEN + 1, TOKEN_LEN):
                self._known.add(chunk[i : i + TOKEN_LEN])
        self.loaded = len(self._known)
        return self.loaded

    def already_applied(self, idempotency_key: str) -> bool:
        return bool(self._known) and token_for(idempotency_key) in self._known

    def record(self, idempotency_key: str) -> None:
        self._pending.append(token_for(idempotency_key))
        if (
            len(self._pending) >= self.flush_rows
            or self._clock() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._pending:
            return
        self.store.append(self._chunks, "".join(self._pending))
        self._chunks += 1
        self._pending.clear()
        self.flushes += 1

    def describe(self) -> dict[str, Any]:
        return {"store": self.store.description, "loaded": self.loaded, "chunks": self._chunks}

    def __repr__(self) -> str:
        return f"SuccessLedger({json.dumps(self.describe())})"

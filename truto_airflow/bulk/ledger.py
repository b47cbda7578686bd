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

When the store fails, recording never raises into the row that was just applied: the entries stay
pending, the next write waits (``flush_seconds``, doubling after each failure) instead of being
retried on every later success, and a success resets the count. A store that fails
``max_failures`` times in a row, or whose channel is closed for good (``BrokenPipeError`` and
friends: Airflow's task supervisor is gone), sets :attr:`SuccessLedger.error`; the engine then
stops the run rather than go on applying rows a retry would not know about. Choosing to stop:
carrying on would turn every later row into a blind resend on the next try, and a store that is
down usually means the task's own reporting is down too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from truto_airflow.exceptions import TrutoError

__all__ = [
    "LedgerStore",
    "LedgerStoreError",
    "MemoryLedgerStore",
    "NullLedgerStore",
    "PathLedgerStore",
    "SuccessLedger",
    "TaskStateLedgerStore",
]

TOKEN_LEN = 16
META_KEY = "truto_bulk_ledger"

#: Failures that mean the store's channel is closed for good (the supervisor process that serves
#: ``task_state_store`` is gone): retrying cannot help.
_CLOSED = (BrokenPipeError, ConnectionResetError, EOFError)

#: Longest wait between two attempts to write to a failing store.
_MAX_BACKOFF_S = 300.0


class LedgerStoreError(TrutoError, RuntimeError):
    """The ledger store cannot record applied rows; the run stops rather than go on without it."""


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


class NullLedgerStore:
    """Remembers nothing: no store survives this process, so holding entries would only cost
    memory that grows with the input."""

    description = "none (not kept across tries)"

    def load(self) -> list[str]:
        return []

    def append(self, index: int, chunk: str) -> None:
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


class SuccessLedger:
    """Which rows of this run were already applied, and recording new successes."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_failures: int = 3,
    ) -> None:
        self.store = store
        self.flush_rows = max(1, flush_rows)
        self.flush_seconds = flush_seconds
        self.max_failures = max(1, max_failures)
        self._clock = clock
        self._known: set[str] = set()
        self._pending: list[str] = []
        self._chunks = 0
        self._last_flush = clock()
        self._retry_at = -math.inf
        self._failing = 0
        self.loaded = 0
        self.flushes = 0
        #: Failed writes in this run (each one backed off).
        self.flush_failures = 0
        self.last_error: str | None = None
        #: Set when the store is given up on (see the module docstring).
        self.error: LedgerStoreError | None = None

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
        """Remember an applied row; writes a chunk when one is due. Never raises."""
        self._pending.append(token_for(idempotency_key))
        if self.error is not None:
            return
        now = self._clock()
        if now < self._retry_at:
            return
        if len(self._pending) >= self.flush_rows or now - self._last_flush >= self.flush_seconds:
            self._write(now)

    def flush(self) -> bool:
        """Write what is pending now (end of a run), back-off or not. Never raises.

        Returns whether every recorded row is stored (see :attr:`unsaved`).
        """
        self._write(self._clock())
        return not self._pending

    @property
    def unsaved(self) -> int:
        """Rows recorded in this run that the store does not hold yet."""
        return len(self._pending)

    def _write(self, now: float) -> None:
        self._last_flush = now
        if not self._pending:
            return
        try:
            self.store.append(self._chunks, "".join(self._pending))
        except Exception as exc:  # never into the row that was just applied; see module docs
            self._failed(now, exc)
            return
        self._chunks += 1
        self._pending.clear()
        self.flushes += 1
        self._failing = 0
        self._retry_at = -math.inf

    def _failed(self, now: float, exc: Exception) -> None:
        self.flush_failures += 1
        self._failing += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        base = max(self.flush_seconds, 1.0)
        self._retry_at = now + min(base * 2 ** (self._failing - 1), _MAX_BACKOFF_S)
        closed = isinstance(exc, _CLOSED)
        if self.error is None and (closed or self._failing >= self.max_failures):
            why = "its channel is closed" if closed else f"{self._failing} failures in a row"
            error = LedgerStoreError(
                f"the success ledger's store ({self.store.description}) cannot record applied "
                f"rows ({why}; last: {self.last_error}); stopping rather than applying rows a "
                "task retry would not know about"
            )
            error.__cause__ = exc
            self.error = error

    def retry_in(self) -> float:
        """Seconds until the next write is allowed (0 when it is not backing off)."""
        return max(self._retry_at - self._clock(), 0.0)

    def describe(self) -> dict[str, Any]:
        return {
            "store": self.store.description,
            "loaded": self.loaded,
            "chunks": self._chunks,
            "flush_failures": self.flush_failures,
            "unsaved": self.unsaved,
            "error": self.last_error if self._pending or self.error is not None else None,
        }

    def __repr__(self) -> str:
        return f"SuccessLedger({json.dumps(self.describe())})"

"""Idempotency keys that survive Airflow task retries.

A key is derived from where the write happens in a DAG run (dag_id, task_id, run_id, map_index),
what it targets (integrated account, opportunity id), a hash of the exact body and, in bulk, the
row's ordinal in the input. A retried task instance sends the same key, so Truto replays the first
answer instead of applying the write twice; a changed body, or a new DAG run, gets a new key and
is applied.

Why the ordinal: the same opportunity may appear several times in one bulk input (A, B, A). Each
row is its own write and must be applied in input order, so the third row must not share the
first row's key (Truto would replay the first answer instead of writing A again, and the CRM
would end at B). The ordinal is stable across task retries as long as the input is.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from truto_airflow.exceptions import TrutoInputError
from truto_airflow.json_values import compact_encoder

__all__ = [
    "MAX_KEY_LENGTH",
    "RunIdentity",
    "body_fingerprint",
    "derive_idempotency_key",
    "validate_idempotency_key",
]

KEY_PREFIX = "truto-airflow-"
#: Longest caller-given key: Stripe's limit, and far more than any derived key (62 characters).
MAX_KEY_LENGTH = 255


def validate_idempotency_key(value: object) -> str:
    """A caller-given ``Idempotency-Key`` that travels as one header value, byte for byte.

    Printable ASCII only (``0x20``-``0x7e``), no surrounding spaces, at most
    :data:`MAX_KEY_LENGTH` characters: CR/LF/NUL would split or break the header (and surface
    as a retryable network error), non-ASCII is not portable in headers, and surrounding spaces
    are stripped by HTTP, so the server would see another key.
    """
    if not isinstance(value, str) or not value.strip():
        raise TrutoInputError(
            f"idempotency_key must be a non-empty string, got {type(value).__name__}"
            if not isinstance(value, str)
            else "idempotency_key must not be empty"
        )
    if len(value) > MAX_KEY_LENGTH:
        raise TrutoInputError(
            f"idempotency_key is {len(value)} characters long; the limit is {MAX_KEY_LENGTH} "
            "(hash a longer identity, e.g. with hashlib.sha256)"
        )
    bad = next((ch for ch in value if not " " <= ch <= "~"), None)
    if bad is not None:
        raise TrutoInputError(
            f"idempotency_key contains {bad!r}: use printable ASCII only (letters, digits, "
            "'-', '_', ':' ...); no line breaks, control or non-ASCII characters"
        )
    if value != value.strip():
        raise TrutoInputError(
            f"idempotency_key {value!r} has surrounding spaces, which HTTP strips; remove them"
        )
    return value


#: ``json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)`` exactly, built once
#: (``json.dumps`` builds an encoder per call when given arguments; this runs once per row).
_canonical = compact_encoder(sort_keys=True, default=str)


def body_fingerprint(body: Any) -> str:
    """SHA-256 of the body's canonical JSON (sorted keys, compact)."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def derive_idempotency_key(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int | None,
    integrated_account_id: str,
    opportunity_id: str,
    body: Mapping[str, Any],
    row: int | None = None,
) -> str:
    """A stable key for one logical write of one DAG run (the try number is left out on purpose).

    ``row`` is the bulk input ordinal (``None`` for a single write); see the module docstring.
    """
    # The parts as str(), joined by U+001F (one f-string: a list and join cost more per row).
    text = (
        f"{dag_id!s}\x1f{task_id!s}\x1f{run_id!s}\x1f{-1 if map_index is None else map_index!s}"
        f"\x1f{integrated_account_id!s}\x1f{opportunity_id!s}\x1f{body_fingerprint(body)}"
    )
    if row is not None:
        text = f"{text}\x1frow={int(row)}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{KEY_PREFIX}{digest[:48]}"


def context_identity(context: Mapping[str, Any]) -> tuple[str, str, str, int | None]:
    """(dag_id, task_id, run_id, map_index) of the running task instance, from its context."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown-dag"
    task_id = getattr(ti, "task_id", None) or "unknown-task"
    run_id = getattr(ti, "run_id", None) or str(context.get("run_id") or "manual")
    map_index = getattr(ti, "map_index", None)
    return str(dag_id), str(task_id), str(run_id), map_index if isinstance(map_index, int) else None


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """Where a write happens: the parts of its Idempotency-Key that survive task retries, and
    the bulk input row when there is one (``row``, see the module docstring).

    Built once per task from its context (:meth:`from_context`). The hook derives each write's
    key from it once the write is validated (``prepare_update(..., idempotency_key=identity)``):
    the body as sent, the account as resolved.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int | None = None
    #: The bulk input ordinal; ``None`` for a single write.
    row: int | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any], *, dag_id: str, task_id: str) -> RunIdentity:
        """The running task instance's identity; outside a task run (``op.execute({})`` in a
        script) the caller's ``dag_id``/``task_id`` and the context's ``run_id`` (``manual``)."""
        if context.get("ti") is not None or context.get("task_instance") is not None:
            return cls(*context_identity(context))
        return cls(dag_id, task_id, str(context.get("run_id") or "manual"))

    def for_row(self, row: int) -> RunIdentity:
        """This identity for bulk input row ``row``."""
        if type(self) is RunIdentity:  # once per row: the constructor, not replace()'s generic walk
            return RunIdentity(self.dag_id, self.task_id, self.run_id, self.map_index, row)
        return dataclasses.replace(self, row=row)

    def key(self, *, account: str, opportunity_id: str, body: Mapping[str, Any]) -> str:
        """The Idempotency-Key of sending ``body`` to ``opportunity_id`` from here."""
        return derive_idempotency_key(
            dag_id=self.dag_id,
            task_id=self.task_id,
            run_id=self.run_id,
            map_index=self.map_index,
            integrated_account_id=account,
            opportunity_id=opportunity_id,
            body=body,
            row=self.row,
        )

    def row_key(self, *, row: int, account: str, opportunity_id: str, body: Any) -> str:
        """The key of bulk input row ``row`` sending ``body`` (a row step that sends a smaller
        body derives the smaller write's key with it)."""
        return self.for_row(row).key(account=account, opportunity_id=opportunity_id, body=body)

"""The bulk update engine behind :class:`~truto_airflow.operators.bulk.UpdateOpportunitiesOperator`.

One idea per module: ``rows`` (input, streamed), ``plan`` (validate and build each request; the
per-row plan seam), ``pacer`` (per-account rate limits), ``engine`` (concurrency, isolation,
retries), ``outcomes`` (one outcome per row, counts-only summary), ``rejects`` (failed/invalid
rows, spilled to JSON Lines), ``ledger`` (skip rows applied in an earlier try), ``progress``
(log lines with rate and ETA), ``spill`` (disk FIFO for throttled accounts). See docs/bulk.md.
"""

from __future__ import annotations

from truto_airflow.bulk.engine import BulkEngine, BulkRunError, BulkSettings, RunStopRequested
from truto_airflow.bulk.ledger import (
    LedgerStoreError,
    MemoryLedgerStore,
    NullLedgerStore,
    PathLedgerStore,
    SuccessLedger,
    TaskStateLedgerStore,
)
from truto_airflow.bulk.outcomes import Outcome, RowResult, format_outcome_table
from truto_airflow.bulk.pacer import AccountPacer, RateLimitInfo
from truto_airflow.bulk.plan import PlanDecision, RowItem, RowPlanner, RowPreparer, RunIdentity
from truto_airflow.bulk.progress import GuardedLog, ProgressReporter
from truto_airflow.bulk.rejects import RejectedRows
from truto_airflow.bulk.rows import RawRow, RowSource, open_source

__all__ = [
    "AccountPacer",
    "BulkEngine",
    "BulkRunError",
    "BulkSettings",
    "GuardedLog",
    "LedgerStoreError",
    "MemoryLedgerStore",
    "NullLedgerStore",
    "Outcome",
    "PathLedgerStore",
    "PlanDecision",
    "ProgressReporter",
    "RateLimitInfo",
    "RawRow",
    "RejectedRows",
    "RowItem",
    "RowPlanner",
    "RowPreparer",
    "RowResult",
    "RowSource",
    "RunIdentity",
    "RunStopRequested",
    "SuccessLedger",
    "TaskStateLedgerStore",
    "format_outcome_table",
    "open_source",
]

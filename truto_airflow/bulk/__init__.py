"""The bulk update engine behind :class:`~truto_airflow.operators.bulk.UpdateOpportunitiesOperator`.

One idea per module: ``rows`` (input, streamed), ``prepare`` (validate and build each
request), ``steps`` (optional per-row steps before sending), ``pacer`` (per-account rate
limits), ``engine`` (concurrency, isolation, retries), ``outcomes`` (one outcome per row,
counts-only summary), ``rejects`` (failed/invalid rows, written to JSON Lines), ``ledger`` (skip
rows applied in an earlier try), ``progress`` (log lines with rate and ETA), ``spill`` (disk FIFO
for throttled accounts). See docs/bulk.md.

The package exports what a user writing a row step needs (``steps=[...]`` on the operator,
docs/bulk.md "Extending"); everything else is imported from its module. Names are loaded on
first use, so importing a submodule does not import the engine.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Outcome": "truto_airflow.bulk.outcomes",
    "RowItem": "truto_airflow.bulk.prepare",
    "RowStep": "truto_airflow.bulk.steps",
    "StepDecision": "truto_airflow.bulk.steps",
    "RowResult": "truto_airflow.bulk.outcomes",
}

#: Names this package re-exported before 0.2; deprecated: ``module`` or ``module:new_name``.
_DEPRECATED = {
    "PlanDecision": "truto_airflow.bulk.steps:StepDecision",
    "RowPlanner": "truto_airflow.bulk.steps:RowStep",
    "AccountPacer": "truto_airflow.bulk.pacer",
    "BulkEngine": "truto_airflow.bulk.engine",
    "BulkRunError": "truto_airflow.bulk.engine",
    "BulkSettings": "truto_airflow.bulk.engine",
    "GuardedLog": "truto_airflow.bulk.progress",
    "LedgerStoreError": "truto_airflow.bulk.ledger",
    "MemoryLedgerStore": "truto_airflow.bulk.ledger",
    "NullLedgerStore": "truto_airflow.bulk.ledger",
    "PathLedgerStore": "truto_airflow.bulk.ledger",
    "ProgressReporter": "truto_airflow.bulk.progress",
    "RateLimitInfo": "truto_airflow.bulk.pacer",
    "RawRow": "truto_airflow.bulk.rows",
    "RejectedRows": "truto_airflow.bulk.rejects",
    "RowPreparer": "truto_airflow.bulk.prepare",
    "RowSource": "truto_airflow.bulk.rows",
    "RunIdentity": "truto_airflow.bulk.prepare",
    "RunStopRequested": "truto_airflow.bulk.engine",
    "SuccessLedger": "truto_airflow.bulk.ledger",
    "TaskStateLedgerStore": "truto_airflow.bulk.ledger",
    "format_outcome_table": "truto_airflow.bulk.outcomes",
    "open_source": "truto_airflow.bulk.rows",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from truto_airflow.bulk.outcomes import Outcome as Outcome
    from truto_airflow.bulk.outcomes import RowResult as RowResult
    from truto_airflow.bulk.prepare import RowItem as RowItem
    from truto_airflow.bulk.steps import RowStep as RowStep
    from truto_airflow.bulk.steps import StepDecision as StepDecision


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    attribute = name
    if module is None:
        where = _DEPRECATED.get(name)
        if where is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, _, renamed = where.partition(":")
        attribute = renamed or name
        warnings.warn(
            f"truto_airflow.bulk.{name} is deprecated; use {module}.{attribute}",
            DeprecationWarning,
            stacklevel=2,
        )
    return getattr(importlib.import_module(module), attribute)

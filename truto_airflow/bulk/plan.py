"""The per-row plan seam: steps between ``prepare`` and sending.

The pipeline for every row is ``prepare`` (:mod:`truto_airflow.bulk.prepare`: validate, resolve
the account, derive the Idempotency-Key, build the PATCH without sending) -> plan steps -> send.
A plan step (:class:`RowPlanner`) sees a prepared row just before it is sent and may keep it,
change it, or settle it with an outcome without sending (preflight ``invalid`` rows,
``skip_unchanged``, a dry run). Steps run inside the row's concurrency slot, after the account's
pacer let it go.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

from truto_airflow.bulk.outcomes import Outcome
from truto_airflow.bulk.prepare import RowItem

__all__ = ["PlanDecision", "RowItem", "RowPlanner"]


@dataclass(frozen=True)
class PlanDecision:
    """A plan step settled the row without sending it."""

    outcome: Outcome
    message: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RowPlanner(Protocol):
    """A per-row step between validation and sending (see the module docstring)."""

    async def plan(self, item: RowItem) -> RowItem | PlanDecision: ...


def __getattr__(name: str) -> Any:
    """``RowPreparer`` and ``RunIdentity`` moved to :mod:`truto_airflow.bulk.prepare`."""
    if name in ("RowPreparer", "RunIdentity"):
        warnings.warn(
            f"truto_airflow.bulk.plan.{name} is deprecated; import it from "
            "truto_airflow.bulk.prepare",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("truto_airflow.bulk.prepare"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

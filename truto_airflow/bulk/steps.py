"""Row steps: what may happen to a prepared row between ``prepare`` and sending.

The pipeline for every row is ``prepare`` (:mod:`truto_airflow.bulk.prepare`: validate, resolve
the account, derive the Idempotency-Key, build the PATCH without sending) -> row steps -> send.
A row step (:class:`RowStep`) sees a prepared row just before it is sent and may keep it, change
it (a smaller body), or settle it with a :class:`StepDecision` without sending (preflight
``invalid`` rows, ``skip_unchanged``, a dry run's ``would_update``). Steps run inside the row's
concurrency slot, after the account's pacer let it go.

(Before 0.2 these were "plan steps", ``RowPlanner.plan(item)``; "plan" now only means what a dry
run reports. Objects with only a ``plan`` method still work, with a DeprecationWarning.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

from truto_airflow.bulk.outcomes import Outcome
from truto_airflow.bulk.prepare import RowItem

__all__ = ["RowItem", "RowStep", "StepDecision", "as_step", "step_name"]


@dataclass(frozen=True)
class StepDecision:
    """A row step settled the row without sending it."""

    outcome: Outcome
    message: str
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RowStep(Protocol):
    """A per-row step between ``prepare`` and sending (see the module docstring)."""

    async def run(self, item: RowItem) -> RowItem | StepDecision: ...


class _PlanMethod:
    """Adapts a pre-0.2 step (``async def plan(item)``) to :class:`RowStep`."""

    def __init__(self, legacy: Any) -> None:
        self.legacy = legacy

    async def run(self, item: RowItem) -> RowItem | StepDecision:
        result: RowItem | StepDecision = await self.legacy.plan(item)
        return result


def as_step(obj: Any) -> RowStep:
    """``obj`` as a :class:`RowStep`; an object with only ``plan`` is adapted, with a warning."""
    if callable(getattr(obj, "run", None)):
        return obj  # type: ignore[no-any-return]
    if callable(getattr(obj, "plan", None)):
        warnings.warn(
            f"{type(obj).__name__}.plan(item) is deprecated: name the method run(item) "
            "(truto_airflow.bulk.steps.RowStep)",
            DeprecationWarning,
            stacklevel=3,
        )
        return _PlanMethod(obj)
    raise TypeError(f"{type(obj).__name__} is not a row step: it needs 'async def run(item)'")


def step_name(step: RowStep) -> str:
    """The user's class name, also for an adapted pre-0.2 step."""
    return type(step.legacy if isinstance(step, _PlanMethod) else step).__name__

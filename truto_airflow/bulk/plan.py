"""Deprecated: the pre-send row steps are in :mod:`truto_airflow.bulk.steps` since 0.2.

"Plan" now only means what a dry run reports. ``RowPlanner`` is :class:`~truto_airflow.bulk.steps.
RowStep` and ``PlanDecision`` is :class:`~truto_airflow.bulk.steps.StepDecision`; both names warn.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "PlanDecision": ("truto_airflow.bulk.steps", "StepDecision"),
    "RowPlanner": ("truto_airflow.bulk.steps", "RowStep"),
    "RowItem": ("truto_airflow.bulk.prepare", "RowItem"),
    "RowPreparer": ("truto_airflow.bulk.prepare", "RowPreparer"),
    "RunIdentity": ("truto_airflow.bulk.prepare", "RunIdentity"),
}


def __getattr__(name: str) -> Any:
    moved = _MOVED.get(name)
    if moved is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, new = moved
    warnings.warn(
        f"truto_airflow.bulk.plan.{name} is deprecated; use {module}.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), new)

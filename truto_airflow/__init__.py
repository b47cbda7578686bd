"""Apache Airflow provider for Truto's Unified CRM API.

Public names are re-exported lazily, so ``import truto_airflow`` (which Airflow does while
discovering providers) stays cheap and never imports Airflow's task SDK by itself.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "TrutoHook": "truto_airflow.hooks.truto",
    "UpdateOpportunityOperator": "truto_airflow.operators.opportunities",
    "UpdateOpportunitiesOperator": "truto_airflow.operators.opportunities",
    "OpportunityUpdate": "truto_airflow.models.opportunity",
    "Opportunity": "truto_airflow.models.opportunity",
    "ResponseFormat": "truto_airflow.models.options",
    "TrutoAPIError": "truto_airflow.exceptions",
    "RetryPolicy": "truto_airflow.retry",
}

__all__ = [  # noqa: RUF022  (grouped: version first, then the lazy exports)
    "__version__",
    "Opportunity",
    "OpportunityUpdate",
    "ResponseFormat",
    "RetryPolicy",
    "TrutoAPIError",
    "TrutoHook",
    "UpdateOpportunitiesOperator",
    "UpdateOpportunityOperator",
]

if TYPE_CHECKING:
    from truto_airflow.exceptions import TrutoAPIError
    from truto_airflow.hooks.truto import TrutoHook
    from truto_airflow.models.opportunity import Opportunity, OpportunityUpdate
    from truto_airflow.models.options import ResponseFormat
    from truto_airflow.retry import RetryPolicy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'truto_airflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Apache Airflow provider for Truto's Unified CRM API.

Public names are re-exported lazily, so ``import truto_airflow`` (which Airflow does while
discovering providers) stays cheap and never imports Airflow's task SDK by itself.
:data:`_EXPORTS` is the one list of them; the ``TYPE_CHECKING`` imports below only tell type
checkers the same thing (``tests/unit/test_package.py`` checks that the two agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "Opportunity": "truto_airflow.models.opportunity",
    "OpportunityUpdate": "truto_airflow.models.opportunity",
    "ResponseFormat": "truto_airflow.models.options",
    "RetryPolicy": "truto_airflow.retry",
    "TrutoAPIError": "truto_airflow.exceptions",
    "TrutoHook": "truto_airflow.hooks.truto",
    "UpdateOpportunitiesOperator": "truto_airflow.operators.bulk",
    "UpdateOpportunityOperator": "truto_airflow.operators.opportunities",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from truto_airflow.exceptions import TrutoAPIError as TrutoAPIError
    from truto_airflow.hooks.truto import TrutoHook as TrutoHook
    from truto_airflow.models.opportunity import Opportunity as Opportunity
    from truto_airflow.models.opportunity import OpportunityUpdate as OpportunityUpdate
    from truto_airflow.models.options import ResponseFormat as ResponseFormat
    from truto_airflow.operators.bulk import (
        UpdateOpportunitiesOperator as UpdateOpportunitiesOperator,
    )
    from truto_airflow.operators.opportunities import (
        UpdateOpportunityOperator as UpdateOpportunityOperator,
    )
    from truto_airflow.retry import RetryPolicy as RetryPolicy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'truto_airflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

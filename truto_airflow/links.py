"""Extra links: open the updated record in the CRM's own UI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["TRUTO_OPPORTUNITY_URL_XCOM_KEY", "TrutoOpportunityLink"]

#: XCom key under which the operator stores the first ``urls[].url`` of Truto's response.
TRUTO_OPPORTUNITY_URL_XCOM_KEY = "truto_opportunity_url"


class TrutoOpportunityLink(BaseOperatorLink):
    """The "Open in CRM" link: the first URL in Truto's response (empty if there is none)."""

    name = "Open in CRM"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Read the URL the task pushed; only http(s) URLs are turned into links."""
        from airflow.sdk.execution_time.xcom import XCom

        value: Any = XCom.get_value(ti_key=ti_key, key=TRUTO_OPPORTUNITY_URL_XCOM_KEY)
        if isinstance(value, str) and value.lower().startswith(("https://", "http://")):
            return value
        return ""

"""Extra links: open the updated record in the CRM's own UI.

Airflow 3 stores every operator link when the task ends: the worker calls ``get_link`` on the
operator that just ran and writes the answer to XCom under the link's ``xcom_key``, which the UI
reads. The operator records the URL on itself while it runs (:func:`record_opportunity_url`), so
the link costs that one XCom write and nothing else (no push from ``execute``, no read back), and
its key is the documented ``truto_opportunity_url``, which downstream tasks can pull.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = [
    "TRUTO_OPPORTUNITY_URL_XCOM_KEY",
    "TrutoOpportunityLink",
    "link_url",
    "record_opportunity_url",
]

#: XCom key of the "Open in CRM" link: the first http(s) ``urls[].url`` of Truto's response, or
#: ``""`` when it has none.
TRUTO_OPPORTUNITY_URL_XCOM_KEY = "truto_opportunity_url"
#: Where the running operator keeps the link's URL (``""``: it ran and there is none).
_RECORDED = "_truto_opportunity_url"


def link_url(value: Any) -> str:
    """``value`` if it is an http(s) URL (the only kind turned into a link), else ``""``."""
    if isinstance(value, str) and value.lower().startswith(("https://", "http://")):
        return value
    return ""


def record_opportunity_url(operator: Any, url: Any) -> None:
    """Remember on the running operator what its link shows (``None``: no URL, yet)."""
    setattr(operator, _RECORDED, link_url(url))


class TrutoOpportunityLink(BaseOperatorLink):
    """The "Open in CRM" link: the first URL in Truto's response (empty if there is none)."""

    name = "Open in CRM"

    @property
    def xcom_key(self) -> str:
        """The documented key, so the one write Airflow makes for the link is the URL's XCom."""
        return TRUTO_OPPORTUNITY_URL_XCOM_KEY

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL the operator recorded while it ran; an operator that did not run here (a
        subclass with its own ``execute``) is asked through XCom. Only http(s) URLs become links."""
        recorded = getattr(operator, _RECORDED, None)
        if isinstance(recorded, str):
            return recorded
        from airflow.sdk.execution_time.xcom import XCom

        return link_url(XCom.get_value(ti_key=ti_key, key=self.xcom_key))

"""TrutoOpportunityLink: the URL the operator recorded while it ran, registered for the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from truto_airflow.get_provider_info import get_provider_info
from truto_airflow.links import (
    TRUTO_OPPORTUNITY_URL_XCOM_KEY,
    TrutoOpportunityLink,
    record_opportunity_url,
)
from truto_airflow.operators.opportunities import UpdateOpportunityOperator


@dataclass(frozen=True)
class Key:
    dag_id: str = "d"
    task_id: str = "t"
    run_id: str = "r"
    try_number: int = 1
    map_index: int = 2


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the XCom backend lookup; record how it was called."""
    from airflow.sdk.execution_time import xcom

    state: dict[str, Any] = {"value": None, "calls": []}

    def get_value(*, ti_key: Any, key: str) -> Any:
        state["calls"].append((ti_key, key))
        return state["value"]

    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(get_value))
    return state


def _op() -> UpdateOpportunityOperator:
    return UpdateOpportunityOperator(task_id="t", opportunity_id="x", body={"amount": 1})


def test_name_and_registration() -> None:
    link = TrutoOpportunityLink()
    assert link.name == "Open in CRM"
    # the documented key: the one XCom write Airflow makes for the link is the URL's XCom
    assert link.xcom_key == TRUTO_OPPORTUNITY_URL_XCOM_KEY == "truto_opportunity_url"
    assert "truto_airflow.links.TrutoOpportunityLink" in get_provider_info()["extra-links"]
    assert [type(x) for x in UpdateOpportunityOperator.operator_extra_links] == [
        TrutoOpportunityLink
    ]


def test_the_recorded_url_needs_no_xcom_call(stored: dict[str, Any]) -> None:
    op = _op()
    record_opportunity_url(op, "https://app.hubspot.com/contacts/1/deal/9")
    stored["value"] = "https://stale.example/other"
    assert (
        TrutoOpportunityLink().get_link(op, ti_key=Key())
        == "https://app.hubspot.com/contacts/1/deal/9"
    )  # type: ignore[arg-type]
    record_opportunity_url(op, None)  # ran, no URL: still no call
    assert TrutoOpportunityLink().get_link(op, ti_key=Key()) == ""  # type: ignore[arg-type]
    assert stored["calls"] == []


@pytest.mark.parametrize("value", [None, "", "javascript:alert(1)", "ftp://x", 42, ["https://a"]])
def test_a_recorded_unsafe_url_gives_no_link(stored: dict[str, Any], value: Any) -> None:
    op = _op()
    record_opportunity_url(op, value)
    assert TrutoOpportunityLink().get_link(op, ti_key=Key()) == ""  # type: ignore[arg-type]
    assert stored["calls"] == []


def test_an_operator_that_did_not_record_is_asked_through_xcom(stored: dict[str, Any]) -> None:
    stored["value"] = "https://app.hubspot.com/contacts/1/deal/9"
    key = Key()
    assert TrutoOpportunityLink().get_link(_op(), ti_key=key) == stored["value"]  # type: ignore[arg-type]
    assert stored["calls"] == [(key, TRUTO_OPPORTUNITY_URL_XCOM_KEY)]


@pytest.mark.parametrize("value", [None, "", "javascript:alert(1)", "ftp://x", 42, ["https://a"]])
def test_no_or_unsafe_url_gives_no_link(stored: dict[str, Any], value: Any) -> None:
    stored["value"] = value
    assert TrutoOpportunityLink().get_link(_op(), ti_key=Key()) == ""  # type: ignore[arg-type]


def test_link_survives_dag_serialisation() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        _op()
    data = DagSerialization.to_dict(dag)
    assert data["dag"]["tasks"][0]["__var"]["_operator_extra_links"] == {
        "Open in CRM": "truto_opportunity_url"
    }
    restored = DagSerialization.from_dict(data).task_dict["t"]
    assert restored.extra_links == ["Open in CRM"]

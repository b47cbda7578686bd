"""The operator and hook against a real emulator server: ports and the "Open in CRM" link."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from truto_airflow.emulator.server import EmulatorHandle
from truto_airflow.hooks.truto import TrutoHook
from truto_airflow.links import TRUTO_OPPORTUNITY_URL_XCOM_KEY, TrutoOpportunityLink
from truto_airflow.operators.opportunities import UpdateOpportunityOperator


class PushRecorder:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def _update(emu: EmulatorHandle, key: str, monkeypatch: pytest.MonkeyPatch) -> PushRecorder:
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", emu.airflow_conn_json(key))
    ti = PushRecorder()
    UpdateOpportunityOperator(
        task_id="t", opportunity_id=f"opp-{key}-0001", body={"amount": 42}
    ).execute({"ti": ti})  # type: ignore[arg-type]
    return ti


@pytest.fixture
def xcom_value(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow.sdk.execution_time import xcom

    box: dict[str, Any] = {}
    monkeypatch.setattr(xcom.XCom, "get_value", staticmethod(lambda *, ti_key, key: box.get(key)))
    return box


def test_crm_with_urls_gets_a_link(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, xcom_value: dict[str, Any]
) -> None:
    ti = _update(truto_emulator, "pipedrive", monkeypatch)
    url = ti.pushed[TRUTO_OPPORTUNITY_URL_XCOM_KEY]
    assert url.startswith("https://") and "opp-pipedrive-0001" in url
    xcom_value.update(ti.pushed)
    assert TrutoOpportunityLink().get_link(None, ti_key=None) == url  # type: ignore[arg-type]


def test_crm_without_urls_gets_no_link_and_no_error(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, xcom_value: dict[str, Any]
) -> None:
    ti = _update(truto_emulator, "hubspot", monkeypatch)  # HubSpot returns no `urls`
    assert ti.pushed == {}
    assert TrutoOpportunityLink().get_link(None, ti_key=None) == ""  # type: ignore[arg-type]


def test_a_uri_connection_with_a_port_field_reaches_the_emulator(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = httpx2.URL(truto_emulator.base_url).port
    uri = truto_emulator.airflow_conn_uri("pipedrive")
    assert f":{port}" in uri and "%3A" + str(port) not in uri  # the port travels as the port
    monkeypatch.setenv("AIRFLOW_CONN_VIA_URI", uri)
    with TrutoHook("via_uri") as hook:
        assert hook.settings.base_url == truto_emulator.base_url
        assert hook.get_opportunity("opp-pipedrive-0001")["id"] == "opp-pipedrive-0001"


def test_the_api_test_path_with_a_stored_port(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What POST /api/v2/connections/test does once the port matches (Airflow 3.3.2): it puts
    ``conn.get_uri()`` of the stored connection in an env var and calls the hook's test."""
    import json

    from airflow.models.connection import Connection

    base = httpx2.URL(truto_emulator.base_url)
    stored = Connection(
        conn_id="ui",
        conn_type="truto",
        host=f"http://{base.host}",
        port=base.port,
        password=truto_emulator.token,
        extra=json.dumps({"integrated_account_id": truto_emulator.accounts["hubspot"]}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_TRANSIENT", stored.get_uri())
    ok, message = TrutoHook("transient").test_connection()
    assert ok, message
    assert "hubspot (active)" in message

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


def _update(
    emu: EmulatorHandle, key: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[PushRecorder, UpdateOpportunityOperator]:
    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", emu.airflow_conn_json(key))
    ti = PushRecorder()
    op = UpdateOpportunityOperator(
        task_id="t", opportunity_id=f"opp-{key}-0001", body={"amount": 42}
    )
    op.execute({"ti": ti})  # type: ignore[arg-type]
    return ti, op


def test_crm_with_urls_gets_a_link(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    ti, op = _update(truto_emulator, "pipedrive", monkeypatch)
    assert ti.pushed == {}  # nothing pushed from execute: Airflow stores the link at the end
    url = TrutoOpportunityLink().get_link(op, ti_key=None)  # type: ignore[arg-type]
    assert url.startswith("https://") and "opp-pipedrive-0001" in url


def test_crm_without_urls_gets_no_link_and_no_error(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    ti, op = _update(truto_emulator, "hubspot", monkeypatch)  # HubSpot returns no `urls`
    assert ti.pushed == {}
    assert TrutoOpportunityLink().get_link(op, ti_key=None) == ""  # type: ignore[arg-type]


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


# -- what the link costs in a real task run (issue 12) ------------------------------------------


def _run_mapped(emu: EmulatorHandle, key: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Two mapped tasks through dag.test(); every execution-API XCom call recorded."""
    import pendulum
    from airflow.sdk import DAG
    from airflow.sdk.api import client

    monkeypatch.setenv("AIRFLOW_CONN_TRUTO_DEFAULT", emu.airflow_conn_json(key))
    calls: list[tuple[str, str]] = []
    real_set, real_get = client.XComOperations.set, client.XComOperations.get

    def xcom_set(self: Any, dag_id: str, run_id: str, task_id: str, xkey: str, *a: Any, **k: Any):  # type: ignore[no-untyped-def]
        calls.append(("set", xkey))
        return real_set(self, dag_id, run_id, task_id, xkey, *a, **k)

    def xcom_get(self: Any, dag_id: str, run_id: str, task_id: str, xkey: str, *a: Any, **k: Any):  # type: ignore[no-untyped-def]
        calls.append(("get", xkey))
        return real_get(self, dag_id, run_id, task_id, xkey, *a, **k)

    monkeypatch.setattr(client.XComOperations, "set", xcom_set)
    monkeypatch.setattr(client.XComOperations, "get", xcom_get)
    ids = [f"opp-{key}-0001", f"opp-{key}-0002"]
    with DAG(
        f"link_cost_{key}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")
    ) as dag:
        UpdateOpportunityOperator.partial(task_id="w", body={"amount": 7}).expand(
            opportunity_id=ids
        )
    run = dag.test()
    from tests.integration.conftest import xcoms

    return run, calls, xcoms(run)


@pytest.mark.parametrize("key", ["pipedrive", "hubspot"])
def test_the_link_costs_one_xcom_write_and_no_read(
    truto_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """HttpOperator's task makes one XCom call (its return value); ours adds one, the link Airflow
    stores when the task ends, under the documented key: no push from execute, no read back."""
    run, calls, values = _run_mapped(truto_emulator, key, monkeypatch)
    assert str(run.state) == "success"
    assert sorted(calls) == sorted(
        [("set", "return_value"), ("set", TRUTO_OPPORTUNITY_URL_XCOM_KEY)] * 2
    )
    for index in (0, 1):
        url = values[("w", index, TRUTO_OPPORTUNITY_URL_XCOM_KEY)]
        if key == "pipedrive":  # Pipedrive answers with `urls`: the link opens the record
            assert url.startswith("https://") and f"opp-{key}-000{index + 1}" in url
            assert url == values[("w", index, "return_value")]["urls"][0]["url"]
        else:  # HubSpot has none: an empty link, no error
            assert url == ""

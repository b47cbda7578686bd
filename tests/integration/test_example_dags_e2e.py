"""Run every example DAG with dag.test() on sqlite against the Truto emulator on loopback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import TOKEN
from tests.integration.conftest import task_log_text, task_states, xcoms
from truto_airflow import __version__

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun

    from truto_airflow.emulator import EmulatorHandle

pytestmark = pytest.mark.integration

# The "Open in CRM" link, stored by Airflow when the task ends (the documented XCom key).
LINK_XCOM = "truto_opportunity_url"


def run_dag(bag: DagBag, dag_id: str, conf: dict[str, Any] | None = None) -> DagRun:
    dag = bag.get_dag(dag_id)
    assert dag is not None, dag_id
    return dag.test(run_conf=conf)


def assert_no_token(
    captured: pytest.CaptureResult[str], dag_run: DagRun, emulator: EmulatorHandle
) -> str:
    """The API token is nowhere in the task logs or the run's XComs; returns the log text."""
    logs = captured.out + captured.err + task_log_text()
    stored = json.dumps({str(k): v for k, v in xcoms(dag_run).items()}, default=str)
    for token in {emulator.token, TOKEN}:
        assert token not in logs
        assert token not in stored
    assert dag_run.dag_id in logs  # the task logs really were captured
    return logs


def assert_patch_shape(request: Any, account: str, opportunity_id: str) -> None:
    assert request.method == "PATCH"
    assert request.path == f"/unified/crm/opportunities/{opportunity_id}"
    assert request.query["integrated_account_id"] == account
    assert request.query["truto_response_format"] == "unified"
    assert request.query["truto_ignore_remote_data"] == "true"
    assert request.headers["user-agent"] == f"truto-airflow/{__version__}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"].startswith("truto-airflow-")
    assert request.status == 200
    assert request.applied is True


def test_enrichment(
    emulator: EmulatorHandle, example_dags: DagBag, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = ["opp-hubspot-0001", "opp-hubspot-0002"]
    account = emulator.accounts["hubspot"]
    before = {i: emulator.opportunity("hubspot", i) for i in ids}

    dr = run_dag(example_dags, "example_truto_enrichment", {"opportunity_ids": ids})

    states = task_states(dr)
    assert str(dr.state) == "success", states
    assert states == {
        ("score_opportunities", -1): ("success", 1),
        ("write_enrichment", 0): ("success", 1),
        ("write_enrichment", 1): ("success", 1),
        ("read_back", -1): ("success", 1),
    }
    values = xcoms(dr)
    planned = values[("score_opportunities", -1, "return_value")]
    assert [p["opportunity_id"] for p in planned] == ids

    # Mapped task instances may run in any order: match requests to ids by path.
    patches = sorted(emulator.requests(method="PATCH"), key=lambda r: ids.index(r.opportunity_id))
    assert len(patches) == 2
    for index, (opp_id, plan, request) in enumerate(zip(ids, planned, patches, strict=True)):
        assert_patch_shape(request, account, opp_id)
        assert request.body == plan["body"]
        assert set(request.body) == {"amount", "stage", "custom_fields"}
        after = emulator.opportunity("hubspot", opp_id)
        assert after is not None
        assert before[opp_id] is not None
        assert after["amount"] == plan["body"]["amount"] != before[opp_id]["amount"]
        # custom_fields are merged key by key (the other keys of the record stay).
        assert after["custom_fields"].items() >= plan["body"]["custom_fields"].items()
        result = values[("write_enrichment", index, "return_value")]
        assert result["id"] == opp_id
        assert result["amount"] == plan["body"]["amount"]
        assert "remote_data" not in result  # truto_ignore_remote_data honoured
        # HubSpot is not among the CRMs whose responses carry `urls` (docs response table), so
        # there is no "Open in CRM" URL: the stored link is empty.
        assert "urls" not in result
        assert values[("write_enrichment", index, LINK_XCOM)] == ""

    assert len({r.headers["idempotency-key"] for r in patches}) == 2
    checked = values[("read_back", -1, "return_value")]
    assert {k: v["amount"] for k, v in checked.items()} == {
        p["opportunity_id"]: p["body"]["amount"] for p in planned
    }
    gets = emulator.requests(method="GET", path="/unified/crm/opportunities/opp-hubspot-0001")
    assert gets, "read_back did not read the opportunity"

    logs = assert_no_token(capfd.readouterr(), dr, emulator)
    lines = [
        line for line in logs.splitlines() if "Truto opportunity" in line and "updated" in line
    ]
    assert len(lines) == 2
    assert "fields=amount,stage,custom_fields status=200" in lines[0]


def test_manual_update_with_native_params(
    emulator: EmulatorHandle, example_dags: DagBag, capfd: pytest.CaptureFixture[str]
) -> None:
    account = emulator.accounts["hubspot"]
    conf = {"opportunity_id": "opp-hubspot-0005", "amount": 31337.5, "stage_id": "stage-hubspot-6"}

    dr = run_dag(example_dags, "example_truto_manual_update", conf)

    assert str(dr.state) == "success", task_states(dr)
    (request,) = emulator.requests(method="PATCH")
    assert_patch_shape(request, account, "opp-hubspot-0005")
    # Native rendering: the amount arrives as a JSON number, the stage id as a string.
    assert request.body == {"amount": 31337.5, "stage": {"id": "stage-hubspot-6"}}
    result = xcoms(dr)[("update_opportunity", -1, "return_value")]
    assert result["amount"] == 31337.5
    assert result["stage"]["id"] == "stage-hubspot-6"
    stored = emulator.opportunity("hubspot", "opp-hubspot-0005")
    assert stored is not None
    assert stored["amount"] == 31337.5
    assert_no_token(capfd.readouterr(), dr, emulator)


def test_mapped_updates_expand_kwargs_and_expand(
    emulator: EmulatorHandle, example_dags: DagBag, capfd: pytest.CaptureFixture[str]
) -> None:
    account = emulator.accounts["hubspot"]

    dr = run_dag(example_dags, "example_truto_mapped_updates")

    states = task_states(dr)
    assert str(dr.state) == "success", states
    for task_id in ("apply_updates", "mark_reviewed"):
        assert [states[(task_id, i)] for i in range(3)] == [("success", 1)] * 3
    values = xcoms(dr)
    planned = values[("plan_updates", -1, "return_value")]
    ids = [row["opportunity_id"] for row in planned]
    assert ids == ["opp-hubspot-0002", "opp-hubspot-0003", "opp-hubspot-0004"]

    patches = emulator.requests(method="PATCH")
    assert len(patches) == 6
    applied = {r.opportunity_id: r for r in patches if "custom_fields" not in r.body}
    reviewed = {r.opportunity_id: r for r in patches if "custom_fields" in r.body}
    assert set(applied) == set(reviewed) == set(ids)
    for index, row in enumerate(planned):
        opp_id = row["opportunity_id"]
        assert_patch_shape(applied[opp_id], account, opp_id)
        assert applied[opp_id].body == json.loads(json.dumps(row["body"]))
        assert reviewed[opp_id].body == {"custom_fields": {"reviewed_by_airflow": dr.run_id}}
        assert values[("apply_updates", index, "return_value")]["id"] == opp_id
        assert values[("mark_reviewed", index, "return_value")]["id"] == opp_id
    # The close date went out as ISO 8601 with an offset.
    assert applied["opp-hubspot-0004"].body["close_date"] == "2026-12-31T00:00:00+00:00"
    # Every mapped instance has its own idempotency key.
    assert len({r.headers["idempotency-key"] for r in patches}) == 6
    assert_no_token(capfd.readouterr(), dr, emulator)


def test_not_found_fails_fast_without_airflow_retry(
    emulator: EmulatorHandle, example_dags: DagBag, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = example_dags.get_dag("example_truto_manual_update")
    assert dag is not None
    assert dag.get_task("update_opportunity").retries == 2  # retries are configured...
    conf = {"opportunity_id": "opp-hubspot-9999", "amount": 1, "stage_id": "stage-hubspot-1"}

    dr = dag.test(run_conf=conf)

    assert str(dr.state) == "failed"
    # ...but a 404 is the user's to fix: failed on the first try, not up_for_retry.
    assert task_states(dr) == {("update_opportunity", -1): ("failed", 1)}
    patches = emulator.requests(method="PATCH")
    assert [(r.path, r.status) for r in patches] == [
        ("/unified/crm/opportunities/opp-hubspot-9999", 404)
    ]
    logs = assert_no_token(capfd.readouterr(), dr, emulator)
    assert "TrutoNotFoundError" in logs
    assert ("update_opportunity", -1, "return_value") not in xcoms(dr)


def test_invalid_param_fails_before_any_request(
    emulator: EmulatorHandle, example_dags: DagBag, capfd: pytest.CaptureFixture[str]
) -> None:
    conf = {
        "opportunity_id": "opp-hubspot-0001",
        "amount": 5,
        "stage_id": "stage-hubspot-1",
        "integrated_account_id": "not-a-uuid",
    }

    dr = run_dag(example_dags, "example_truto_manual_update", conf)

    assert task_states(dr) == {("update_opportunity", -1): ("failed", 1)}
    assert emulator.requests(method="PATCH") == []
    logs = assert_no_token(capfd.readouterr(), dr, emulator)
    assert "is not a UUID" in logs

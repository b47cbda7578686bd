"""Assets (truto:// URIs, asset events with counts) and OpenLineage facets of the writers."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import httpx2
import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.execution_time.context import OutletEventAccessors

from tests.conftest import ACCOUNT_ID
from tests.unit.operators.test_opportunities import OPP_RESPONSE, Recorder, make_op, run
from truto_airflow.assets import (
    DEFAULT_ASSET_ALIAS,
    DEFAULT_OUTLETS,
    convert_asset_to_openlineage,
    opportunities_asset,
    opportunities_asset_uri,
)
from truto_airflow.lineage import crm_ref, file_ref, input_file_ref, operator_lineage
from truto_airflow.operators.bulk import UpdateOpportunitiesOperator
from truto_airflow.operators.opportunities import UpdateOpportunityOperator
from truto_airflow.retry import RetryPolicy

CRM_URI = f"truto://api.truto.one/{ACCOUNT_ID}/crm/opportunities"
OTHER = "0b7e2c4e-2f5c-4e8e-9a59-3a1f7d1c2b10"

pytestmark = pytest.mark.usefixtures("truto_conn")


def alias_events(accessors: OutletEventAccessors) -> list[tuple[str, dict[str, Any]]]:
    return [
        (event.dest_asset_key.uri, event.extra)
        for event in accessors[AssetAlias(name=DEFAULT_ASSET_ALIAS)].asset_alias_events
    ]


# -- URIs ----------------------------------------------------------------------------------------


def test_asset_uri_is_canonical() -> None:
    assert opportunities_asset_uri("https://api.truto.one", ACCOUNT_ID.upper()) == CRM_URI
    assert (
        opportunities_asset_uri("http://127.0.0.1:8765/", ACCOUNT_ID)
        == f"truto://127.0.0.1:8765/{ACCOUNT_ID}/crm/opportunities"
    )
    # Airflow normalises hand-written URIs through the provider's handler (asset-uris)
    spelled = f"truto://API.Truto.one/{ACCOUNT_ID.upper()}/crm/opportunities/"
    assert Asset(uri=spelled).uri == CRM_URI


@pytest.mark.parametrize(
    "uri",
    [
        "truto://api.truto.one/not-a-uuid/crm/opportunities",
        f"truto://api.truto.one/{ACCOUNT_ID}/crm/contacts",
        f"truto://api.truto.one/{ACCOUNT_ID}",
        f"truto:///{ACCOUNT_ID}/crm/opportunities",
    ],
)
def test_malformed_truto_uri_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match=r"truto|UUID"):
        Asset(uri=uri)


def test_asset_to_openlineage_dataset() -> None:
    dataset = convert_asset_to_openlineage(
        opportunities_asset("https://api.truto.one", ACCOUNT_ID), None
    )
    assert (dataset.namespace, dataset.name) == (
        "truto://api.truto.one",
        f"{ACCOUNT_ID}/crm/opportunities",
    )


def test_lineage_names_the_crm_dataset_as_the_asset_does() -> None:
    """The task's lineage and Airflow's asset conversion name one dataset, whatever the case or
    spacing of the account id the task was given."""
    for base_url, account in [
        ("https://API.truto.one/", f" {ACCOUNT_ID.upper()} "),
        ("http://127.0.0.1:8765", ACCOUNT_ID),
    ]:
        ref = crm_ref(base_url, account)
        dataset = convert_asset_to_openlineage(opportunities_asset(base_url, account), None)
        assert (ref.namespace, ref.name) == (dataset.namespace, dataset.name)


def test_file_refs_follow_openlineage_naming(tmp_path: pathlib.Path) -> None:
    local = file_ref(str(tmp_path / "x.jsonl"), rows=3)
    assert (local.namespace, local.name) == ("file", str(tmp_path / "x.jsonl"))
    assert local.statistics == {"rowCount": 3}
    assert file_ref("/x", rows=0, size=10).statistics == {"rowCount": 0, "size": 10}
    assert crm_ref("https://api.truto.one", ACCOUNT_ID).statistics == {}
    assert file_ref(f"file://{tmp_path}/y.jsonl").name == f"{tmp_path}/y.jsonl"
    s3 = file_ref("s3://bucket/exports/opps.jsonl")
    assert (s3.namespace, s3.name) == ("s3://bucket", "exports/opps.jsonl")


def test_lineage_names_the_file_the_operator_reads(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule says whether ``updates`` names a file and where it is (bulk.rows): lineage must
    not report a file the operator never read, nor another path than the one it read."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    home = file_ref("~/rows.jsonl")
    assert home.name == str(tmp_path / "rows.jsonl")
    assert input_file_ref('{"id": "opp-1", "body": {"amount": 1}}') is None  # a rendered row
    assert input_file_ref(' [{"id": "opp-1"}]') is None
    assert input_file_ref([{"id": "opp-1"}]) is None
    named = input_file_ref(b"rows.jsonl")
    assert named is not None and named.name == str(tmp_path / "rows.jsonl")


# -- single-row operator ------------------------------------------------------------------------


def test_single_write_declares_no_outlet_by_default_but_reports_lineage() -> None:
    """One PATCH per task (often mapped over many rows): no asset event unless asked for, so a
    task pays no outlet check and never meets Airflow's first-event race (docs/export.md)."""
    op = make_op(Recorder())
    assert op.outlets == []
    accessors = OutletEventAccessors()
    run(op, outlet_events=accessors)
    assert alias_events(accessors) == []
    [out] = op.get_openlineage_facets_on_complete(None).outputs
    assert out.outputFacets["outputStatistics"].rowCount == 1


def test_single_write_emits_alias_event_with_counts_and_lineage() -> None:
    op = make_op(Recorder(), outlets=list(DEFAULT_OUTLETS))
    assert [o.name for o in op.outlets] == [DEFAULT_ASSET_ALIAS]
    accessors = OutletEventAccessors()
    run(op, outlet_events=accessors)
    assert alias_events(accessors) == [
        (
            CRM_URI,
            {
                "operation": "update",
                "integrated_account_id": ACCOUNT_ID,
                "dry_run": False,
                "updated": 1,
                "unchanged": 0,
                "failed": 0,
                "invalid": 0,
            },
        )
    ]
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == []
    [out] = lineage.outputs
    assert (out.namespace, out.name) == ("truto://api.truto.one", f"{ACCOUNT_ID}/crm/opportunities")
    assert out.outputFacets["outputStatistics"].rowCount == 1


def test_unchanged_write_reports_unchanged() -> None:
    current = {**OPP_RESPONSE, "amount": 10}
    op = make_op(
        Recorder(httpx2.Response(200, json=current)),
        skip_unchanged=True,
        outlets=list(DEFAULT_OUTLETS),
    )
    accessors = OutletEventAccessors()
    result = run(op, outlet_events=accessors)
    assert result["outcome"] == "unchanged"
    [(_, extra)] = alias_events(accessors)
    assert (extra["updated"], extra["unchanged"]) == (0, 1)
    assert (
        op.get_openlineage_facets_on_complete(None)
        .outputs[0]
        .outputFacets["outputStatistics"]
        .rowCount
        == 0
    )


def test_dry_run_emits_no_alias_event_and_no_output() -> None:
    op = make_op(Recorder(), dry_run=True, outlets=list(DEFAULT_OUTLETS))
    accessors = OutletEventAccessors()
    run(op, outlet_events=accessors)
    assert alias_events(accessors) == []
    assert op.get_openlineage_facets_on_complete(None).outputs == []


def test_declared_asset_outlet_gets_its_accounts_counts() -> None:
    mine, other = Asset(uri=CRM_URI), Asset(uri=opportunities_asset_uri("api.truto.one", OTHER))
    op = make_op(Recorder(), outlets=[mine, other])
    accessors = OutletEventAccessors()
    run(op, outlet_events=accessors)
    assert accessors[mine].extra["updated"] == 1
    assert accessors[other].extra == {}


def test_outlets_empty_turns_events_off() -> None:
    op = make_op(Recorder(), outlets=[])
    accessors = OutletEventAccessors()
    run(op, outlet_events=accessors)
    assert alias_events(accessors) == []


def test_failed_write_emits_nothing() -> None:
    op = make_op(
        Recorder(httpx2.Response(422, json={"statusCode": 422, "message": "no"})),
        outlets=list(DEFAULT_OUTLETS),
    )
    accessors = OutletEventAccessors()
    with pytest.raises(Exception, match=r"422|no"):
        run(op, outlet_events=accessors)
    assert alias_events(accessors) == []


# -- bulk operator --------------------------------------------------------------------------------


def bulk_op(updates: Any, **kwargs: Any) -> UpdateOpportunitiesOperator:
    def handler(request: httpx2.Request) -> httpx2.Response:
        oid = request.url.path.rsplit("/", 1)[-1]
        if oid == "bad":
            return httpx2.Response(422, json={"statusCode": 422, "message": "rejected"})
        return httpx2.Response(200, json={"id": oid})

    return UpdateOpportunitiesOperator(
        task_id="write",
        updates=updates,
        integration="hubspot",
        max_failed=5,
        progress_every_seconds=None,
        hook_params={
            "async_transport": httpx2.MockTransport(handler),
            "retry_policy": RetryPolicy(max_retries=0, backoff_base=0.001),
        },
        **kwargs,
    )


def test_bulk_emits_one_event_per_account_with_counts(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "rows.jsonl"
    rows = [
        {"id": "a1", "body": {"amount": 1}},
        {"id": "bad", "body": {"amount": 2}},
        {"id": "b1", "body": {"amount": 3}, "integrated_account_id": OTHER},
        {"id": "x", "body": {"amount": float("inf")}, "integrated_account_id": OTHER},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    op = bulk_op(str(source))
    accessors = OutletEventAccessors()
    op.execute({"outlet_events": accessors, "run_id": "r1"})  # type: ignore[arg-type]
    events = dict(alias_events(accessors))
    assert events[CRM_URI] == {
        "operation": "update",
        "integrated_account_id": ACCOUNT_ID,
        "dry_run": False,
        "updated": 1,
        "unchanged": 0,
        "failed": 1,
        "invalid": 0,
    }
    other = events[opportunities_asset_uri("api.truto.one", OTHER)]
    assert (other["updated"], other["invalid"]) == (1, 1)
    lineage = op.get_openlineage_facets_on_complete(None)
    [inp] = lineage.inputs
    assert (inp.namespace, inp.name) == ("file", str(source))
    stats = {o.name: o.outputFacets["outputStatistics"].rowCount for o in lineage.outputs}
    assert stats == {f"{ACCOUNT_ID}/crm/opportunities": 1, f"{OTHER}/crm/opportunities": 1}


def test_bulk_dry_run_has_no_alias_events() -> None:
    op = bulk_op([{"id": "a1", "body": {"amount": 1}}], dry_run=True)
    accessors = OutletEventAccessors()
    op.execute({"outlet_events": accessors, "run_id": "r1"})  # type: ignore[arg-type]
    assert alias_events(accessors) == []
    lineage = op.get_openlineage_facets_on_complete(None)
    assert (lineage.inputs, lineage.outputs) == ([], [])


def test_openlineage_provider_extracts_through_default_extractor() -> None:
    """Airflow's OpenLineage provider finds the method and keeps our datasets and facets."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState

    op = make_op(Recorder())
    run(op, outlet_events=OutletEventAccessors())

    class DagRun:
        run_id = "manual__1"

    lineage = ExtractorManager().extract_metadata(
        DagRun(), op, TaskInstanceState.SUCCESS, task_instance=None
    )
    assert [(o.namespace, o.name) for o in lineage.outputs] == [
        ("truto://api.truto.one", f"{ACCOUNT_ID}/crm/opportunities")
    ]
    assert lineage.outputs[0].outputFacets["outputStatistics"].rowCount == 1


def test_operator_lineage_without_stats_has_no_facets() -> None:
    from truto_airflow.lineage import LineageRef

    lineage = operator_lineage([LineageRef("file", "/x")], [LineageRef("truto://h", "a")])
    assert lineage.inputs[0].inputFacets == {}
    assert lineage.outputs[0].outputFacets == {}


def test_mapped_operators_declare_the_alias_as_a_fresh_list() -> None:
    """A mapped task's outlets are read before unmapping: a list, never shared between tasks."""
    import pendulum
    from airflow.sdk import DAG

    with DAG("d", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
        one = UpdateOpportunitiesOperator.partial(task_id="a").expand(updates=[["x"]])
        two = UpdateOpportunitiesOperator.partial(task_id="b").expand(updates=[["x"]])
        off = UpdateOpportunitiesOperator.partial(task_id="c", outlets=[]).expand(updates=[["x"]])
        single = UpdateOpportunityOperator.partial(task_id="s", body={}).expand(
            opportunity_id=["o"]
        )
        opted = UpdateOpportunityOperator.partial(
            task_id="t", body={}, outlets=list(DEFAULT_OUTLETS)
        ).expand(opportunity_id=["o"])
    assert one.outlets == [AssetAlias(name=DEFAULT_ASSET_ALIAS)]
    assert one.outlets is not two.outlets
    assert off.outlets == []
    assert single.outlets == []
    assert opted.outlets == [AssetAlias(name=DEFAULT_ASSET_ALIAS)]
    assert isinstance(one.inlets + one.outlets, list)


def test_provider_registers_the_truto_scheme() -> None:
    import importlib

    from truto_airflow.get_provider_info import get_provider_info

    [entry] = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["truto"]
    for key in ("handler", "to_openlineage_converter"):
        module, _, name = entry[key].rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))

"""The enrichment loop example end to end: 3 accounts x 500 opportunities on the emulator."""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.conftest import task_states, xcoms
from truto_airflow.assets import opportunities_asset_uri

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag

pytestmark = pytest.mark.integration

ACCOUNT_KEYS = ("pipedrive", "attio", "salesforce")


def asset_events(run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The ``extra`` of every asset event of one DAG run, per asset URI."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    events: dict[str, list[dict[str, Any]]] = {}
    with create_session() as session:
        rows = (
            session.query(AssetEvent, AssetModel.uri)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetEvent.source_run_id == run_id)
        )
        for event, uri in rows:
            events.setdefault(uri, []).append(dict(event.extra))
    return events


def asset_event_counts(run_id: str) -> dict[str, Counter[str]]:
    """Asset events of one DAG run: summed integer ``extra`` values per asset URI."""
    totals: dict[str, Counter[str]] = {}
    for uri, extras in asset_events(run_id).items():
        counts = totals.setdefault(uri, Counter())
        for extra in extras:
            counts["events"] += 1
            counts.update(
                {k: v for k, v in extra.items() if isinstance(v, int) and not isinstance(v, bool)}
            )
    return totals


def test_enrichment_loop_twice(
    truto_emulator_factory: Any,
    airflow_db: None,
    example_dags: DagBag,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = truto_emulator_factory(opportunities=3000)  # 500 per seeded account
    accounts = [emulator.accounts[key] for key in ACCOUNT_KEYS]
    dag = example_dags.get_dag("example_truto_enrichment_loop")
    from dags_examples.example_truto_enrichment_loop import deal_score

    conf = {"integrated_account_ids": accounts, "chunk_size": 200}
    first = dag.test(run_conf=conf)

    states = task_states(first)
    assert {state for state, _ in states.values()} == {"success"}, states
    writes = sorted(i for (task, i) in states if task == "write_scores")
    assert writes == list(range(9))  # 3 accounts x ceil(500 / 200) chunks, never mixed
    values = xcoms(first)
    exported = values[("export", -1, "return_value")]
    assert exported["accounts"] == dict.fromkeys(accounts, 500)
    assert values[("summary", -1, "return_value")] == {
        "chunks": 9,
        "outcomes": {"updated": 1500, "failed": 0, "invalid": 0},
    }
    # the CRM now holds exactly the scores computed from the exported state
    expected = {}
    for line in pathlib.Path(exported["path"]).read_text().splitlines():
        record = json.loads(line)
        expected[(record["integrated_account_id"], record["id"])] = deal_score(record)
    assert len(expected) == 1500
    for (account, opp_id), score in expected.items():
        state = emulator.opportunity(account, opp_id)
        assert state["custom_fields"]["deal_score"] == score, (account, opp_id)
    # one asset event per account and chunk, with the counts
    host = emulator.base_url
    events = asset_event_counts(first.run_id)
    for account in accounts:
        counts = events[opportunities_asset_uri(host, account)]
        assert (counts["events"], counts["updated"], counts["unchanged"]) == (3, 500, 0)
    assert any(uri.startswith("file://") for uri in events)  # the export's file
    # what the consumer example reads from those events
    from dags_examples.example_truto_enrichment_consumer import enrichment_report

    crm = {
        uri: extras
        for uri, extras in asset_events(first.run_id).items()
        if uri.startswith("truto://")
    }
    report = enrichment_report(crm)
    assert report["updated"] == 1500
    assert report["accounts"] == {
        a: {"updated": 500, "unchanged": 0, "failed": 0, "invalid": 0} for a in accounts
    }

    # the token is in no XCom and no asset event
    stored = json.dumps(
        [{str(k): v for k, v in values.items()}, asset_events(first.run_id)], default=str
    )
    assert emulator.token not in stored

    # second run: same scores, nothing written
    since = max((r.seq for r in emulator.requests()), default=0)
    second = dag.test(run_conf=conf)
    assert {state for state, _ in task_states(second).values()} == {"success"}
    assert xcoms(second)[("summary", -1, "return_value")]["outcomes"] == {
        "updated": 0,
        "failed": 0,
        "invalid": 0,
        "unchanged": 1500,
    }
    assert emulator.requests(method="PATCH", since=since) == []
    events = asset_event_counts(second.run_id)
    for account in accounts:
        counts = events[opportunities_asset_uri(host, account)]
        assert (counts["updated"], counts["unchanged"]) == (0, 500)
